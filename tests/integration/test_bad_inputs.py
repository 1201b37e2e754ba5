"""Bad input gets a clear 4xx that names the problem, never a 5xx: one table, one row per kind of mistake."""

from __future__ import annotations

import io
from typing import Any

import pytest

from api import create_app
from bigmodel.config import Settings
from bigmodel.limits import Limits

pytestmark = pytest.mark.integration

JOB = "{job}"  # replaced by the id of a job that exists
BIG = "x" * (64 * 1024 + 1)

# (what, method, path, request kwargs, status, words the detail must contain)
CASES: list[tuple[str, str, str, dict[str, Any], int, tuple[str, ...]]] = [
    ("JSON body over its limit", "post", "/v1/jobs",
     {"data": '{"type": "ping", "params": {"pad": "' + BIG + '"}}', "content_type": "application/json"},
     413, ("JSON body", "limit")),
    ("JSON body over its limit, no Content-Length", "post", "/v1/jobs",
     {"input_stream": io.BytesIO(('{"type": "ping", "params": {"pad": "' + BIG + '"}}').encode()),
      "content_type": "application/json", "headers": {"Transfer-Encoding": "chunked"},
      "environ_overrides": {"wsgi.input_terminated": True}}, 413, ("limit",)),
    ("upload over its limit", "post", "/v1/datasets",
     {"data": {"file": (io.BytesIO(b"a\n" + b"1\n" * 200_000), "big.csv")},
      "content_type": "multipart/form-data"}, 413, ("limit",)),
    ("not JSON", "post", "/v1/jobs", {"data": "{nope", "content_type": "application/json"}, 400,
     ("not valid JSON",)),
    ("NaN is not JSON", "post", "/v1/jobs",
     {"data": '{"type": "ping", "params": {"x": NaN}}', "content_type": "application/json"}, 400, ("NaN",)),
    ("a JSON array, not an object", "post", "/v1/jobs", {"json": [1, 2]}, 400, ("JSON object",)),
    ("no JSON content type", "post", "/v1/jobs", {"data": "{}", "content_type": "text/plain"}, 400,
     ("Content-Type: application/json",)),
    ("wrong type for priority", "post", "/v1/jobs", {"json": {"type": "ping", "priority": "high"}}, 422,
     ("invalid",)),
    ("unknown job type", "post", "/v1/jobs", {"json": {"type": "nope"}}, 422, ("unknown job type", "nope")),
    ("a typo in params", "post", "/v1/jobs",
     {"json": {"type": "preprocess", "params": {"dataset": "a" * 64, "label": "y", "normalise": "l2"}}},
     422, ("invalid params",)),
    ("a hostile dataset id in params", "post", "/v1/jobs",
     {"json": {"type": "train", "params": {"dataset": "../../etc", "model": {"name": "m"}}}}, 422,
     ("invalid params",)),
    ("Idempotency-Key too long", "post", "/v1/jobs",
     {"json": {"type": "ping"}, "headers": {"Idempotency-Key": "k" * 300}}, 400, ("Idempotency-Key",)),
    ("unknown job id", "get", "/v1/jobs/" + "0" * 32, {}, 404, ("no job",)),
    ("hostile job id", "get", "/v1/jobs/..%2F..%2Fetc", {}, 404, ()),
    ("job id with a Redis key suffix", "get", "/v1/jobs/" + "0" * 32 + ":events", {}, 404, ("no job",)),
    ("cancel an unknown job", "post", "/v1/jobs/" + "f" * 32 + "/cancel", {}, 404, ("no job",)),
    ("unknown artifact", "get", f"/v1/jobs/{JOB}/artifacts/../../record.json", {}, 404, ("no artifact",)),
    ("bad cursor", "get", "/v1/jobs?cursor=nan", {}, 400, ("cursor",)),
    ("bad cursor, infinite", "get", "/v1/jobs?cursor=inf", {}, 400, ("cursor",)),
    ("bad cursor, text", "get", "/v1/datasets?cursor=abc", {}, 400, ("cursor",)),
    ("limit out of range", "get", "/v1/jobs?limit=100000", {}, 400, ("limit", "between")),
    ("limit not a number", "get", "/v1/jobs?limit=ten", {}, 400, ("limit", "integer")),
    ("unknown state filter", "get", "/v1/jobs?state=done", {}, 400, ("unknown state",)),
    ("bad ?after= event id", "get", f"/v1/jobs/{JOB}/events?after=garbage&follow=0", {}, 400, ("after",)),
    ("event id out of range", "get", f"/v1/jobs/{JOB}/events?after=99999999999999999999-0", {}, 400,
     ("after",)),
    ("bad Last-Event-ID", "get", f"/v1/jobs/{JOB}/events", {"headers": {"Last-Event-ID": "1-2-3"}}, 400,
     ("Last-Event-ID",)),
    ("unknown dataset", "get", "/v1/datasets/" + "0" * 64, {}, 404, ("no dataset",)),
    ("hostile dataset name", "post", "/v1/datasets",
     {"data": {"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv"), "name": "../../../tmp/evil"},
      "content_type": "multipart/form-data"}, 400, ("invalid dataset name",)),
    ("empty upload", "post", "/v1/datasets",
     {"data": {"file": (io.BytesIO(b""), "e.csv")}, "content_type": "multipart/form-data"}, 400, ("empty",)),
    ("upload without a file", "post", "/v1/datasets",
     {"data": {"name": "x"}, "content_type": "multipart/form-data"}, 400, ("file",)),
    ("hostile model name", "get", "/v1/models/a:b", {}, 400, ("invalid name",)),
    ("unknown model", "get", "/v1/models/nope", {}, 404, ("no model",)),
    ("alias 'latest' is computed", "post", "/v1/models/m/aliases/latest", {"json": {"version": 1}}, 400,
     ("latest",)),
    ("alias to a missing version", "post", "/v1/models/m/aliases/production", {"json": {"version": 7}}, 404,
     ("no version 7",)),
    ("alias version of the wrong type", "post", "/v1/models/m/aliases/production", {"json": {"version": "x"}},
     422, ("invalid",)),
    ("unknown route", "get", "/v1/nothing", {}, 404, ()),
    ("wrong method", "delete", "/v1/jobs", {}, 405, ()),
]


