"""The fan-out core on a real stack: a parent publishes child jobs, lets its worker go, runs again after them.

Proved with the ping job's `children` (the core's own diagnostic); sharded predict and sweeps build on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
import requests

from bigmodel.jobs.context import child_id
from tests.services import Stack

FINAL = ("succeeded", "failed", "cancelled")


def job(url: str, job_id: str) -> dict:
    return requests.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()


def finished(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = requests.get(f"{url}/v1/jobs/{job_id}?wait=5", timeout=15).json()
        if record["state"] in FINAL:
            return record
    raise AssertionError(f"job {job_id} did not finish: {record}")


def submit(url: str, params: dict) -> dict:
    answer = requests.post(f"{url}/v1/jobs", json={"type": "ping", "params": params}, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def one_process(redis_server, tmp_path_factory) -> Iterator[Stack]:
    """A pool of ONE worker process, with short leases: a parent that held its process would never end."""
    root = tmp_path_factory.mktemp("fanout")
    s = Stack(redis_server, root / "store", env={"BIGMODEL_LEASE_SECONDS": "2", "BIGMODEL_MAX_ATTEMPTS": "2"})
    client = redis.Redis.from_url(redis_server.url)
    client.delete("cpu", *[f"cpu:{p}" for p in range(1, 10)])  # no message left by another module's tests
    try:
        s.start(cpu_workers=1, api_workers=1)
        yield s
    finally:
        s.stop()


def test_a_parent_runs_its_children_on_a_one_process_pool_and_sees_how_they_ended(one_process) -> None:
    url = one_process.url
    parent = submit(url, {"children": [{"n": 0, "sleep": 0.2}, {"n": 1, "fail": "boom"}, {"n": 2}]})
    record = finished(url, parent["id"])
    assert record["state"] == "succeeded", record
    children = record["children"]
    assert children == [child_id(parent["id"], i) for i in range(3)]
    states = [c["state"] for c in record["result"]["children"]]
    assert states == ["succeeded", "failed", "succeeded"]
    assert [c["result"]["echo"]["n"] for c in record["result"]["children"] if c["result"]] == [0, 2]
    assert record["progress"]["percent"] == 100.0
    for child in children:
        assert job(url, child)["parent"] == parent["id"]
    assert record["handovers"] == 1 and record["attempts"] == 2  # woken once, not lost


def test_progress_counts_finished_children_while_the_parent_waits(one_process) -> None:
    url = one_process.url
    parent = submit(url, {"children": [{"sleep": 0.1}, {"sleep": 3, "steps": 30}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = job(url, parent["id"])
        progress = record.get("progress") or {}
        if progress.get("stage") == "children" and progress["current"] == 1:
            break
        time.sleep(0.1)
    assert record["state"] == "running" and record["worker"] is None, record
    assert progress == {"stage": "children", "current": 1, "total": 2, "percent": 50.0,
                        "metrics": {"done": 1, "failed": 0, "total": 2}}
    assert finished(url, parent["id"])["state"] == "succeeded"


def test_cancelling_a_parent_cancels_its_children(one_process) -> None:
    url = one_process.url
    parent = submit(url, {"children": [{"sleep": 20, "steps": 200}, {"sleep": 20, "steps": 200}]})
    deadline = time.monotonic() + 30
    while job(url, parent["id"]).get("children") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    answer = requests.post(f"{url}/v1/jobs/{parent['id']}/cancel", timeout=10)
    assert answer.status_code == 202 and answer.json()["state"] == "cancelled"
    children = [finished(url, child_id(parent["id"], i), timeout=30) for i in range(2)]
    assert [c["state"] for c in children] == ["cancelled", "cancelled"]


def test_a_child_whose_process_dies_is_ended_by_the_reaper_and_wakes_its_parent(one_process) -> None:
    url = one_process.url
    parent = submit(url, {"children": [{"crash": True}, {"n": 1}]})
    record = finished(url, parent["id"], timeout=90)
    assert record["state"] == "succeeded", record
    crashed = job(url, record["children"][0])
    assert crashed["state"] == "failed" and crashed["error"]["type"] == "worker_lost"
    assert [c["state"] for c in record["result"]["children"]] == ["failed", "succeeded"]
