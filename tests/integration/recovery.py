"""Helpers for the recovery tests: named worker nodes as real process groups, and job waits over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from tests.services import RedisServer, Stack

FINAL = ("succeeded", "failed", "cancelled")
LEASE = 2  # seconds: a lost worker's job is recovered within two of these


class Nodes:
    """Worker nodes (one `bigmodel worker` each, in its own process group) of a stack, by name."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.host = socket.gethostname()

    def start(self, name: str, concurrency: int = 1, wait: bool = True) -> str:
        """Start worker node `name`; returns its node name (name@host)."""
        self.procs[name] = self.stack.spawn("worker", "--pool", "cpu", "--concurrency", str(concurrency),
                                            "--name", name, "--loglevel", "INFO", log=f"{name}.log")
        node = f"{name}@{self.host}"
        if wait:
            self.wait_online(node)
        return node

    def ensure(self, *names: str) -> None:
        """Start the named nodes that are not running; wait until all of them are online."""
        for name in names:
            if name not in self.procs or self.procs[name].poll() is not None:
                self.start(name, wait=False)
        for name in names:
            self.wait_online(f"{name}@{self.host}")

    def wait_online(self, node: str, timeout: float = 120) -> None:
        """Wait until /readyz lists the node in the cpu pool."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pools = requests.get(self.stack.url + "/readyz", timeout=10).json().get("pools", {})
                if node in pools.get("cpu", {}).get("workers", []):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker {node} did not come online; see {self.stack.logs}")

    def signal(self, name: str, sig: int, group: bool = True) -> None:
        """Send a signal to a node's main process (and its pool processes when `group`)."""
        proc = self.procs[name]
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL a whole node (main process and pool processes), as when its machine dies."""
        self.signal(name, signal.SIGKILL)
        self.procs.pop(name).wait(30)

    def stop_all(self) -> None:
        """Kill every node's process group (tests end here; nothing is left running)."""
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
        self.procs.clear()


def node_of(worker: str | None) -> str | None:
    """'w1' from a record's worker field 'w1@host#pid'."""
    return worker.split("@", 1)[0] if worker else None


def get(stack: Stack, job_id: str) -> dict:
    """A job's record."""
    return requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()


def submit(stack: Stack, body: dict) -> str:
    """Submit a job; its id."""
    r = requests.post(f"{stack.url}/v1/jobs", json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_job(stack: Stack, job_id: str, check=lambda r: r["state"] in FINAL, timeout: float = 240) -> dict:
    """Poll a job until `check(record)` holds (by default: it is final)."""
    deadline = time.monotonic() + timeout
    record: dict = {}
    while time.monotonic() < deadline:
        try:
            record = get(stack, job_id)
            if check(record):
                return record
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached the expected state: {record}")


def events(stack: Stack, job_id: str) -> list[dict]:
    """A job's events as a list."""
    answer = requests.get(f"{stack.url}/v1/jobs/{job_id}/events", params={"follow": 0}, timeout=10)
    return answer.json()["items"]  # type: ignore[no-any-return]


def final_states(stack: Stack, job_id: str) -> list[str]:
    """The final states a job's events announce (exactly one for a job that ended once)."""
    return [e["data"]["state"] for e in events(stack, job_id)
            if e["type"] == "state" and e["data"]["state"] in FINAL]


def requeues(stack: Stack, job_id: str) -> list[dict]:
    """The state events that put a job back on its queue (with their reason)."""
    return [e["data"] for e in events(stack, job_id) if e["type"] == "state" and e["data"].get("reason")]


def version_folders(store: Path, model: str, tenant: str = "default") -> list[Path]:
    """The committed versions (folders with meta.json) of a model in the store."""
    root = store / "tenants" / tenant / "models" / model
    return sorted(p.parent for p in root.glob("*/meta.json"))


def recovery_stack(tmp: Path, **env: str) -> tuple[RedisServer, Stack]:
    """A private Redis (AOF on, so it can be restarted) and an API with a short lease; no workers yet."""
    server = RedisServer(tmp / "redis", appendonly=True)
    server.start()
    stack = Stack(server, tmp / "store", env={"BIGMODEL_LEASE_SECONDS": str(LEASE),
                                              "BIGMODEL_HANDOVER_SECONDS": "4", **env})
    stack.spawn("api", "--port", str(stack.port), "--workers", "2", log="api.log")
    return server, stack
