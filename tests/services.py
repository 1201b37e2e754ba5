"""Real services for tests and benchmarks: a private redis-server and the bigmodel stack as processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import redis
import requests


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of our own that tests may stop and start again (AOF when asked)."""

    def __init__(self, tmp: Path, *, appendonly: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.appendonly = appendonly
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client_options: dict[str, object] = {}  # e.g. TLS settings for a rediss:// server

    @staticmethod
    def available() -> bool:
        """Whether a redis-server binary is on PATH."""
        return shutil.which("redis-server") is not None

    def client(self) -> redis.Redis:
        """A client of this server."""
        return redis.Redis.from_url(self.url, **self.client_options)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start (or restart) the server on the same port and data folder; wait until it answers."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
             "--dir", str(self.tmp), *self.extra],
            stdout=subprocess.DEVNULL, start_new_session=True)
        client = self.client()
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop the server (SIGTERM: an AOF server flushes what it has)."""
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Stack:
    """The API and worker pools as real processes, on a given Redis and store folder."""

    instances: ClassVar[list[Stack]] = []  # every stack of this test run: the log audit reads them all

    def __init__(self, redis_server: RedisServer, store: Path, env: dict[str, str] | None = None) -> None:
        self.redis = redis_server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = store
        self.env = {**os.environ, "BIGMODEL_REDIS_URL": redis_server.url, "BIGMODEL_STORE_URL": str(store),
                    "BIGMODEL_LEASE_SECONDS": "3", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = store.parent
        self.logs.mkdir(parents=True, exist_ok=True)
        Stack.instances.append(self)

    def spawn(self, *args: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `bigmodel <args>` with its output in a log file next to the store."""
        out = open(self.logs / log, "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen([sys.executable, "-m", "bigmodel.cli", *args],
                                env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, *, cpu_workers: int = 2, pools: tuple[str, ...] = ("cpu",), api_workers: int = 2,
              timeout: float = 120, loglevel: str = "WARNING", worker_args: tuple[str, ...] = ()) -> None:
        """Start the API and the pools; wait until /readyz shows every pool online.

        worker_args go to the cpu pool's `bigmodel worker` (e.g. ("--backend", "jax")).
        """
        self.spawn("api", "--port", str(self.port), "--workers", str(api_workers), log="api.log")
        if "cpu" in pools:
            self.spawn("worker", "--pool", "cpu", "--concurrency", str(cpu_workers), "--loglevel", loglevel,
                       *worker_args, log="worker.log")
        if "infer" in pools:
            self.spawn("worker", "--pool", "infer", "--loglevel", loglevel, log="infer.log")
        self.wait_ready(pools, timeout)

    def wait_ready(self, pools: tuple[str, ...] = ("cpu",), timeout: float = 120) -> dict:
        """Wait until /readyz answers 200 with these pools online; returns its body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = requests.get(self.url + "/readyz", timeout=10).json()
                if all(p in body.get("pools", {}) for p in pools):
                    return body  # type: ignore[no-any-return]
            except (requests.RequestException, ValueError):  # still starting
                pass
            time.sleep(0.3)
        raise RuntimeError("the API or a pool did not come up; see " + str(self.logs))

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL after 20 s)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
