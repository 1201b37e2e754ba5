"""The registry's Redis index and the model repository: cheap resolution, one load per version, Redis loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from bigmodel.config import Settings
from bigmodel.errors import NotFound
from bigmodel.ml.registry import Registry
from bigmodel.serving.cache import ModelCache
from bigmodel.serving.repository import ModelRepository
from bigmodel.store import Store
from tests.services import RedisServer
from tests.trained import publish

pytestmark = pytest.mark.integration


def test_versions_resolve_from_redis_and_survive_its_loss(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # no AOF: a restart loses every key
    server.start()
    try:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80),
                              "label": rng.integers(0, 2, 80)})
        store_url = str(tmp_path / "store")
        for seed in (0, 1):
            publish(server.url, store_url, "acme", "m", frame, "label", hidden=(4,), epochs=1, seed=seed)
        client = redis.Redis.from_url(server.url)
        registry = Registry(client, Store(store_url), "acme")
        registry.move_alias("m", "production", 1, by="test")
        assert registry.version_numbers("m") == [1, 2] and registry.latest("m") == 2
        assert registry.serving_meta("m", "production")["version"] == 1
        assert registry.serving_meta("m")["transform"]["features"] == ["a", "b"]

        repository = ModelRepository(client, Store(store_url), Settings(), cache=ModelCache(4, 10**9))
        first, meta = repository.get("acme", "m", "production")
        again, _ = repository.get("acme", "m", 1)
        latest, latest_meta = repository.get("acme", "m", "latest")
        assert first is again and latest is not first and latest_meta["version"] == 2
        assert repository.cache.stats().misses == 2 and repository.cache.stats().hits == 1

        server.stop()
        server.start()  # Redis comes back empty: the store is the system of record
        assert client.dbsize() == 0
        assert registry.version_numbers("m") == [1, 2] and registry.latest("m") == 2
        assert registry.serving_meta("m", "production")["version"] == 1  # aliases.json in the store
        assert repository.get("acme", "m", 2)[0] is latest  # still warm in this process
        with pytest.raises(NotFound):
            registry.serving_meta("m", 3)
        with pytest.raises(NotFound):
            registry.serving_meta("other")
        assert client.keys("*other*") == []  # an unknown name leaves no key behind
    finally:
        server.stop()
