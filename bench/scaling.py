"""scaling: a sweep of 8 small trainings on a pool of 2 worker processes against the same on 1.

Each pool is `bigmodel worker --pool cpu --concurrency N` on its own private stack, so each process gets
cores / N math threads (bigmodel.threads), the rule both runs share: 1 process x 2 threads against
2 processes x 1 thread on a 2-core machine. The sweep holds no process while its trials run, so the
trials are the only work. Time: the sweep's record, created -> finished (fan-out, every trial, ranking
and registering the best). Each pool first runs a warm-up sweep of one trial per process, so that no
timed trial pays TensorFlow's import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bench.harness import Figure
from bench.support import run_job, running_stack, upload
from bench.training import generate
from bigmodel.threads import cores

TARGET = 1.6  # the issue's: 2 processes at least 1.6x as fast as 1 on 2 cores


def span(record: dict[str, Any]) -> float:
    """A job's created -> finished time in seconds."""
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(record["finished_at"]) - parse(record["created_at"])).total_seconds()


def sweep_seconds(processes: int, rows: int, features: int, trials: int, epochs: int, warm: bool) -> float:
    """The time of one sweep of `trials` trainings on a private stack with `processes` worker processes."""
    with running_stack(cpu_workers=processes) as stack:
        raw = upload(stack.url, generate(rows, features))[1]["id"]
        processed = run_job(stack.url, {"type": "preprocess", "params": {"dataset": raw, "label": "label"}})
        base = {"dataset": processed["result"]["dataset"], "model": {"name": "scaling", "hidden": [32, 16]},
                "epochs": epochs, "batch_size": 32}

        def sweep(n: int, n_epochs: int) -> dict[str, Any]:
            record = run_job(stack.url, {"type": "sweep", "params": {
                "train": {**base, "epochs": n_epochs}, "grid": {"seed": list(range(n))}}}, timeout=1800)
            assert record["result"]["succeeded"] == n, record["result"]
            return record

        if warm:
            sweep(processes, 1)
        return span(sweep(trials, epochs))


def run(quick: bool) -> list[Figure]:
    """The same sweep on 1 and on 2 processes; the speed-up is the figure."""
    # Quick: two trials of one epoch per pool, no warm-up (the two stacks' start-up is most of it).
    rows, features, trials, epochs = (200, 4, 2, 1) if quick else (4_000, 10, 8, 8)
    one = sweep_seconds(1, rows, features, trials, epochs, warm=not quick)
    two = sweep_seconds(2, rows, features, trials, epochs, warm=not quick)
    speedup = one / two
    print(f"   sweep of {trials} trainings: 1 process {one:.1f} s, 2 processes {two:.1f} s: "
          f"speed-up {speedup:.2f}x on {cores()} cores", flush=True)
    note = (f"{trials} trials of {rows:,} x {features} rows, Dense 32-16, {epochs} epochs, batch 32; "
            f"1 process x {cores()} threads {one:.1f} s, 2 processes x {max(1, cores() // 2)} threads "
            f"{two:.1f} s; created -> finished of the sweep")
    # Throughput (trials per second), so that "at least" reads as "faster".
    return [Figure("scaling.sweep_2_vs_1_process", "trials/s", trials / two, baseline=trials / one,
                   target=None if quick else TARGET, note=note)]
