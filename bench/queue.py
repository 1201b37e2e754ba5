"""The job path against raw Celery: `ping` jobs through the API against a no-op `delay().get()`.

    python -m bench.run --only queue [--quick]
    python -m bench.queue --round-trips [N]     (the Redis commands of N jobs, one at a time, by phase)

Both sides run in one run on one private Redis with the same number of worker processes: bigmodel's
cpu pool (PROCESSES prefork processes) and a plain Celery worker (`bench.inference_tasks`, same -c).
A bigmodel client submits `POST /v1/jobs` and waits with `GET /v1/jobs/{id}?wait=S` (the long poll,
as `Job.wait` does); a Celery client calls `noop.delay().get()`. At 16 clients the two take turns in
rounds, so that both see the same mix of quiet and busy moments of a shared machine; at 1 client the
p50 round trips are compared. Redis commands per job (INFO commandstats, commands run inside Lua
scripts included) are reported for both sides.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench.harness import Figure, Load, drive
from bench.support import private_stack, process_tree
from bigmodel.client import Client
from tests.services import Stack

PROCESSES = 2  # bigmodel cpu-pool processes, and the raw Celery worker's -c
ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 30  # each long poll; a ping job ends long before
ENV = {"BIGMODEL_RATE_SUBMIT": "1000000/minute"}
QUEUE = "bench_baseline"  # bench.inference_tasks.QUEUE (that module reads its Redis URL at import)


def celery_client(redis_url: str) -> Celery:
    """A publisher of the baseline's no-op task on this Redis (the worker runs bench.inference_tasks)."""
    app = Celery("bench_baseline", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    task_default_queue=QUEUE, result_expires=600)
    return app


