"""What the data and training benchmarks share: a private stack, streamed uploads, jobs, peak memory."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.services import RedisServer, Stack

DATA = Path(__file__).resolve().parent.parent / "var" / "bench-data"  # generated inputs, kept between runs
UPLOAD_BLOCK = 1 << 20


@contextlib.contextmanager
def private_stack(env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A private redis-server and a Stack on it, nothing started yet; everything stopped afterwards."""
    if not RedisServer.available():
        raise RuntimeError("the benchmarks need redis-server on PATH")
    with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        stack = Stack(server, Path(tmp) / "store", env=env)
        try:
            yield stack
        finally:
            stack.stop()
            server.stop()


@contextlib.contextmanager
def running_stack(env: dict[str, str] | None = None, *, cpu_workers: int = 1,
                  api_workers: int = 1) -> Iterator[Stack]:
    """A private redis-server, API and CPU pool for one benchmark; everything stopped afterwards."""
    with private_stack(env) as stack:
        stack.start(cpu_workers=cpu_workers, api_workers=api_workers, timeout=180)
        yield stack


class _Body:
    """A multipart/form-data body streamed from a file (http.client reads it block by block)."""

    def __init__(self, path: Path, filename: str, trailer: bytes) -> None:
        self.boundary = uuid.uuid4().hex
        head = (f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
                "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        self.parts: list[Any] = [head, path, trailer, f"\r\n--{self.boundary}--\r\n".encode()]
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self.parts)
        self._file: Any = None

    def read(self, size: int = -1) -> bytes:
        while self.parts:
            part = self.parts[0]
            if isinstance(part, Path):
                self._file = self._file or open(part, "rb")  # noqa: SIM115 - closed at its end
                chunk = self._file.read(size)
                if chunk:
                    return chunk  # type: ignore[no-any-return]
                self._file.close()
                self._file = None
                self.parts.pop(0)
            else:
                self.parts.pop(0)
                if part:
                    return part  # type: ignore[no-any-return]
        return b""


def upload(url: str, path: Path, *, trailer: bytes = b"", timeout: float = 900) -> tuple[int, dict[str, Any]]:
    """POST a file to /v1/datasets, streamed from disk as a client should; returns (status, body).

    `trailer` bytes are appended to the file (blank lines make the same table with a new sha256).
    """
    parts = urlsplit(url)
    body = _Body(path, path.name, trailer)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, blocksize=UPLOAD_BLOCK)
    try:
        conn.request("POST", "/v1/datasets", body=body,  # type: ignore[arg-type]
                     headers={"Content-Type": f"multipart/form-data; boundary={body.boundary}",
                              "Content-Length": str(body.length)})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def submit_job(url: str, body: dict[str, Any]) -> str:
    """Submit a job; returns its id."""
    response = requests.post(f"{url}/v1/jobs", json=body, timeout=30)
    response.raise_for_status()
    return str(response.json()["id"])


def wait_job(url: str, job_id: str, timeout: float = 900, poll: float = 0.02) -> dict[str, Any]:
    """Poll a job until it is terminal; returns the final record (it must have succeeded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = requests.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            if record["state"] != "succeeded":
                raise RuntimeError(f"job {record['type']} {record['state']}: {record.get('error')}")
            return record  # type: ignore[no-any-return]
        time.sleep(poll)
    raise RuntimeError(f"job {job_id} did not finish in {timeout} s")


def run_job(url: str, body: dict[str, Any], timeout: float = 900, poll: float = 0.02) -> dict[str, Any]:
    """Submit a job and poll until it is terminal; returns the final record (it must have succeeded)."""
    return wait_job(url, submit_job(url, body), timeout, poll)


def running_seconds(record: dict[str, Any]) -> float:
    """A job's started -> finished time from its record."""
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(record["finished_at"]) - parse(record["started_at"])).total_seconds()


# ---------------------------------------------------------------- processes and memory


def process_tree(roots: list[int]) -> list[int]:
    """The pids of these processes and all their descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peaks(pids: list[int]) -> None:
    """Reset each process's peak-RSS mark to its current RSS (Linux: clear_refs 5)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pids: list[int]) -> float:
    """The sum of the processes' peak RSS (VmHWM), in MiB: an upper bound of their peak together."""
    return sum(_status_kb(pid, "VmHWM") for pid in pids) / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass(frozen=True)
class ScriptRun:
    """What a baseline script took."""

    seconds: float  # wall time, interpreter start included
    peak_mb: float  # peak RSS
    cpu: float  # user + system CPU seconds
    output: str


def run_script(code: str, *args: str) -> ScriptRun:
    """Run Python code in a fresh interpreter and measure it."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    try:
        out = tempfile.TemporaryFile()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, fh.name, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"the baseline script failed ({proc.returncode}): {text[-2000:]}")
        return ScriptRun(seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text)
    finally:
        os.unlink(fh.name)
