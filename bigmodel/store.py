"""The shared store on fsspec: a local folder by default, any fsspec URL for many machines."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from bigmodel.errors import StoreError
from bigmodel.names import check_name, check_segment


class Store:
    """A root in an fsspec filesystem, with atomic writes and checked relative paths."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self.fs = fs
        self._is_local = isinstance(fs, LocalFileSystem)
        if self._is_local:
            root = os.path.abspath(root)
        self.root = root.rstrip("/")
        self.prefix = prefix.strip("/")

    def tenant(self, tenant: str) -> Store:
        """The view of one tenant: everything below tenants/<tenant>/."""
        check_name(tenant, "tenant")
        child = Store.__new__(Store)
        child.url, child.fs, child._is_local, child.root = self.url, self.fs, self._is_local, self.root
        child.prefix = "/".join(p for p in (self.prefix, "tenants", tenant) if p)
        return child

    def path(self, *segments: str) -> str:
        """The full filesystem path of a relative path made of checked segments."""
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
        full = self.path(rel)
        parent = full.rsplit("/", 1)[0]
        try:
            if self._is_local:
                os.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
                try:
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, full)
                finally:
                    if os.path.exists(tmp):  # a failed write leaves nothing behind
                        os.unlink(tmp)
            else:
                # Object stores make a single put visible all at once.
                self.fs.pipe_file(full, data)
        except OSError as exc:
            raise StoreError(f"the store could not write {rel}: {exc.strerror or exc}") from None
        return len(data)

    def write_json(self, rel: str, value: Any) -> int:
        """Write a JSON document atomically."""
        return self.write_bytes(rel, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def put_file(self, rel: str, local: str | Path) -> int:
        """Copy a local file into the store atomically."""
        return self.write_bytes(rel, Path(local).read_bytes())

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
        """The bytes of a file; NotFound-like FileNotFoundError when absent."""
        with self.fs.open(self.path(rel), "rb") as fh:
            return fh.read()

    def read_json(self, rel: str) -> Any:
        """Parse a JSON file of the store."""
        return json.loads(self.read_bytes(rel))

    def open(self, rel: str, mode: str = "rb") -> Any:
        """Open a file for reading (streaming downloads)."""
        return self.fs.open(self.path(rel), mode)

    def exists(self, rel: str) -> bool:
        """Whether a file or folder exists."""
        return bool(self.fs.exists(self.path(rel)))

    def size(self, rel: str) -> int:
        """A file's size in bytes."""
        return int(self.fs.size(self.path(rel)))

    def listdir(self, rel: str) -> list[str]:
        """Names directly below a folder (empty when it does not exist)."""
        full = self.path(rel)
        if not self.fs.exists(full):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(full, detail=False))

    def walk_files(self, rel: str) -> Iterator[str]:
        """Every file below a folder, as paths relative to that folder."""
        full = self.path(rel)
        if not self.fs.exists(full):
            return
        for path in sorted(self.fs.find(full)):
            yield path[len(full) + 1 :]

    def delete(self, rel: str) -> None:
        """Remove a file or folder if it exists."""
        full = self.path(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    def check_writable(self) -> None:
        """Write and remove a probe file; raises ServiceUnavailable when the store is read-only or gone."""
        probe = f"probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"ok")
        self.delete(probe)
