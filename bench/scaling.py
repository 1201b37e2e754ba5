"""scaling: a sweep of 8 small trainings on a pool of 2 worker processes against the same on 1.

Each pool is `bigmodel worker --pool cpu --concurrency N` on its own private stack, so each process gets
cores / N math threads (bigmodel.threads), the rule both runs share: 1 process x 2 threads against
2 processes x 1 thread on a 2-core machine. The sweep holds no process while its trials run, so the
trials are the only work. Time: the sweep's record, created -> finished (fan-out, every trial, ranking
and registering the best). Both stacks run side by side (an idle pool costs nothing), each warmed by a
sweep of one trial per process (no timed trial pays TensorFlow's import), then the timed sweeps
alternate, 1 then 2 processes, and the faster of each counts: on a shared machine a run can only be
slowed by others, not sped up.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import Any

import requests

from bench.harness import Figure
from bench.support import run_job, running_stack, upload
from bench.training import generate
from bigmodel.threads import cores

TARGET = 1.6  # the issue's: 2 processes at least 1.6x as fast as 1 on 2 cores
ROUNDS = 2


def span(record: dict[str, Any]) -> float:
    """A job's created -> finished time in seconds."""
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(record["finished_at"]) - parse(record["created_at"])).total_seconds()


class Pool:
    """A private stack with `processes` worker processes and the processed dataset the trials train on."""

    def __init__(self, url: str, processes: int, rows: int, features: int) -> None:
        self.url, self.processes = url, processes
        raw = upload(url, generate(rows, features))[1]["id"]
        processed = run_job(url, {"type": "preprocess", "params": {"dataset": raw, "label": "label"}})
        self.dataset = processed["result"]["dataset"]

    def sweep(self, trials: int, epochs: int) -> dict[str, Any]:
        """Run a sweep of `trials` trainings (one per seed) to the end; returns its record."""
        base = {"dataset": self.dataset, "model": {"name": "scaling", "hidden": [32, 16]}, "epochs": epochs,
                "batch_size": 32}
        params = {"train": base, "grid": {"seed": list(range(trials))}}
        record = run_job(self.url, {"type": "sweep", "params": params}, timeout=1800)
        assert record["result"]["succeeded"] == trials, record["result"]
        return record

    def trial_usage(self, record: dict[str, Any]) -> str:
        """CPU seconds of a trial and the cores it kept busy (CPU per wall second), from the trials' usage."""
        usage = [requests.get(f"{self.url}/v1/jobs/{child}", timeout=30).json()["usage"]
                 for child in record["children"]]
        cpu, wall = sum(u["cpu_seconds"] for u in usage), sum(u["wall_seconds"] for u in usage)
        return f"{cpu / len(usage):.1f} CPU s a trial, {cpu / max(1e-9, wall):.2f} cores busy"


def run(quick: bool) -> list[Figure]:
    """The same sweep on 1 and on 2 processes, alternately; the speed-up is the figure."""
    # Quick: two trials of one epoch per pool, once, no warm-up (the stacks' start-up is most of it).
    rows, features, trials, epochs = (200, 4, 2, 1) if quick else (4_000, 10, 8, 8)
    rounds = 1 if quick else ROUNDS
    seconds: dict[int, list[float]] = {1: [], 2: []}
    busy: dict[int, list[str]] = {1: [], 2: []}
    loads: list[float] = []
    with contextlib.ExitStack() as stacks:
        pools = {n: Pool(stacks.enter_context(running_stack(cpu_workers=n)).url, n, rows, features)
                 for n in (1, 2)}
        if not quick:
            for n, pool in pools.items():
                pool.sweep(n, 1)
        for _ in range(rounds):
            for n, pool in pools.items():
                loads.append(os.getloadavg()[0])
                record = pool.sweep(trials, epochs)
                seconds[n].append(span(record))
                busy[n].append(pool.trial_usage(record))
    one, two = min(seconds[1]), min(seconds[2])
    print(f"   sweep of {trials} trainings: 1 process {one:.1f} s, 2 processes {two:.1f} s: "
          f"speed-up {one / two:.2f}x on {cores()} cores", flush=True)

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    note = (f"{trials} trials of {rows:,} x {features} rows, Dense 32-16, {epochs} epochs, batch 32; "
            f"sweep created -> finished, best of {rounds}: "
            f"1 process x {cores()} threads {listed(seconds[1])} s ({'; '.join(busy[1])}), "
            f"2 processes x {max(1, cores() // 2)} thread(s) {listed(seconds[2])} s ({'; '.join(busy[2])}); "
            f"load average before each run {listed(loads)}")
    # Throughput (trials per second), so that "at least" reads as "faster".
    return [Figure("scaling.sweep_2_vs_1_process", "trials/s", trials / two, baseline=trials / one,
                   target=None if quick else TARGET, note=note)]
