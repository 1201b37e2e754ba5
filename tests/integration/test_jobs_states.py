"""The state scripts against a real Redis: one attempt commits, races have one outcome, the reaper recovers.

Leases here are a fraction of a second, so a lapse is waited for (never faked by deleting keys);
the publisher is a plain function that records what would go on the queue.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis

from bigmodel.config import Settings
from bigmodel.errors import Conflict, NotFound, ValidationFailed
from bigmodel.jobs.jobtypes import route, validate_params
from bigmodel.jobs.reaper import Reaper
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.states import JobState
from bigmodel.store import Store

LEASE = 0.4
QUEUE = f"states-{uuid.uuid4().hex[:8]}"  # a queue no worker consumes


class Outbox(list):
    """What would have been published: job ids, in order."""

    def __call__(self, record: dict) -> None:
        self.append(record["id"])


@pytest.fixture()
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture()
def jobs(redis_server, tmp_path, outbox) -> Jobs:
    client = redis.Redis.from_url(redis_server.url)
    while client.info("server")["uptime_in_seconds"] < 1:  # the reaper waits out a fresh Redis's first lease
        time.sleep(0.1)
    # Keys of their own (the session's stack, whose reapers share this Redis, never sees these jobs).
    return Jobs(client, Store(str(tmp_path)), settings=Settings(job_index_limit=5), send=outbox,
                lease_seconds=LEASE, prefix=f"t{uuid.uuid4().hex[:8]}")


def new(jobs: Jobs, **kwargs) -> str:
    record, created = jobs.create(tenant="t1", type="ping", params={}, queue=QUEUE, **kwargs)
    assert created
    return record["id"]


def wait_until_due(jobs: Jobs, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while job_id not in jobs.due():
        assert time.monotonic() < deadline, "the deadline never passed"
        time.sleep(0.05)


def events(jobs: Jobs, job_id: str, kind: str = "state") -> list[dict]:
    return [e["data"] for _, e in jobs.events(job_id) if e["type"] == kind]


def test_only_the_current_attempt_commits(jobs: Jobs) -> None:
    job = new(jobs)
    first = jobs.claim(job, "w1#1")
    assert first.claimed and first.attempt == 1
    assert jobs.claim(job, "w2#1").outcome == "held"
    wait_until_due(jobs, job)  # w1 stalls past its lease
    assert Reaper(jobs, max_attempts=3).run_once()["publish"] == 1
    second = jobs.claim(job, "w2#1")
    assert second.claimed and second.attempt == 2
    results: dict[int, bool] = {}
    threads = [threading.Thread(target=lambda a=a: results.__setitem__(a, jobs.finish(
        job, a, JobState.SUCCEEDED, result={"attempt": a}))) for a in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {1: False, 2: True}
    record = jobs.get(job)
    assert record["result"] == {"attempt": 2} and record["attempts"] == 2
    assert not jobs.progress(job, 1, {"stage": "late"}) and not jobs.renew(job, 1)
    assert not jobs.finish(job, 2, JobState.FAILED)  # a final state is final
    assert jobs.finish(job, 2, JobState.SUCCEEDED, result={"attempt": 2})  # a retried finish is idempotent
    assert [e["state"] for e in events(jobs, job)].count("succeeded") == 1


def test_cancel_races_finish_with_one_outcome(jobs: Jobs) -> None:
    """The worker died (its lease lapsed): cancel ends the job now, unless a late finish got there first."""
    seen = set()
    claimed = [(job, jobs.claim(job, "w#1").attempt) for job in (new(jobs) for _ in range(30))]
    for job, _ in claimed:
        wait_until_due(jobs, job)
    for job, attempt in claimed:
        barrier = threading.Barrier(2)
        out: dict[str, object] = {}

        def finish(j: str = job, a: int = attempt, o: dict = out, b: threading.Barrier = barrier) -> None:
            b.wait()
            o["finished"] = jobs.finish(j, a, JobState.SUCCEEDED, result={"ok": 1})

        def cancel(j: str = job, o: dict = out, b: threading.Barrier = barrier) -> None:
            b.wait()
            try:
                o["cancel"] = jobs.cancel(j, "t1")["state"]
            except Conflict:
                o["cancel"] = "conflict"

        threads = [threading.Thread(target=finish), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        state = jobs.get(job)["state"]
        assert (out["finished"], out["cancel"], state) in {(True, "conflict", "succeeded"),
                                                           (False, "cancelled", "cancelled")}, (out, state)
        assert len([e for e in events(jobs, job) if e["state"] in ("succeeded", "cancelled")]) == 1
        seen.add(state)
    print("outcomes seen:", sorted(seen))


def test_cancel_of_a_live_running_job_is_a_request_and_finish_still_wins(jobs: Jobs) -> None:
    job = new(jobs)
    attempt = jobs.claim(job, "w#1").attempt
    assert jobs.cancel(job, "t1")["state"] == "running" and jobs.signals(job, attempt).cancel
    assert jobs.finish(job, attempt, JobState.CANCELLED, error={"type": "cancelled", "message": "m"})
    with pytest.raises(Conflict):
        jobs.cancel(job, "t1")
    with pytest.raises(NotFound):
        jobs.get(job, "t2")


def test_reaper_requeues_lost_jobs_then_fails_them_worker_lost(jobs: Jobs, outbox: Outbox) -> None:
    job = new(jobs)
    jobs.publish(job)
    reaper = Reaper(jobs, max_attempts=2)
    for attempt in (1, 2):
        assert jobs.claim(job, f"w{attempt}#1").attempt == attempt
        wait_until_due(jobs, job)  # the worker machine died: nobody renews the lease
        outcome = reaper.run_once()
    assert outcome == {"failed": 1}
    record = jobs.get(job)
    assert record["state"] == "failed" and record["error"]["type"] == "worker_lost"
    assert outbox == [job, job]  # published once by the API, once by the reaper after the first loss
    requeued = [e for e in events(jobs, job) if e["state"] == "queued" and e.get("reason")]
    assert [e["reason"] for e in requeued] == ["worker_lost"] and requeued[0]["lapsed_ms"] >= 0
    assert jobs.r.ttl(jobs.key(job)) > 0  # final jobs do not live in Redis forever
    assert json.loads(jobs.store.tenant("t1").read_bytes(f"jobs/{job}/record.json"))["state"] == "failed"


def test_two_reapers_at_once_make_one_decision(jobs: Jobs, outbox: Outbox) -> None:
    ids = [new(jobs) for _ in range(20)]
    for i in ids:
        jobs.claim(i, "w#1")
    for i in ids:
        wait_until_due(jobs, i)
    reapers = [Reaper(jobs, max_attempts=3) for _ in range(4)]
    threads = [threading.Thread(target=r.run_once) for r in reapers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outbox) == sorted(ids)  # each lost job published again exactly once
    assert all(jobs.get(i)["state"] == "queued" for i in ids)


def test_hand_over_costs_no_attempt(jobs: Jobs, outbox: Outbox) -> None:
    job = new(jobs)
    for _ in range(3):
        attempt = jobs.claim(job, "w#1").attempt
        assert jobs.request_handover([job], "w#") == 1 and jobs.signals(job, attempt).handover
        assert jobs.hand_back(job, attempt, "worker stopping") == "queued"
    assert outbox == [job] * 3
    assert jobs.claim(job, "w#1").attempt == 4
    wait_until_due(jobs, job)
    assert Reaper(jobs, max_attempts=2).run_once() == {"publish": 1}  # 1 lost of 4 attempts: requeued
    record = jobs.get(job)
    assert record["handovers"] == 3 and record["state"] == "queued"


def test_unpublished_and_unclaimed_jobs_are_published_again(jobs: Jobs, outbox: Outbox) -> None:
    never_published = new(jobs)  # the API died between writing the job and publishing it
    taken = new(jobs)
    jobs.publish(taken)
    jobs.delivered(taken, "w")  # a worker took the message, then died before claiming
    published_only = new(jobs)
    jobs.publish(published_only)  # sits on its queue: nothing to do
    wait_until_due(jobs, never_published)
    wait_until_due(jobs, taken)
    assert Reaper(jobs, max_attempts=3).run_once() == {"publish": 2}
    assert sorted(outbox) == sorted([taken, published_only, never_published, taken])
    assert published_only not in jobs.due(1000)


def test_a_published_message_lost_in_transit_is_published_again(jobs: Jobs, outbox: Outbox) -> None:
    """A consumer can pop a message and die before recording it: the queue no longer holds it."""
    waiting, lost = new(jobs), new(jobs)
    for job in (waiting, lost):
        jobs.publish(job)
    wait_until_due(jobs, lost)  # time to check that the messages are still on their queue
    jobs.r.lpush(QUEUE, "a message")  # the queue holds a message: the waiting job's, say
    assert Reaper(jobs, max_attempts=3).run_once() == {"waiting": 2}
    jobs.r.delete(QUEUE)  # the queue is empty and both jobs are still queued: their messages were lost
    wait_until_due(jobs, lost)
    assert Reaper(jobs, max_attempts=3).run_once() == {"publish": 2}
    assert sorted(outbox) == sorted([waiting, lost] * 2)


def test_a_job_past_its_hard_limit_fails_time_limit(jobs: Jobs) -> None:
    job = new(jobs, limits={"soft": 0, "hard": 0})
    jobs.claim(job, "w#1")
    wait_until_due(jobs, job)  # the hard limit stopped the process; its lease lapsed
    assert Reaper(jobs, max_attempts=3).run_once() == {"failed": 1}
    assert jobs.get(job)["error"]["type"] == "time_limit"


def test_cancel_of_a_job_whose_worker_died_ends_it_now(jobs: Jobs) -> None:
    job = new(jobs)
    jobs.claim(job, "w#1")
    wait_until_due(jobs, job)
    assert jobs.cancel(job, "t1")["state"] == "cancelled"
    assert jobs.claim(job, "w2#1").outcome == "cancelled"  # a late message runs nothing


def test_final_record_survives_redis_and_a_failed_store_write_is_retried(jobs: Jobs) -> None:
    job = new(jobs)
    attempt = jobs.claim(job, "w#1").attempt
    view = jobs.store.tenant("t1")
    blocker = view.local_path("jobs", job)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the job's folder should be: every write below it fails")
    jobs.archive.within = 0.5
    assert jobs.finish(job, attempt, JobState.SUCCEEDED, result={"ok": 1})
    assert jobs.r.zscore(jobs.persist_key, job) is not None  # not written yet
    assert not list(blocker.parent.glob(".tmp-*"))  # and nothing half-written left behind
    blocker.unlink()
    deadline = time.monotonic() + 30
    while Reaper(jobs, max_attempts=3).run_once()["persisted"] != 1:  # it waits 2 leases before retrying
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for key in jobs.r.scan_iter(f"{jobs.prefix}:*"):  # Redis loses this job's data
        jobs.r.delete(key)
    assert jobs.get(job, "t1")["result"] == {"ok": 1}
    assert [j["id"] for j in jobs.list("t1")[0]] == [job]  # the listing comes back from the store


def test_tenant_index_is_trimmed(jobs: Jobs) -> None:
    ids = [new(jobs) for _ in range(8)]
    assert jobs.r.zcard(jobs.index_key("t1")) == 5
    listed = [j["id"] for j in jobs.list("t1", limit=50)[0]]
    assert listed == ids[::-1][:5]


def test_bad_event_ids_are_refused_before_redis(jobs: Jobs) -> None:
    from bigmodel.errors import InvalidRequest

    job = new(jobs)
    for bad in ("garbage", "1-2-3", "-1", "1-", ""):
        with pytest.raises(InvalidRequest):
            jobs.events(job, bad)
    assert jobs.events(job, "0")[0][1]["data"]["state"] == "queued"


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


def test_a_parent_made_again_finds_its_children_and_wakes_when_they_had_all_ended(
        jobs: Jobs, outbox: Outbox) -> None:
    parent = new(jobs)
    assert jobs.claim(parent, "w1#1").claimed
    kids = [uuid.uuid4().hex for _ in range(2)]
    for kid in kids:
        made = jobs.create(tenant="t1", type="ping", params={"n": 1}, queue=QUEUE, job_id=kid, parent=parent)
        assert made[1]
        # the parent's run before a lost worker made them already: made again, nothing changes
        again, created = jobs.create(tenant="t1", type="ping", params={"n": 2}, queue=QUEUE, job_id=kid,
                                     parent=parent)
        assert not created and again["params"] == {"n": 1}
        claim = jobs.claim(kid, "w2#1")
        assert jobs.finish(kid, claim.attempt, JobState.SUCCEEDED, result={})
    outbox.clear()
    assert jobs.fan_out(parent, 1, kids, total_weight=2) == "wake"
    record = jobs.get(parent)
    assert record["state"] == "queued" and record["children"] == kids and outbox == [parent]
    assert record["progress"]["metrics"] == {"done": 2, "failed": 0, "total": 2}
    assert jobs.fan_out(parent, 1, kids, total_weight=2) == "superseded"  # that attempt is over
