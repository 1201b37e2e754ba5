"""Ctrl-C on `bigmodel up` while a job runs: pools hand it back, then the API stops, then its Redis.

The terminal's SIGINT goes to the supervisor's whole process group; the children run in sessions of
their own, so only the supervisor sees it and stops them in order. Started again on the same data,
the job (kept by Redis's append-only file) runs to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.integration.recovery import requeues, submit, wait_job
from tests.services import RedisServer, free_port

pytestmark = pytest.mark.integration


class Up:
    """`bigmodel up` as a terminal runs it: in a process group of its own, in a working folder."""

    def __init__(self, cwd: Path, redis_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.env = {**os.environ, "BIGMODEL_REDIS_URL": self.redis_url,
                    "BIGMODEL_STORE_URL": str(cwd / "store"), "BIGMODEL_LEASE_SECONDS": "2",
                    "BIGMODEL_HANDOVER_SECONDS": "3", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.cwd / "up.log", "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bigmodel.cli", "up", "--port", str(self.port), "--cpu-workers", "1",
             "--gpu-workers", "0"], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if "cpu" in requests.get(self.url + "/readyz", timeout=5).json().get("pools", {}):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"bigmodel up did not come up; see {self.cwd / 'up.log'}")

    def ctrl_c(self) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group; wait for the exit."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(90)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(90)


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
        return True
    except requests.RequestException:
        return False


def test_ctrl_c_stops_pools_then_api_then_redis_and_the_job_survives(tmp_path: Path) -> None:
    if not RedisServer.available():
        pytest.skip("bigmodel up starts redis-server itself")
    up = Up(tmp_path, free_port())
    try:
        up.start()
        job = submit(up, {"type": "ping", "params": {"sleep": 4, "steps": 8}})
        wait_job(up, job, lambda r: r["state"] == "running")
        # When the terminal's Ctrl-C reaches the process group
        assert up.ctrl_c() == 0
        # Then everything stopped, Redis last (it had the hand-over written before it went)
        assert not answers(up.url + "/healthz")
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(up.redis_url, socket_connect_timeout=1).ping()
        # And started again on the same data, the handed-back job runs to its end
        up.start()
        record = wait_job(up, job)
        assert record["state"] == "succeeded" and record["handovers"] == 1 and record["attempts"] == 2
        assert [q["reason"] for q in requeues(up, job)] == ["handed_over"]
    finally:
        up.kill()
