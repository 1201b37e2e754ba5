"""Fixtures that start real services: a private redis-server, worker processes, the API under gunicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import bench_quick
from tests.services import RedisServer, Stack

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked after_all (the log audit, the quick benchmarks) run once every other test has run;
    the quick benchmarks start now, in the background, beside the rest of the run."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)  # stable: order kept
    bench_quick.start_if_collected(config, items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(bench_quick.KEY, None)
    if run is not None:
        run.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not RedisServer.available():
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


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    s = Stack(redis_server, root / "store")
    try:
        s.start()
        yield s
    finally:
        s.stop()  # also when start-up failed: never leak API or worker processes
