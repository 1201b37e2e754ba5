"""The shared store on fsspec: a local folder by default, an S3 bucket (or any fsspec URL) for many machines.

Both backends keep the same promises: a reader sees an old file or the whole new one, never part of
one; a failed write leaves nothing behind; paths are checked segment by segment; a "folder" is
anything with a file below it (on S3 it is only a key prefix), so `exists` and `listdir` agree.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from bigmodel.errors import StoreError
from bigmodel.names import check_name, check_segment

if TYPE_CHECKING:
    from bigmodel.config import Settings

TMP_PREFIX = ".tmp-"  # local in-flight writes; never listed
STREAM_BLOCK_BYTES = 16 * 2**20  # multipart part size for streamed S3 writes (S3's minimum is 5 MiB)


def _error_code(exc: BaseException | None) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _reason(exc: BaseException) -> str:
    """Why an operation failed, in words that carry no credentials or request details.

    The server's own message is left out on purpose: S3 error bodies can echo the access key id or the
    string that was signed.
    """
    code = _error_code(exc) or _error_code(exc.__cause__)
    text = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        text += f" ({os.strerror(exc.errno)})"
    return text + (f" [{code}]" if code else "")


def _has_file(folder: str) -> bool:
    """Whether a local folder has a (finished) file anywhere below it; stops at the first one."""
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif not entry.name.startswith(TMP_PREFIX):
                return True
    return False


class WriteTally(threading.local):
    """Bytes written through a Store and all its views, counted per thread: a job's usage reads the
    difference in the job's thread, not what a worker's background threads write meanwhile."""

    def __init__(self) -> None:
        self.bytes = 0


class Store:
    """A root in an fsspec filesystem, with atomic writes and checked relative paths."""

    def __init__(self, url: str, prefix: str = "", options: dict[str, Any] | None = None) -> None:
        self.url = url
        options = dict(options or {})
        if url.startswith(("s3://", "s3a://")):
            # Other machines write too: every listing asks the bucket, never a cached answer.
            options.setdefault("use_listings_cache", False)
        fs, root = fsspec.core.url_to_fs(url, **options)
        self.fs = fs
        self._is_local = isinstance(fs, LocalFileSystem)
        if self._is_local:
            root = os.path.abspath(root)
        self.root = root.rstrip("/")
        self.prefix = prefix.strip("/")
        self.tally = WriteTally()

    @property
    def bytes_written(self) -> int:
        """Bytes written through this store and its views since it was made."""
        return self.tally.bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store the settings name, with the S3 endpoint they carry (credentials: botocore's chain)."""
        return cls(settings.store_url, options=settings.store_options)

    def tenant(self, tenant: str) -> Store:
        """The view of one tenant: everything below tenants/<tenant>/."""
        check_name(tenant, "tenant")
        child = Store.__new__(Store)
        child.url, child.fs, child._is_local, child.root = self.url, self.fs, self._is_local, self.root
        child.tally = self.tally
        child.prefix = "/".join(p for p in (self.prefix, "tenants", tenant) if p)
        return child

    def path(self, *segments: str) -> str:
        """The full filesystem path of a relative path made of checked segments ("" is the root)."""
        segments = tuple(seg for seg in segments if seg != "")
        for seg in segments:
            for part in seg.split("/"):
                check_segment(part, "path segment")
        return "/".join(p for p in (self.root, self.prefix, *segments) if p)

    def uri(self, *segments: str) -> str:
        """A URI for the path that another machine with the same store URL can open."""
        full = self.path(*segments)
        if self._is_local:
            return Path(full).as_uri()
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{full}"

    def local_path(self, *segments: str) -> Path | None:
        """The local path when the store is a local folder, else None."""
        return Path(self.path(*segments)) if self._is_local else None

    def write_bytes(self, rel: str, data: bytes) -> int:
        """Write a file atomically: readers see the old file or the whole new one, never half."""
        with self.writer(rel) as fh:
            fh.write(data)
        return len(data)

    def write_json(self, rel: str, value: Any) -> int:
        """Write a JSON document atomically."""
        return self.write_bytes(rel, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    @contextlib.contextmanager
    def writer(self, rel: str) -> Iterator[IO[bytes]]:
        """A binary file to stream into; it appears whole when the block ends, and not at all if it raises.

        Local: a temporary file beside the target, renamed over it. S3: one PUT for a small file, a
        multipart upload that S3 publishes only on completion for a large one, aborted on failure.
        """
        full = self.path(rel)
        try:
            if self._is_local:
                fh, commit, discard = self._local_writer(full)
            else:
                fh = self.fs.open(full, "wb", block_size=STREAM_BLOCK_BYTES)
                commit, discard = fh.close, lambda: self._discard_remote(fh)
        except Exception as exc:
            raise StoreError(f"the store could not write {rel}: {_reason(exc)}") from None
        try:
            yield fh
            size = fh.tell()
        except BaseException:
            discard()
            raise
        try:
            commit()
        except Exception as exc:
            discard()
            raise StoreError(f"the store could not write {rel}: {_reason(exc)}") from None
        self.tally.bytes += size  # what a job wrote is part of its usage

    def _local_writer(self, full: str) -> tuple[IO[bytes], Any, Any]:
        parent = full.rsplit("/", 1)[0]
        os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}"
        fh = open(tmp, "wb")  # noqa: SIM115 - closed by commit or discard

        def commit() -> None:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, full)

        def discard() -> None:
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

        return fh, commit, discard

    @staticmethod
    def _discard_remote(fh: Any) -> None:
        # Abort the multipart upload (if one started) and close without the final flush that would publish.
        with contextlib.suppress(Exception):
            fh.discard()
        fh.closed = True

    def put_file(self, rel: str, local: str | Path) -> int:
        """Copy a local file into the store atomically, streaming it (large files never sit in memory)."""
        with open(local, "rb") as src, self.writer(rel) as dst:
            shutil.copyfileobj(src, dst, STREAM_BLOCK_BYTES)
        return os.path.getsize(local)

    def put_tree(self, rel: str, local_dir: str | Path) -> list[tuple[str, int]]:
        """Copy a local directory tree into the store, file by file; returns (relative path, size)."""
        written = []
        base = Path(local_dir)
        for path in sorted(base.rglob("*")):
            if path.is_file():
                sub = path.relative_to(base).as_posix()
                written.append((f"{rel}/{sub}", self.put_file(f"{rel}/{sub}", path)))
        return written

    def get_tree(self, rel: str, local_dir: str | Path) -> Path:
        """Copy a directory of the store to a local directory."""
        self.fs.get(self.path(rel) + "/", str(local_dir), recursive=True)
        return Path(local_dir)

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of a file, from one version of it; FileNotFoundError when absent."""
        if self._is_local:
            with self.open(rel) as fh:
                return fh.read()  # type: ignore[no-any-return]
        # One GET: a streamed read (HEAD, then ranges pinned to the ETag) fails if a writer replaces it.
        return self._guard("read", rel, self._cat)  # type: ignore[no-any-return]

    def _cat(self, full: str) -> bytes:
        try:
            return self.fs.cat_file(full)  # type: ignore[no-any-return]
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such file in the store", full) from None

    def read_json(self, rel: str) -> Any:
        """Parse a JSON file of the store."""
        return json.loads(self.read_bytes(rel))

    def open(self, rel: str, mode: str = "rb") -> Any:
        """Open a file for reading (streaming downloads); FileNotFoundError when absent."""
        if mode != "rb":
            raise ValueError("the store opens files for reading only; write with writer()")
        full = self.path(rel)
        try:
            return self.fs.open(full, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such file in the store", rel) from None
        except Exception as exc:
            raise StoreError(f"the store could not read {rel}: {_reason(exc)}") from None

    def exists(self, rel: str) -> bool:
        """Whether a file exists, or a folder with a file below it (what a key prefix means on S3)."""
        if self._is_local:
            full = self.path(rel)
            return os.path.isfile(full) or _has_file(full)
        return self._guard("read", rel, lambda full: bool(self.fs.exists(full)))

    def size(self, rel: str) -> int:
        """A file's size in bytes."""
        return self._guard("read", rel, lambda full: int(self.fs.size(full)))

    def listdir(self, rel: str) -> list[str]:
        """Names directly below a folder (empty when it does not exist or is a file)."""
        if self._is_local:
            return self._local_listdir(self.path(rel))

        def names(full: str) -> list[str]:
            try:
                entries = self.fs.ls(full, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                return []
            return sorted({e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                           if e["name"].rstrip("/") != full} - {""})

        return self._guard("list", rel, names)

    @staticmethod
    def _local_listdir(full: str) -> list[str]:
        # As on S3: in-flight temporary files and folders with no file below them do not show.
        try:
            entries = list(os.scandir(full))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(e.name for e in entries if not e.name.startswith(TMP_PREFIX)
                      and (not e.is_dir() or _has_file(e.path)))

    def walk_files(self, rel: str) -> Iterator[str]:
        """Every file below a folder, as paths relative to that folder."""
        full = self.path(rel)
        found = self._guard("list", rel, lambda f: [] if not self.fs.isdir(f) else self.fs.find(f))
        for path in sorted(found):
            sub = path[len(full) + 1 :]
            if not sub.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                yield sub

    def delete(self, rel: str) -> None:
        """Remove a file or folder if it exists."""

        def rm(full: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(full, recursive=True)

        self._guard("delete", rel, rm)

    def _guard(self, action: str, rel: str, call: Any) -> Any:
        full = self.path(rel)
        try:
            return call(full)
        except (StoreError, FileNotFoundError):
            raise
        except Exception as exc:
            raise StoreError(f"the store could not {action} {rel}: {_reason(exc)}") from None

    def check_writable(self) -> None:
        """Write and remove a probe file; raises ServiceUnavailable when the store is read-only or gone."""
        probe = f"probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"ok")
        self.delete(probe)
