"""What every benchmark shares: figures with targets, a concurrent load driver, results files."""

from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass
class Figure:
    """One measured figure: value against a baseline from the same run, and the target on their ratio.

    goal "at_least": met when ratio >= target (throughput); "at_most": met when ratio <= target (latency).
    A figure without a baseline or a target is reported, not judged (met is None).
    """

    name: str
    unit: str
    value: float
    baseline: float | None = None
    target: float | None = None
    goal: str = "at_least"
    note: str = ""
    ratio: float | None = field(init=False, default=None)
    met: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = round(self.value / self.baseline, 4)
        if self.ratio is not None and self.target is not None:
            self.met = self.ratio >= self.target if self.goal == "at_least" else self.ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        """The figure as latest.json holds it."""
        out = asdict(self)
        out["value"] = round(self.value, 4)
        out["baseline"] = None if self.baseline is None else round(self.baseline, 4)
        return out


@dataclass
class Load:
    """The outcome of a load run: latencies of successful calls, errors, wall time."""

    latencies: list[float]
    errors: int
    seconds: float
    error_samples: list[str]

    @property
    def rate(self) -> float:
        """Successful calls per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """A latency percentile in milliseconds (q in 0..100)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[k] * 1000

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


def drive(call: Callable[[int], Any], clients: int, *, total: int | None = None,
          seconds: float | None = None, warmup: int = 0) -> Load:
    """Run `call(i)` from `clients` threads until `total` calls are made or `seconds` pass.

    Each thread calls in a closed loop (the next call starts when the previous answered), as a
    user's client would. An exception counts as an error and the loop goes on.
    """
    for i in range(warmup):
        call(i)
    lock = threading.Lock()
    latencies: list[float] = []
    samples: list[str] = []
    errors = 0
    counter = iter(range(10**12))
    deadline = None if seconds is None else time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        while True:
            with lock:
                i = next(counter)
            if total is not None and i >= total:
                return
            if deadline is not None and time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # a failed call is a figure, not a crash of the benchmark
                with lock:
                    errors += 1
                    if len(samples) < 5:
                        samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Load(latencies, errors, time.perf_counter() - start, samples)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def write(figures: list[Figure], out: Path, notes: dict[str, str] | None = None) -> None:
    """Write latest.json (the list of figures) and latest.md (the same as a table) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps([f.as_json() for f in figures], indent=2) + "\n")
    m = machine()
    lines = [f"# bigmodel benchmarks\n\n{m['cores']} cores, Python {m['python']} on {m['machine']}, "
             f"{m['date']}. Ratios are value / baseline from the same run.\n",
             "| figure | unit | baseline | value | ratio | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        target = "" if f.target is None else ("≥ " if f.goal == "at_least" else "≤ ") + f"{f.target:g}"
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        lines.append(f"| {f.name} | {f.unit} | {_num(f.baseline)} | {_num(f.value)} | {_num(f.ratio)} | "
                     f"{target} | {met} |")
    for name, text in (notes or {}).items():
        lines.append(f"\n**{name}**: {text}")
    (out / "latest.md").write_text("\n".join(lines) + "\n")


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


Request = tuple[str, str, bytes | None, dict[str, str]]  # method, path, body, headers


def keep_alive_caller(url: str, requests: list[Request]) -> Callable[[int], None]:
    """A call(i) for drive(): requests[i % n] on the calling thread's own keep-alive connection;
    anything but a 200 raises (drive counts it as an error)."""
    host, port = url.removeprefix("http://").split(":")
    local = threading.local()

    def call(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        method, path, body, headers = requests[i % len(requests)]
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            local.conn = None
            raise
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")

    return call
