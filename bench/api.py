"""The API's read path under load: `GET /v1/jobs/{id}` and `GET /v1/jobs` at 64 connections.

    python -m bench.run --only api [--quick]

A private stack (the API as `bigmodel up` runs it: gunicorn gthread, 2 processes) holds finished
`ping` jobs; 64 threads, each on its own keep-alive connection, read a job's record (cycling through
the jobs) or the first page of the listing (50 jobs) in a closed loop for a fixed time. Figures:
requests/s, p50/p99, and errors, whose target is zero (any non-200 answer or failed call counts).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

from bench.harness import Figure, Load, drive, keep_alive_caller
from bench.queue import bigmodel_caller, job_stack

CONNECTIONS = 64
JOBS = 60  # finished jobs in the store: more than a listing page


def getter(url: str, paths: list[str]) -> Callable[[int], None]:
    """A call(i) for drive(): GET paths[i % n] on the calling thread's own keep-alive connection."""
    return keep_alive_caller(url, [("GET", path, None, {}) for path in paths])


def _figures(name: str, load: Load, note: str) -> list[Figure]:
    errors = Figure(f"api.{name}.errors", "errors", float(load.errors),
                    note=f"{len(load.latencies)} answered; "
                    + (load.error_samples[0] if load.error_samples else "target: zero errors"))
    errors.met = load.errors == 0
    return [Figure(f"api.{name}.rps", "requests/s", load.rate, note=note),
            Figure(f"api.{name}.p50", "ms", load.p50),
            Figure(f"api.{name}.p99", "ms", load.pct(99)),
            errors]


def run(quick: bool) -> list[Figure]:
    """Requests/s, p50/p99 and errors of the two reads at 64 connections."""
    seconds = 2.0 if quick else 15.0
    jobs = 12 if quick else JOBS
    with job_stack(cpu_workers=1) as stack:
        drive(bigmodel_caller(stack.url), 8, total=jobs)
        conn = http.client.HTTPConnection(stack.url.removeprefix("http://").split(":")[0],
                                          stack.port, timeout=30)
        conn.request("GET", "/v1/jobs?limit=500")
        ids: list[Any] = [j["id"] for j in json.loads(conn.getresponse().read())["items"]]
        conn.close()
        if len(ids) < jobs:
            raise RuntimeError(f"the listing has {len(ids)} jobs; {jobs} were run")
        reads = {"get_job_c64": getter(stack.url, [f"/v1/jobs/{i}" for i in ids]),
                 "list_jobs_c64": getter(stack.url, ["/v1/jobs"])}
        loads = {}
        for name, call in reads.items():
            drive(call, CONNECTIONS, total=CONNECTIONS * 2)  # connections open, caches warm
            loads[name] = drive(call, CONNECTIONS, seconds=seconds)
    return (_figures("get_job_c64", loads["get_job_c64"], f"GET /v1/jobs/{{id}} over {jobs} finished jobs, "
                     f"{CONNECTIONS} keep-alive connections, {seconds:g} s")
            + _figures("list_jobs_c64", loads["list_jobs_c64"], f"GET /v1/jobs (first page of 50 of {jobs}), "
                       f"{CONNECTIONS} keep-alive connections, {seconds:g} s"))
