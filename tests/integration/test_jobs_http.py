"""Given a real Redis, a real CPU worker pool and the API under gunicorn, the job loop works over HTTP."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.integration


def wait_for(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = requests.get(f"{url}/v1/jobs/{job_id}", timeout=5).json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {record}")


def submit(url: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=10)


def test_ping_jobs_run_on_several_worker_processes(stack) -> None:
    ids = [submit(stack.url, {"type": "ping", "params": {"sleep": 1, "steps": 2, "n": i}}).json()["id"]
           for i in range(4)]
    records = [wait_for(stack.url, i) for i in ids]
    assert [r["state"] for r in records] == ["succeeded"] * 4
    assert [r["result"]["echo"]["n"] for r in records] == [0, 1, 2, 3]
    assert len({r["result"]["pid"] for r in records}) == 2  # spread over the pool's two processes
    assert all(r["attempts"] == 1 and r["progress"]["percent"] == 100.0 for r in records)


def test_submit_answers_202_with_location_and_idempotency_key_replays(stack) -> None:
    first = submit(stack.url, {"type": "ping", "params": {}}, **{"Idempotency-Key": "abc-1"})
    again = submit(stack.url, {"type": "ping", "params": {}}, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == 202 and first.headers["Location"] == f"/v1/jobs/{first.json()['id']}"
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_bad_submissions_are_problems_not_jobs(stack) -> None:
    r = submit(stack.url, {"type": "train", "params": {"dataset": "../etc"}})
    assert r.status_code == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert any(e["loc"][-1] == "dataset" for e in r.json()["errors"])
    r = requests.post(f"{stack.url}/v1/jobs", data="{not json", timeout=5,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert requests.get(f"{stack.url}/v1/jobs/nope", timeout=5).status_code == 404


def test_failed_job_records_error_and_worker_goes_on(stack) -> None:
    bad = submit(stack.url, {"type": "ping", "params": {"fail": "deliberate"}}).json()["id"]
    good = submit(stack.url, {"type": "ping", "params": {}}).json()["id"]
    assert wait_for(stack.url, bad)["error"] == {"type": "invalid_input", "message": "deliberate"}
    assert wait_for(stack.url, good)["state"] == "succeeded"


def test_cancel_running_job_stops_it_and_finished_job_is_409(stack) -> None:
    job = submit(stack.url, {"type": "ping", "params": {"sleep": 30, "steps": 60}}).json()["id"]
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.url}/v1/jobs/{job}", timeout=5).json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert requests.post(f"{stack.url}/v1/jobs/{job}/cancel", timeout=5).status_code == 202
    record = wait_for(stack.url, job, timeout=10)
    assert record["state"] == "cancelled"
    assert record["progress"]["current"] < 60
    assert requests.post(f"{stack.url}/v1/jobs/{job}/cancel", timeout=5).status_code == 409


def test_events_stream_and_artifact_download(stack) -> None:
    job = submit(stack.url, {"type": "ping", "params": {"steps": 3, "artifact": "payload"}}).json()["id"]
    with requests.get(f"{stack.url}/v1/jobs/{job}/events", stream=True, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        body = "".join(line + "\n" for line in resp.iter_lines(decode_unicode=True))
    assert body.count("event: progress") == 3
    assert '"state": "succeeded"' in body
    got = requests.get(f"{stack.url}/v1/jobs/{job}/artifacts/ping.txt", timeout=5)
    assert got.status_code == 200 and got.content == b"payload"


def test_listing_is_newest_first_and_filters(stack) -> None:
    ids = [submit(stack.url, {"type": "ping", "params": {}}).json()["id"] for _ in range(3)]
    for i in ids:
        wait_for(stack.url, i)
    page = requests.get(f"{stack.url}/v1/jobs", params={"type": "ping", "limit": 2}, timeout=5).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    nxt = requests.get(f"{stack.url}/v1/jobs", params={"type": "ping", "limit": 2,
                                                       "cursor": page["next_cursor"]}, timeout=5).json()
    assert nxt["items"][0]["id"] == ids[0]
    failed = requests.get(f"{stack.url}/v1/jobs", params={"state": "failed"}, timeout=5).json()
    assert all(j["state"] == "failed" for j in failed["items"])


def test_redis_down_gives_503_and_the_api_recovers(stack) -> None:
    if stack.redis.proc is None:
        pytest.skip("using an external REDIS_URL that this test cannot stop")
    stack.redis.stop()
    try:
        r = requests.get(f"{stack.url}/v1/jobs", timeout=10)
        assert r.status_code == 503 and r.headers.get("Retry-After")
        assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 503
    finally:
        stack.redis.start()
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    job = submit(stack.url, {"type": "ping", "params": {}}).json()["id"]
    assert wait_for(stack.url, job)["state"] == "succeeded"
