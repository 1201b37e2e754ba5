"""Job state moves against a real Redis: forward only, one finisher, cancel vs finish."""

from __future__ import annotations

import threading

import pytest
import redis

from bigmodel.errors import Conflict, NotFound, ValidationFailed
from bigmodel.jobs.jobtypes import route, validate_params
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.states import JobState, can_move
from bigmodel.store import Store


@pytest.fixture()
def jobs(redis_server, tmp_path) -> Jobs:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    return Jobs(client, Store(str(tmp_path)))


def new(jobs: Jobs) -> str:
    record, created = jobs.create(tenant="t1", type="ping", params={}, queue="cpu")
    assert created
    return record["id"]


def test_state_table_only_moves_forward() -> None:
    assert can_move(JobState.QUEUED, JobState.RUNNING)
    assert not can_move(JobState.SUCCEEDED, JobState.RUNNING)
    assert not can_move(JobState.RUNNING, JobState.RUNNING)


def test_two_workers_never_both_finish(jobs: Jobs) -> None:
    job = new(jobs)
    assert jobs.claim(job, "w1", 30, 3).claimed
    assert jobs.claim(job, "w2", 30, 3).outcome == "held"
    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(
        jobs.finish(job, w, JobState.SUCCEEDED, result={"w": w}))) for w in ("w1", "w2", "w1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert jobs.get(job)["result"] == {"w": "w1"}
    assert not jobs.finish(job, "w1", JobState.FAILED)
    assert jobs.get(job)["state"] == "succeeded"


def test_cancel_vs_finish_race_has_one_winner(jobs: Jobs) -> None:
    for _ in range(20):
        job = new(jobs)
        outcomes = []
        t1 = threading.Thread(target=lambda j=job, o=outcomes: o.append(jobs.claim(j, "w", 30, 3).outcome))
        t2 = threading.Thread(target=lambda j=job, o=outcomes: o.append(jobs.cancel(j, "t1")["state"]))
        t1.start(), t2.start(), t1.join(), t2.join()
        state = jobs.get(job)["state"]
        if state == "cancelled":
            assert "claimed" not in outcomes or jobs.get(job)["cancel_requested"]
        else:
            assert state == "running" and jobs.cancel_requested(job)


def test_finished_job_cancel_is_conflict_and_other_tenant_sees_nothing(jobs: Jobs) -> None:
    job = new(jobs)
    jobs.claim(job, "w", 30, 3)
    jobs.finish(job, "w", JobState.FAILED, error={"type": "X", "message": "m"})
    with pytest.raises(Conflict):
        jobs.cancel(job, "t1")
    with pytest.raises(NotFound):
        jobs.get(job, "t2")


def test_lapsed_lease_is_taken_over_with_attempts_and_bounded(jobs: Jobs) -> None:
    job = new(jobs)
    assert jobs.claim(job, "w1", 30, 2).claimed
    jobs.r.delete(jobs.lease_key(job))  # the worker machine died: its lease lapses
    assert jobs.claim(job, "w2", 30, 2).claimed
    assert jobs.get(job)["attempts"] == 2 and jobs.get(job)["worker"] == "w2"
    jobs.r.delete(jobs.lease_key(job))
    assert jobs.claim(job, "w3", 30, 2).outcome == "exhausted"
    assert jobs.get(job)["state"] == "failed"


def test_finished_record_survives_redis_in_the_store(jobs: Jobs) -> None:
    job = new(jobs)
    jobs.claim(job, "w", 30, 3)
    jobs.finish(job, "w", JobState.SUCCEEDED, result={"ok": 1})
    jobs.r.flushdb()
    assert jobs.get(job, "t1")["result"] == {"ok": 1}


def test_routing_table_and_gpu_fallback() -> None:
    assert route("ping", 0, gpu_fallback=None, gpu_workers_online=False).queue == "cpu"
    waiting = route("train", 1, gpu_fallback=None, gpu_workers_online=False)
    assert waiting.queue == "gpu" and waiting.waiting
    assert route("train", 1, gpu_fallback="cpu", gpu_workers_online=False).queue == "cpu"
    assert route("train", 1, gpu_fallback="cpu", gpu_workers_online=True).queue == "gpu"


def test_params_schema_rejects_typos_and_fills_defaults() -> None:
    with pytest.raises(ValidationFailed):
        validate_params("preprocess", {"dataset": "a" * 64, "label": "y", "normalise": "standard"})
    params = validate_params("preprocess", {"dataset": "a" * 64, "label": "y"})
    assert params["normalize"] == "standard" and params["split"]["train"] == 0.8
