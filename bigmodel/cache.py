"""This machine's cache of store files (models, processed datasets), keyed by content hash.

A worker machine downloads a model or a dataset once, not once per job. The cache is a folder that
every process on the machine shares:

    <dir>/objects/<key>/<file name>    a finished entry (appears by an atomic rename of its folder)
    <dir>/locks/<key>.lock             flock: shared while in use, exclusive to fill or evict the entry
    <dir>/tmp/                         downloads in progress (never read; cleared of strays on eviction)

A half-downloaded file is never used: it lives under tmp/ until it is complete (and, when the key is
the file's sha256, verified). Entries are evicted least recently used first when the folder passes
its byte bound, skipping any that a process holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bigmodel.errors import StoreError
from bigmodel.names import check_segment

if TYPE_CHECKING:
    from bigmodel.config import Settings
    from bigmodel.store import Store

log = logging.getLogger(__name__)

CHUNK = 4 * 2**20
_KEY = re.compile(r"^[0-9a-f]{16,128}$")
STRAY_SECONDS = 3600  # a tmp/ download this old belongs to a process that died


@dataclass
class CacheStats:
    """What this process's cache calls did: hits, and downloads (real reads from the store)."""

    hits: int = 0
    downloads: int = 0
    bytes_downloaded: int = 0
    evictions: int = 0


class Cache:
    """A bounded, LRU, multi-process cache of immutable store files under one local folder."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.dir = Path(directory).absolute()
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        for sub in ("objects", "locks", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def fetch(self, store: Store, rel: str, digest: str, *, verify: bool = True) -> Path:
        """The local path of a store file, downloading it on a miss; open it at once (or use `hold`)."""
        with self.hold(store, rel, digest, verify=verify) as path:
            return path

    @contextlib.contextmanager
    def hold(self, store: Store, rel: str, digest: str, *, verify: bool = True) -> Iterator[Path]:
        """The local path of a store file, kept from eviction while the block runs.

        `digest` names the file's content: its sha256, checked after download when `verify`; or (with
        verify=False) another hash fixed for the file's life, such as the hash of the upload a raw
        dataset's Parquet was made from. The file keeps its name, so `model.keras` stays loadable.
        """
        key = _check_key(digest)
        name = check_segment(rel.rsplit("/", 1)[-1], "file name")
        entry = self.dir / "objects" / key
        with open(self.dir / "locks" / f"{key}.lock", "a+b") as lock:
            downloaded = False
            while True:
                fcntl.flock(lock, fcntl.LOCK_SH)
                if (entry / name).is_file():
                    break
                # A miss: one process per machine downloads; the others wait here, then find it.
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (entry / name).is_file():
                    self._download(store, rel, key, entry, name, verify)
                    downloaded = True
                # Going back to a shared lock is not atomic (an evictor may slip in): look again.
            self.stats.hits += 0 if downloaded else 1
            os.utime(entry)  # recency for LRU, on the folder, so readers never touch the file
            try:
                yield entry / name
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _download(self, store: Store, rel: str, key: str, entry: Path, name: str, verify: bool) -> None:
        staging = self.dir / "tmp" / f"{key}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            sha, size = hashlib.sha256(), 0
            with store.open(rel) as src, open(staging / name, "wb") as dst:
                while chunk := src.read(CHUNK):
                    sha.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if verify and sha.hexdigest() != key:
                raise StoreError(f"{rel} in the store does not match its recorded sha256; not cached")
            shutil.rmtree(entry, ignore_errors=True)  # an entry folder emptied by a crash
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.stats.downloads += 1
        self.stats.bytes_downloaded += size
        log.info("cache: downloaded %s (%d bytes) into %s", rel, size, entry)
        self.evict(keep=key)

    def size(self) -> int:
        """Bytes held by finished entries."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[str, int, float]]:
        out = []
        for entry in os.scandir(self.dir / "objects"):
            try:
                size = sum(f.stat().st_size for f in os.scandir(entry.path) if f.is_file())
                out.append((entry.name, size, entry.stat().st_mtime))
            except FileNotFoundError:  # evicted by another process while we looked
                continue
        return out

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used entries until the cache fits its bound; returns bytes freed."""
        freed = 0
        with open(self.dir / "locks" / "evict.lock", "a+b") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)  # one evictor at a time per machine
            self._clear_strays()
            entries = sorted(self._entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            for key, size, _ in entries:
                if total <= self.max_bytes:
                    break
                if key != keep and self._remove_unheld(key):
                    total -= size
                    freed += size
                    self.stats.evictions += 1
        return freed

    def _remove_unheld(self, key: str) -> bool:
        with open(self.dir / "locks" / f"{key}.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # some process is using it right now
            # Rename first: a reader that checks after this sees a miss, never a half-removed folder.
            trash = self.dir / "tmp" / f"evicted-{key}-{uuid.uuid4().hex}"
            try:
                os.rename(self.dir / "objects" / key, trash)
            except FileNotFoundError:
                return False
            shutil.rmtree(trash, ignore_errors=True)
            return True

    def _clear_strays(self) -> None:
        # A download folder untouched for an hour (its file included) belongs to a process that died.
        cutoff = time.time() - STRAY_SECONDS
        for stray in os.scandir(self.dir / "tmp"):
            with contextlib.suppress(FileNotFoundError):
                paths = [stray.path, *(f.path for f in os.scandir(stray.path))]
                if max(os.stat(p).st_mtime for p in paths) < cutoff:
                    shutil.rmtree(stray.path, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a local file, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _check_key(digest: str) -> str:
    if not isinstance(digest, str) or not _KEY.match(digest):
        raise ValueError(f"a cache key is a lowercase hex content hash, got {digest!r}")
    return digest


@functools.cache
def _open(directory: str, max_bytes: int) -> Cache:
    return Cache(directory, max_bytes)


def machine_cache(settings: Settings) -> Cache | None:
    """This process's handle on the machine's cache (None when BIGMODEL_CACHE_BYTES is 0 or unusable, and
    for a store that is a local folder: its files are on this machine's disk already)."""
    if settings.cache_bytes <= 0 or not settings.store_is_remote:
        return None
    try:
        return _open(os.path.abspath(settings.cache_dir), settings.cache_bytes)
    except OSError as exc:
        # The cache only saves downloads: without it jobs read the store directly, they do not fail.
        log.warning("cache: cannot use %s (%s); reading the store directly", settings.cache_dir, exc.strerror)
        return None
