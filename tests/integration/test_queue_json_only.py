"""Given a running worker, a pickled message pushed straight onto its queue is refused and runs nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from tests.integration.test_jobs_http import submit, wait_for

pytestmark = pytest.mark.integration


class Payload:
    """Unpickling this creates a file: the proof that a worker ran code from the queue."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_pickled_task_message_is_rejected_and_the_worker_goes_on(stack, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    task_id = uuid.uuid4().hex
    with Connection(stack.redis.url) as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish(((Payload(marker),), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                   "chord": None}),
                         routing_key="cpu", serializer="pickle",
                         headers={"lang": "py", "task": "bigmodel.run_job", "id": task_id,
                                  "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
                                  "argsrepr": "()", "kwargsrepr": "{}"})
    # The worker takes messages in order: once a job submitted after the pickle has run, the pickle
    # has been looked at (and refused).
    job = submit(stack.url, {"type": "ping", "params": {}}).json()["id"]
    assert wait_for(stack.url, job)["state"] == "succeeded"
    time.sleep(0.5)
    assert not marker.exists()
    log = (stack.logs / "worker.log").read_text(errors="replace")
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log
