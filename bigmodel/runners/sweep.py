"""The sweep job: fan the trials out as train or pipeline jobs, then record them and register the best.

First run: one child job per trial (`ctx.fan_out`); the sweep then holds no worker process while its
trials run, so a sweep finishes on a one-process pool. Second run (`ctx.children` set): every trial is
recorded, the best succeeded one by the metric gets the alias `best-<sweep id>`. A failed trial is
recorded; only a sweep with no succeeded trial (with the metric) fails.
"""

from __future__ import annotations

from typing import Any

from bigmodel import sweeps
from bigmodel.errors import TrialsFailed
from bigmodel.jobs.context import JobContext
from bigmodel.runners.common import registry


def children_of(job: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each trial's child job: the base job with the trial's overrides, the sweep's priority and resources."""
    base = params["base"]
    extra = {k: job[k] for k in ("priority", "resources") if job.get(k) is not None}
    return [{"type": base["type"], "params": sweeps.apply(base["params"], overrides), **extra}
            for overrides in sweeps.trials_of(params)]


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point: fan out on the first run; record, rank and register on the second."""
    if ctx.children is None:
        ctx.fan_out(children_of(ctx.job, ctx.params))  # raises: this process is released here
    out = sweeps.summary(ctx.params, ctx.children)
    best = out["best"]
    if best is None:
        raise TrialsFailed(_why_none(out))
    alias = f"best-{ctx.job_id}"
    ctx.ensure_current()  # fencing: a superseded attempt moves no alias
    reg = registry(ctx)
    if reg.aliases(best["model"]).get(alias) != best["version"]:  # a re-run moves it once
        reg.move_alias(best["model"], alias, best["version"], by=f"sweep {ctx.job_id}")
    best["alias"] = alias
    ctx.progress("trials", len(out["trials"]), len(out["trials"]),
                 metrics={"done": len(out["trials"]), "failed": out["failed"], "total": len(out["trials"])})
    return out


def _why_none(out: dict[str, Any]) -> str:
    """Why a sweep has no best trial: its trials failed (the first one's error), or none has the metric."""
    total, errors = len(out["trials"]), [t["error"] for t in out["trials"] if t["error"]]
    if out["failed"] == total:
        first = f"; the first: {errors[0]['type']}: {errors[0]['message']}" if errors else ""
        return f"{total} of {total} trials failed{first}"
    reported = sorted({k for t in out["trials"] if t["state"] == "succeeded" for k in t["metrics"]})
    return (f"no succeeded trial reports the metric {out['metric']!r} ({out['failed']} of {total} failed); "
            f"they report: {', '.join(reported)}")