@pytest.fixture(scope="module")
def client(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = Settings(redis_url=redis_server.url, store_url=str(tmp_path_factory.mktemp("bad-store")),
                      limits=Limits(json_bytes=64 * 1024), max_upload_bytes=256 * 1024)
    return create_app(config).test_client()


@pytest.fixture(scope="module")
def job(client: Any) -> str:
    return client.post("/v1/jobs", json={"type": "ping", "params": {}}).get_json()["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("what", "method", "path", "kwargs", "status", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx(client: Any, job: str, what: str, method: str, path: str,
                                  kwargs: dict[str, Any], status: int, words: tuple[str, ...]) -> None:
    response = client.open(path.replace(JOB, job), method=method.upper(), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["type"].startswith("/problems/")
    for word in words:
        assert word in problem["detail"], problem


def test_an_event_stream_is_bounded_and_keeps_alive(redis_server, tmp_path) -> None:
    """A client that follows a job that never ends gets heartbeats, then the stream ends by itself."""
    config = Settings(redis_url=redis_server.url, store_url=str(tmp_path), sse_max_seconds=3,
                      sse_heartbeat_seconds=1)
    client = create_app(config).test_client()
    job = client.post("/v1/jobs", json={"type": "ping", "params": {}}).get_json()["id"]
    response = client.get(f"/v1/jobs/{job}/events")
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)  # returns only because the stream has a maximum duration
    assert body.count('"state": "queued"') == 1 and ": keepalive" in body
    assert "event: end" not in body  # not ended: the client reconnects with Last-Event-ID
    last_id = [line[4:] for line in body.splitlines() if line.startswith("id: ")][-1]
    client.post(f"/v1/jobs/{job}/cancel")
    resumed = client.get(f"/v1/jobs/{job}/events", headers={"Last-Event-ID": last_id}).get_data(as_text=True)
    assert '"state": "queued"' not in resumed and '"state": "cancelled"' in resumed
    assert resumed.rstrip().endswith("event: end\ndata: {}")


def test_a_full_redis_answers_503_not_500(tmp_path) -> None:
    """maxmemory-policy noeviction: a full Redis refuses writes; the API says so with 503 and Retry-After."""
    from tests.services import RedisServer

    if not RedisServer.available():
        pytest.skip("needs a redis-server binary")
    server = RedisServer(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction"))
    server.start()
    try:
        redis_client = server.client()
        redis_client.set("ballast", b"x" * 1024 * 1024)
        redis_client.config_set("maxmemory", redis_client.info("memory")["used_memory"] // 2)  # full
        client = create_app(Settings(redis_url=server.url, store_url=str(tmp_path / "store"))).test_client()
        response = client.post("/v1/jobs", json={"type": "ping", "params": {}})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "full" in response.get_json()["detail"]
    finally:
        server.stop()
