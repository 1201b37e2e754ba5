"""What a job cost the machine that ran it: wall time, CPU seconds, peak memory, bytes written to the store.

A worker process runs one job at a time, so process-wide readings taken before and after the runner
belong to that job. Linux lets a process reset its own peak-RSS mark (/proc/self/clear_refs), so the
peak is the job's own and not the largest job this process has run so far.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

from bigmodel.store import Store

_PROC = Path("/proc/self")


def _cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _reset_peak_rss() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")  # 5: reset the peak resident set size to the current one
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux: the process's peak


def _gpu_memory(reset: bool) -> int | None:
    # Only where a runner has already imported TensorFlow: measuring must never import it.
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    try:
        if not tf.config.list_logical_devices("GPU"):
            return None
        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
            return 0
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except Exception:  # an old TF or a device that keeps no statistics: report nothing, not a guess
        return None


class Meter:
    """Measures one job from construction to `stop()`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written = store.bytes_written
        self.peak_is_the_jobs = _reset_peak_rss()
        _gpu_memory(reset=True)
        self.cpu = _cpu_seconds()
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """The job's `usage` field."""
        usage: dict[str, Any] = {
            "wall_seconds": round(time.monotonic() - self.started, 3),
            "cpu_seconds": round(_cpu_seconds() - self.cpu, 3),
            "peak_rss_bytes": _peak_rss_bytes(),
            "store_bytes_written": self.store.bytes_written - self.written,
        }
        if not self.peak_is_the_jobs:
            usage["peak_rss_scope"] = "process"  # the kernel would not reset the mark: a process-wide peak
        gpu = _gpu_memory(reset=False)
        if gpu is not None:
            usage["peak_gpu_bytes"] = gpu
        return usage


def rate(rows: int, seconds: float) -> float:
    """Rows per second, rounded for people (0 when nothing was timed)."""
    return round(rows / seconds, 1) if seconds > 0 else 0.0
