"""The machine cache on a local store: hits, verification, LRU bound, held entries, failed downloads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from bigmodel.cache import Cache, machine_cache, sha256_file
from bigmodel.config import Settings
from bigmodel.errors import StoreError
from bigmodel.store import Store


def put(store: Store, rel: str, data: bytes) -> str:
    store.write_bytes(rel, data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store")).tenant("acme")


def test_a_miss_downloads_once_then_hits(store: Store, tmp_path: Path) -> None:
    digest = put(store, "models/m/1/model.keras", b"weights" * 100)
    cache = Cache(tmp_path / "cache", max_bytes=10_000)
    first = cache.fetch(store, "models/m/1/model.keras", digest)
    second = cache.fetch(store, "models/m/1/model.keras", digest)
    assert first == second and first.name == "model.keras" and first.read_bytes() == b"weights" * 100
    assert (cache.stats.downloads, cache.stats.hits, cache.stats.bytes_downloaded) == (1, 1, 700)
    assert sha256_file(first) == digest
    # Another process's handle on the same folder (a second worker on the machine) hits too
    other = Cache(tmp_path / "cache", max_bytes=10_000)
    other.fetch(store, "models/m/1/model.keras", digest)
    assert other.stats.downloads == 0 and other.stats.hits == 1


def test_content_that_does_not_match_its_hash_is_never_cached(store: Store, tmp_path: Path) -> None:
    put(store, "datasets/d/data.parquet", b"tampered")
    cache = Cache(tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(StoreError, match="sha256"):
        cache.fetch(store, "datasets/d/data.parquet", hashlib.sha256(b"original").hexdigest())
    assert os.listdir(tmp_path / "cache" / "objects") == [] and os.listdir(tmp_path / "cache" / "tmp") == []
    # A key that is not the file's own hash (a raw dataset's upload hash) is taken as given
    path = cache.fetch(store, "datasets/d/data.parquet", "ab" * 32, verify=False)
    assert path.read_bytes() == b"tampered"


def test_least_recently_used_goes_first_within_the_bound(store: Store, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", max_bytes=250)
    keys = [put(store, f"f{i}/data.bin", bytes([i]) * 100) for i in range(3)]
    cache.fetch(store, "f0/data.bin", keys[0])
    cache.fetch(store, "f1/data.bin", keys[1])
    os.utime(cache.dir / "objects" / keys[0], (1, 1))  # f0 long unused ...
    os.utime(cache.dir / "objects" / keys[1], (2, 2))
    cache.fetch(store, "f0/data.bin", keys[0])  # ... until now: f1 is the least recently used
    cache.fetch(store, "f2/data.bin", keys[2])
    assert sorted(os.listdir(cache.dir / "objects")) == sorted([keys[0], keys[2]])
    assert cache.size() == 200 and cache.stats.evictions == 1


def test_an_entry_in_use_is_not_evicted(store: Store, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", max_bytes=150)
    keys = [put(store, f"f{i}/data.bin", bytes([i]) * 100) for i in range(3)]
    with cache.hold(store, "f0/data.bin", keys[0]) as held:
        # flock is per open file: this process's other handle stands in for another process
        Cache(tmp_path / "cache", max_bytes=150).fetch(store, "f1/data.bin", keys[1])
        assert held.read_bytes() == bytes([0]) * 100
    cache.fetch(store, "f2/data.bin", keys[2])  # f0 is free now and the oldest: it goes
    assert keys[0] not in os.listdir(cache.dir / "objects")


class BreakingStore(Store):
    """A local store whose reads fail after the first chunk (a connection dropped mid-download)."""

    def open(self, rel: str, mode: str = "rb") -> Any:
        real = super().open(rel, mode)

        class Reader:
            def __enter__(self) -> Reader:
                return self

            def __exit__(self, *exc: object) -> None:
                real.close()

            def read(self, n: int = -1) -> bytes:
                if real.tell() > 0:
                    raise OSError("connection reset")
                return real.read(10)

        return Reader()


def test_a_half_downloaded_file_is_never_used(tmp_path: Path) -> None:
    good = Store(str(tmp_path / "store"))
    digest = put(good, "m/model.keras", b"x" * 100)
    cache = Cache(tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(OSError, match="connection reset"):
        cache.fetch(BreakingStore(str(tmp_path / "store")), "m/model.keras", digest)
    assert os.listdir(cache.dir / "objects") == [] and os.listdir(cache.dir / "tmp") == []
    # A stray partial download from a killed process is ignored: the next fetch downloads afresh
    stray = cache.dir / "tmp" / f"{digest}-dead"
    stray.mkdir()
    (stray / "model.keras").write_bytes(b"x" * 10)
    assert cache.fetch(good, "m/model.keras", digest).read_bytes() == b"x" * 100


def test_keys_are_hashes_and_names_are_checked(store: Store, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", max_bytes=100)
    for bad in ("../etc", "ABC", "", "a" * 8):
        with pytest.raises(ValueError):
            cache.fetch(store, "m/model.keras", bad)
    assert machine_cache(Settings(cache_bytes=0)) is None
    (tmp_path / "file").write_bytes(b"")
    assert machine_cache(Settings(cache_dir=str(tmp_path / "file" / "cache"))) is None  # unusable: no cache
    assert machine_cache(Settings(cache_dir=str(tmp_path / "c"))) is machine_cache(
        Settings(cache_dir=str(tmp_path / "c")))