@contextlib.contextmanager
def job_stack(cpu_workers: int = PROCESSES, api_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    """A private Redis, the API as `bigmodel up` runs it (gunicorn's defaults there, no access log) and
    a cpu pool of `cpu_workers` processes; everything stopped afterwards."""
    # The submission rate limit stays on (its counting is part of a submission's cost), raised
    # past what the benchmark submits in a minute.
    with private_stack(ENV) as stack:
        stack.spawn("api", "--port", str(stack.port), "--quiet", *api_args, log="api.log")
        stack.spawn("worker", "--pool", "cpu", "--concurrency", str(cpu_workers), "--loglevel", "WARNING",
                    log="worker.log")
        stack.wait_ready(("cpu",), timeout=180)
        yield stack


@contextlib.contextmanager
def environment(root: Path,
                api_args: tuple[str, ...] = ()) -> Iterator[tuple[Stack, subprocess.Popen[bytes]]]:
    """A private Redis with the API, the cpu pool and a raw Celery worker of the same size on it."""
    with job_stack(api_args=api_args) as stack:
        celery = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.inference_tasks", "worker", "-c", str(PROCESSES),
             "-P", "prefork", "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "WARNING"],
            cwd=ROOT, env=stack.env, stdout=open(root / "celery.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield stack, celery
        finally:
            celery.terminate()
            try:
                celery.wait(30)
            except subprocess.TimeoutExpired:
                celery.kill()
                celery.wait()


def bigmodel_caller(url: str) -> Callable[[int], Any]:
    """A call(i) for drive(): submit a ping job and long-poll it to its end, on the thread's own client."""
    local = threading.local()

    def call(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(url, token="", timeout=30)
        job = client.submit("ping", {})
        while not job.finished:
            job.refresh(wait=WAIT_SECONDS)
        if job.state != "succeeded":
            raise RuntimeError(f"job {job.id} {job.state}: {job.record.get('error')}")

    return call


def celery_caller(app: Celery) -> Callable[[int], Any]:
    """A call(i) for drive(): the raw Celery round trip of a no-op task."""
    def call(i: int) -> None:
        app.send_task("bench.noop", queue=QUEUE).get(timeout=60)

    return call


def commands(client: redis.Redis) -> int:
    """Commands Redis has run so far (INFO commandstats; those run by Lua scripts included)."""
    stats: Any = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def _cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, with their children that have ended (recycled pool processes)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


class Meters:
    """CPU seconds by part (each process group as it is now) and Redis commands, read between slices."""

    def __init__(self, client: redis.Redis, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.client, self.groups = client, groups

    def read(self) -> dict[str, float]:
        """Every part's CPU seconds so far, this process's own ('client'), and Redis's commands."""
        own = os.times()
        return {**{name: _cpu(pids()) for name, pids in self.groups.items()},
                "client": own.user + own.system, "commands": float(commands(self.client))}


def interleaved(sides: dict[str, Callable[[int], Any]], clients: int, total: int, rounds: int,
                meters: Meters) -> tuple[dict[str, Load], dict[str, dict[str, float]]]:
    """`total` calls of each side at `clients` clients, in `rounds` slices taken in turn; also what each
    side spent per call: CPU milliseconds by part and Redis commands."""
    parts: dict[str, list[Load]] = {name: [] for name in sides}
    spent: dict[str, dict[str, float]] = {name: {} for name in sides}
    per_round = max(clients, total // rounds)
    for _ in range(rounds):
        for name, call in sides.items():
            before = meters.read()
            parts[name].append(drive(call, clients, total=per_round))
            for key, value in meters.read().items():
                spent[name][key] = spent[name].get(key, 0.0) + value - before[key]
    loads = {name: Load([t for p in ps for t in p.latencies], sum(p.errors for p in ps),
                        sum(p.seconds for p in ps), [e for p in ps for e in p.error_samples][:5])
             for name, ps in parts.items()}
    per_call = {}
    for name, load in loads.items():
        calls = max(1, len(load.latencies) + load.errors)
        per_call[name] = {k: v / calls * (1 if k == "commands" else 1000) for k, v in spent[name].items()}
    return loads, per_call


def _errors(load: Load) -> str:
    return f"{load.errors} errors" + (f" ({load.error_samples[0]})" if load.error_samples else "")


def run(quick: bool) -> list[Figure]:
    """Throughput at 16 clients, p50 at 1 client, p99 at 16 clients, Redis commands per job."""
    total = 40 if quick else 2000
    single = 10 if quick else 200
    rounds = 1 if quick else 4
    with tempfile.TemporaryDirectory(prefix="bm-bench-queue-") as tmp, \
            environment(Path(tmp)) as (stack, celery):
        app = celery_client(stack.redis.url)
        sides = {"bigmodel": bigmodel_caller(stack.url), "celery": celery_caller(app)}
        api, pool = stack.procs[0].pid, stack.procs[1].pid
        server = stack.redis.proc.pid if stack.redis.proc else 0
        meters = Meters(stack.redis.client(), {
            "api": lambda: process_tree([api]), "pool": lambda: process_tree([pool]),
            "celery": lambda: process_tree([celery.pid]), "redis": lambda: [server]})
        for call in sides.values():  # workers up and warm, connections open
            drive(call, 16, total=32)
        c1, _ = interleaved(sides, 1, single, rounds, meters)
        c16, per_job = interleaved(sides, 16, total, rounds, meters)
        app.close()
    bm1, ce1, bm16, ce16 = c1["bigmodel"], c1["celery"], c16["bigmodel"], c16["celery"]
    own = {"bigmodel": ("api", "pool", "redis", "client"), "celery": ("celery", "redis", "client")}

    def cpu(side: str) -> float:
        return sum(per_job[side][k] for k in own[side])

    def parts(side: str) -> str:
        return ", ".join(f"{k} {per_job[side][k]:.2f}" for k in own[side])

    note = f"{PROCESSES} worker processes each side; "
    throughput = Figure("queue.target.c16_throughput", "jobs/s", bm16.rate, ce16.rate, 0.5,
                        note=note + f"{total} ping jobs by 16 clients (?wait= long poll) against "
                        f"noop.delay().get(); bigmodel {_errors(bm16)}, Celery {_errors(ce16)}")
    latency = Figure("queue.target.c1_p50", "ms", bm1.p50, ce1.p50, 2.0, goal="at_most",
                     note=note + f"{single} jobs one at a time; bigmodel {_errors(bm1)}")
    for figure, load in ((throughput, bm16), (latency, bm1)):
        if load.errors:
            figure.met = False  # a failed job is not a fast one
    return [
        Figure("queue.bigmodel_c16.rps", "jobs/s", bm16.rate, note=_errors(bm16)),
        Figure("queue.bigmodel_c16.p50", "ms", bm16.p50),
        Figure("queue.bigmodel_c16.p99", "ms", bm16.pct(99), ce16.pct(99),
               note="p99 at 16 clients; baseline: raw Celery's p99 at 16 clients"),
        Figure("queue.bigmodel_c1.p50", "ms", bm1.p50),
        Figure("queue.bigmodel_c1.p99", "ms", bm1.pct(99)),
        Figure("queue.celery_c16.rps", "jobs/s", ce16.rate, note=_errors(ce16)),
        Figure("queue.celery_c16.p50", "ms", ce16.p50),
        Figure("queue.celery_c16.p99", "ms", ce16.pct(99)),
        Figure("queue.celery_c1.p50", "ms", ce1.p50),
        Figure("queue.redis_commands_per_job", "commands", per_job["bigmodel"]["commands"],
               per_job["celery"]["commands"],
               note="Redis commands per job at 16 clients (INFO commandstats, inside Lua scripts "
               "included, idle polling of the period included); baseline: per Celery no-op"),
        Figure("queue.cpu_ms_per_job", "ms", cpu("bigmodel"), cpu("celery"),
               note=f"CPU per job at 16 clients, every process of each side: bigmodel {parts('bigmodel')}; "
               f"Celery {parts('celery')}"),
        throughput,
        latency,
    ]


# ---------------------------------------------------------------- round trips, for the profile


def round_trips(jobs: int = 5) -> str:
    """Run `jobs` ping jobs one at a time under Redis MONITOR; the commands of the last one, in order.

    Lines run by a Lua script are marked `lua`; the others are round trips from a process. Script
    SHAs are named after bigmodel.jobs.scripts. Housekeeping (heartbeats, the reaper) shows as well.
    """
    import hashlib

    from bigmodel.jobs import scripts

    names = {hashlib.sha1(getattr(scripts, n).encode()).hexdigest(): n  # noqa: S324 - Redis's script id
             for n in dir(scripts) if n.isupper() and isinstance(getattr(scripts, n), str)}
    from bigmodel.jobs.queues import POSITIONS

    names[hashlib.sha1(POSITIONS.encode()).hexdigest()] = "POSITIONS"  # noqa: S324
    with tempfile.TemporaryDirectory(prefix="bm-bench-rt-") as tmp, environment(Path(tmp)) as (stack, _):
        call = bigmodel_caller(stack.url)
        for i in range(3):
            call(i)  # warm: first-use script loads and connections are not a job's cost
        lines: list[str] = []
        monitor = subprocess.Popen(["redis-cli", "-p", str(stack.redis.port), "monitor"],
                                   stdout=subprocess.PIPE, text=True)
        reader = threading.Thread(target=lambda: lines.extend(monitor.stdout or []), daemon=True)
        reader.start()
        time.sleep(0.3)
        marks = []
        for i in range(jobs):
            marks.append(len(lines))
            call(i)
            time.sleep(0.2)
        marks.append(len(lines))
        monitor.terminate()
        monitor.wait(10)
        reader.join(5)
    out = []
    counts = []
    for a, b in zip(marks, marks[1:], strict=False):
        chunk = lines[a:b]
        counts.append((sum(" lua]" not in ln for ln in chunk), sum(" lua]" in ln for ln in chunk)))
    for line in lines[marks[-2]:marks[-1]]:
        for sha, name in names.items():
            line = line.replace(sha, name)
        out.append(line.rstrip()[:220])
    head = [f"per job (round trips from processes, commands inside scripts): {counts}"]
    return "\n".join(head + out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--round-trips":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(round_trips(int(sys.argv[2]) if len(sys.argv) > 2 else 5))
    else:
        print("run it through bench.run: python -m bench.run --only queue [--quick]")
