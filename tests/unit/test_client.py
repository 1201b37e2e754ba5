"""The Python client against a small real HTTP server: idempotent retries, problem details in errors,
an unreachable API named with the way to start one, short ids resolved or refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bigmodel.client import ApiError, ApiUnreachable, Client, JobFailed
from bigmodel.jobview import summary
from tests.services import free_port

RECORD = {"id": "a" * 32, "type": "ping", "state": "queued", "queue": "cpu"}


class Api(BaseHTTPRequestHandler):
    """Answers from a script: a list of (status, body) per path, the last one repeated."""

    script: dict[str, list[tuple[int, Any]]] = {}
    seen: list[tuple[str, str, dict[str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Api.seen.append((self.command, self.path, dict(self.headers)))
        answers = Api.script[self.path.split("?")[0]]
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    Api.script, Api.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_submission_retried_after_a_503_carries_the_same_idempotency_key(api: str) -> None:
    Api.script["/v1/jobs"] = [(503, {"title": "Service unavailable", "detail": "Redis"}), (202, RECORD)]
    job = Client(api, token="t").submit("ping", {})
    assert job.id == RECORD["id"] and job.state == "queued"
    keys = [headers["Idempotency-Key"] for method, _, headers in Api.seen if method == "POST"]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert all(headers["Authorization"] == "Bearer t" for _, _, headers in Api.seen)


def test_errors_carry_the_servers_problem_details(api: str) -> None:
    problem = {"type": "/problems/validation_failed", "title": "Validation failed", "status": 422,
               "detail": "invalid params for a ping job", "errors": [{"loc": ["body", "params", "steps"],
                                                                     "msg": "must be >= 1"}]}
    Api.script["/v1/jobs"] = [(422, problem)]
    with pytest.raises(ApiError) as caught:
        Client(api, token="").submit("ping", {"steps": 0})
    error = caught.value
    assert error.status == 422 and error.type == "/problems/validation_failed" and error.errors
    assert "body.params.steps: must be >= 1" in str(error)
    assert len(Api.seen) == 1  # a 4xx is an answer, not a reason to retry


def test_short_ids_resolve_or_say_why_not(api: str) -> None:
    client = Client(api, token="")
    Api.script["/v1/jobs"] = [(200, {"items": [RECORD], "next_cursor": None})]
    assert client.resolve("aaaa") == RECORD["id"]
    Api.script["/v1/jobs"] = [(200, {"items": [RECORD, {**RECORD, "id": "a" * 31 + "b"}]})]
    with pytest.raises(ApiError, match="starts several job ids"):
        client.resolve("aaaa")
    Api.script["/v1/jobs"] = [(200, {"items": []})]
    with pytest.raises(ApiError, match="no job id starts with 'abcd'"):
        client.resolve("abcd")


def test_waiting_on_a_job_that_fails_raises_with_its_error(api: str) -> None:
    failed = {**RECORD, "state": "failed", "error": {"type": "data_error", "message": "no column 'x'"},
              "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:02.500Z"}
    Api.script[f"/v1/jobs/{RECORD['id']}"] = [(200, {**RECORD, "state": "running"}), (200, failed)]
    job = Client(api, token="").job(RECORD["id"])
    with pytest.raises(JobFailed) as caught:
        job.wait()
    assert caught.value.error["type"] == "data_error"
    assert job.summary() == "failed in 2.5 s: data_error: no column 'x'"
    assert any("wait=" in path for _, path, _ in Api.seen)  # long polls, not a sleep loop


def test_an_unreachable_api_says_where_it_looked_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiUnreachable) as caught:
        Client(url, token="", retries=0).jobs()
    assert url in str(caught.value) and "make run" in str(caught.value)


def test_summaries_say_what_a_job_made() -> None:
    pipeline = {"type": "pipeline", "state": "succeeded", "usage": {"wall_seconds": 6.14},
                "result": {"train": {"model": "blobs", "version": 3, "metrics": {"accuracy": 0.9}},
                           "evaluate": {"metrics": {"accuracy": 0.97, "rows": 50}}}}
    assert summary(pipeline) == "succeeded in 6.1 s: model blobs v3, test_accuracy 0.97"
    queued = {"type": "train", "state": "queued", "waiting": {"message": "no GPU worker is online"}}
    assert summary(queued) == "queued: no GPU worker is online"
