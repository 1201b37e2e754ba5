"""Fixtures that start real services: a private redis-server, worker processes, the API under gunicorn."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of our own that tests may stop and start again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("no redis-server binary and no REDIS_URL")
        server = RedisServer.__new__(RedisServer)
        server.url, server.proc = url, None
        yield server
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


class Stack:
    """The API and a CPU worker pool as real processes."""

    def __init__(self, redis_server: RedisServer, store: Path) -> None:
        self.redis = redis_server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BIGMODEL_REDIS_URL": redis_server.url, "BIGMODEL_STORE_URL": str(store),
                    "BIGMODEL_LEASE_SECONDS": "3", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = store.parent

    def spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.logs / log, "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen([sys.executable, "-m", "bigmodel.cli", *args], env=self.env,
                                stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.spawn("api", "--port", str(self.port), log="api.log")
        self.spawn("worker", "--pool", "cpu", "--concurrency", "2", "--loglevel", "WARNING",
                   log="worker.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                body = requests.get(self.url + "/readyz", timeout=10).json()
                if "cpu" in body.get("pools", {}):
                    return
            except (requests.RequestException, ValueError):  # still starting
                pass
            time.sleep(0.3)
        raise RuntimeError("the API or the worker did not come up; see " + str(self.logs))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    s = Stack(redis_server, root / "store")
    try:
        s.start()
        yield s
    finally:
        s.stop()  # also when start-up failed: never leak API or worker processes
