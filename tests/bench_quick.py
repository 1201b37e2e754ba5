"""`make bench-quick` as a test: started as soon as the test run is collected, so that the benchmarks'
own stacks start up while the rest of the suite runs (most of either is waiting on processes), and
checked at the end of the run."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_FILE = "tests/integration/test_bench_quick.py"


@dataclass
class BenchRun:
    """A `python -m bench.run --quick` in the background, writing into `out`."""

    proc: subprocess.Popen[bytes]
    out: Path

    def wait(self, timeout: float) -> tuple[int, str]:
        """Its exit status and the end of its output, once it ended (killed past `timeout`)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, (self.out / "run.log").read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """Kill it if it still runs (an interrupted test run leaves no benchmark behind)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


KEY = pytest.StashKey[BenchRun]()


def start() -> BenchRun:
    """Start the quick benchmarks now."""
    out = Path(tempfile.mkdtemp(prefix="bm-bench-quick-"))
    with open(out / "run.log", "wb") as log:  # a file, not a pipe: nobody reads it until the end
        proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
                                stdout=log, stderr=subprocess.STDOUT)
    return BenchRun(proc, out)


def start_if_collected(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start them at collection when the run includes their test (not for a run of other tests)."""
    if any(item.nodeid.startswith(TEST_FILE) for item in items):
        config.stash[KEY] = start()
