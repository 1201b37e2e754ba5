"""GPU pools with an injected device list (BIGMODEL_GPUS): real worker processes, real routing over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bigmodel.jobs.presence import Presence
from tests.integration.test_jobs_http import submit, wait_for
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration


def environ(pid: int) -> dict[str, str]:
    """A live process's environment as the kernel holds it (what it was started with)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def gpu_workers(presence: Presence, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [w for w in presence.workers() if w.get("pool") == "gpu"]
        if len(workers) >= count:
            return sorted(workers, key=lambda w: w["name"])
        time.sleep(0.3)
    raise AssertionError(f"{count} gpu workers did not come up: {presence.workers()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A private Redis and API (no CPU pool), and two GPU pools on disjoint injected devices:
    one process per GPU on devices 0,1, and two GPUs per process on devices 2,3."""
    tmp = tmp_path_factory.mktemp("gpu-pools")
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    s = Stack(redis_server, tmp / "store")
    try:
        s.spawn("api", "--port", str(s.port), log="api.log")
        s.spawn("worker", "--pool", "gpu", "--loglevel", "WARNING", log="gpu1.log",
                env={"BIGMODEL_GPUS": "0,1"})
        s.spawn("worker", "--pool", "gpu", "--gpus-per-process", "2", "--loglevel", "WARNING",
                log="gpu2.log", env={"BIGMODEL_GPUS": "2,3"})
        s.wait_ready(("gpu",))
        yield s
    finally:
        s.stop()
        redis_server.stop()


def test_one_process_per_injected_gpu_pinned_before_the_framework_loads(stack: Stack) -> None:
    # Given two injected devices for a pool of one GPU per process
    workers = {w["name"].split("@")[0]: w for w in gpu_workers(Presence(stack.redis.client()), 3)}
    single = [workers["gpu0"], workers["gpu1"]]
    # Then two worker processes beat, each started with its own device and memory growth on
    assert [w["gpus"] for w in single] == [["0"], ["1"]]
    assert [w["queues"] for w in single] == [["gpu"], ["gpu"]]
    envs = [environ(w["pid"]) for w in single]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for e in envs)
    assert len({w["pid"] for w in single}) == 2
    # And the pool with two GPUs per process is one process holding both of its devices
    assert workers["gpu2-3"]["gpus"] == ["2", "3"] and workers["gpu2-3"]["queues"] == ["gpu2"]
    assert environ(workers["gpu2-3"]["pid"])["CUDA_VISIBLE_DEVICES"] == "2,3"
    # And the container healthcheck sees this host's gpu pool (and no infer pool)
    check = [sys.executable, "-m", "workers.healthcheck", "--pool"]
    assert subprocess.run([*check, "gpu"], env=stack.env, timeout=60).returncode == 0
    assert subprocess.run([*check, "infer"], env=stack.env, timeout=60).returncode == 1


def test_a_two_gpu_job_goes_only_to_a_process_with_two_gpus(stack: Stack) -> None:
    gpu_workers(Presence(stack.redis.client()), 3)
    # When jobs ask for two GPUs (and one for one GPU)
    big = [submit(stack.url, {"type": "ping", "params": {"n": i}, "resources": {"gpu": 2}}).json()
           for i in range(3)]
    small = submit(stack.url, {"type": "ping", "params": {}, "resources": {"gpu": 1}}).json()
    # Then every two-GPU job ran on the two-GPU process, and the one-GPU job on a one-GPU process
    for job in big:
        record = wait_for(stack.url, job["id"], timeout=120)
        assert record["state"] == "succeeded" and record["queue"] == "gpu2"
        assert record["worker"].startswith("gpu2-3@")
    record = wait_for(stack.url, small["id"], timeout=120)
    assert record["queue"] == "gpu" and record["worker"].split("@")[0] in ("gpu0", "gpu1")


def test_a_job_for_more_gpus_than_any_process_has_waits_and_says_why(stack: Stack) -> None:
    job = submit(stack.url, {"type": "ping", "params": {}, "resources": {"gpu": 4}}).json()
    after = submit(stack.url, {"type": "ping", "params": {}, "resources": {"gpu": 1}}).json()
    assert wait_for(stack.url, after["id"], timeout=120)["state"] == "succeeded"  # the pool is taking jobs
    record = requests.get(f"{stack.url}/v1/jobs/{job['id']}", timeout=10).json()
    assert record["state"] == "queued" and record["queue"] == "gpu4"
    assert record["waiting"]["reason"] == "gpu_unavailable"
    assert "4 GPU(s) per process" in record["waiting"]["message"]
