"""An upload as it arrives: hashed, held to the size limit, spooled to disk and converted while it streams.

The HTTP layer writes the body's file part into an Upload chunk by chunk (werkzeug's multipart
parser takes it as its stream factory). Each chunk is hashed and appended to an anonymous temporary
file; a CSV is parsed by a second thread that follows the spool as it grows, so receiving and parsing
overlap and every byte is read from the network once and from the page cache once. Nothing of an
upload survives it unless it is published: the spool has no name on disk, and the Parquet it became
is removed on every failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from bigmodel.errors import BigModelError, DataError, PayloadTooLarge
from bigmodel.ml import tables


class _Aborted(Exception):
    """The upload was abandoned while its conversion was still reading it."""


class Upload:
    """The receiving end of one uploaded file (a writable stream for werkzeug's multipart parser)."""

    def __init__(self, max_bytes: int, work_dir: str | Path, filename: str | None = None,
                 fmt: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.filename = filename
        self.fmt = fmt
        self.size = 0
        self._digest = hashlib.sha256()
        self._spool = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed by close()
        self._fd = self._spool.fileno()
        self.parquet = Path(work_dir) / f".tmp-{uuid.uuid4().hex}.parquet"
        self._cond = threading.Condition()
        self._ended = False
        self._aborted = False
        self._kind: str | None = None
        self._thread: threading.Thread | None = None
        self._outcome: tables.TableInfo | BaseException | None = None

    # -- what werkzeug calls

    def write(self, data: bytes) -> int:
        """Take the next chunk of the file."""
        if self.size + len(data) > self.max_bytes:
            raise PayloadTooLarge(f"the file is larger than the limit of {self.max_bytes} bytes "
                                  "(the server's BIGMODEL_MAX_UPLOAD_BYTES)")
        self._digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        with self._cond:
            self.size += len(data)
            self._cond.notify_all()
        if self._kind is None and self.size >= tables.HEAD_BYTES:
            self._begin()
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """werkzeug rewinds the part when it ends; we read the spool by offset, so there is nothing to do."""
        return 0

    # -- what the dataset store calls

    @property
    def sha256(self) -> str:
        """The hex digest of every byte taken so far."""
        return self._digest.hexdigest()

    def finish(self) -> str:
        """Mark the end of the file; returns its sha256."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        if self._kind is None:
            self._begin()
        return self.sha256

    def result(self) -> tables.TableInfo:
        """Wait for the conversion; the Parquet is then at self.parquet. DataError when the file is bad."""
        if self._thread is not None:
            self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        if self._outcome is None:
            raise DataError("the upload was not finished")
        return self._outcome

    def close(self) -> None:
        """Stop any conversion and remove what this upload wrote (a published Parquet was moved away)."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._spool.close()
        self.parquet.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- conversion

    def _begin(self) -> None:
        """Sniff the format from the first bytes; convert a CSV from now on, a Parquet once it has ended."""
        head = os.pread(self._fd, tables.HEAD_BYTES, 0)
        try:
            self._kind = tables.pick_format(head, self.filename, self.fmt)
            tables.check_head(head, self.size if self._ended else self.size + 1, self._kind)
        except BigModelError as exc:
            self._kind = "invalid"
            self._outcome = exc
            return
        self._thread = threading.Thread(target=self._convert, name="upload-convert", daemon=True)
        self._thread.start()

    def _convert(self) -> None:
        try:
            if self._kind == "csv":
                self._outcome = tables.csv_to_parquet(lambda: _Follower(self), str(self.parquet))
            else:
                self._wait_for_end()
                self._outcome = tables.parquet_to_parquet(_Follower(self), str(self.parquet))
        except BaseException as exc:  # handed to the request thread by result()
            self._outcome = exc

    def _wait_for_end(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._ended or self._aborted)
            if self._aborted:
                raise _Aborted()

    def _readable(self, offset: int, wanted: int) -> int:
        """How many of `wanted` bytes at offset can be read, waiting for them while the file arrives.

        Whole reads matter: pyarrow infers the CSV's column types from its first block, so that block
        must be a full one, not the few kilobytes that happened to be there.
        """
        with self._cond:
            self._cond.wait_for(lambda: self.size >= offset + wanted or self._ended or self._aborted)
            if self._aborted:
                raise _Aborted()
            return max(0, min(wanted, self.size - offset))


class _Follower(io.RawIOBase):
    """A reader of the spool from its start that waits for bytes not yet received (the converter's input)."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        # Parquet reads its footer first, so it is read only once the upload has ended.
        return self.upload._ended

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.upload.size}[whence]
        self.offset = base + offset
        return self.offset

    def tell(self) -> int:
        return self.offset

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        available = self.upload._readable(self.offset, len(view))
        if available <= 0:
            return 0
        data = os.pread(self.upload._fd, available, self.offset)
        view[: len(data)] = data
        self.offset += len(data)
        return len(data)
