"""The sweep job: fan the trials out as train or pipeline jobs, then record them and register the best.

First run: one child job per trial (`ctx.fan_out`); the sweep then holds no worker process while its
trials run, so a sweep finishes on a one-process pool. Second run (`ctx.children` set): every trial is
recorded, the best succeeded one by the metric gets the alias `best-<sweep id>`. A failed trial is
recorded; only a sweep with no succeeded trial (with the metric) fails.
"""

from __future__ import annotations

import math
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


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def trial(index: int, overrides: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """What the sweep records of one trial: its overrides, its job, how it ended, its metrics and version.

    Metrics: the last epoch of the training history (loss, val_loss, ...) overlaid with the trained
    model's metrics on the validation split (a pipeline's train stage: its test split is not looked at).
    """
    result = child.get("result") or {}
    trained = result.get("train", result) if child.get("type") == "pipeline" else result
    history = {k: v[-1] for k, v in (trained.get("history") or {}).items() if isinstance(v, list) and v}
    return {"index": index, "overrides": overrides, "job": child.get("id"), "state": child.get("state"),
            "metrics": _scalars({**history, **(trained.get("metrics") or {})}),
            "model": trained.get("model"), "version": trained.get("version"), "error": child.get("error")}


def summary(params: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's result from its children's final records (the best is None when no trial qualifies)."""
    trials = [trial(i, o, c) for i, (o, c) in enumerate(zip(sweeps.trials_of(params), children, strict=True))]
    metric = params.get("metric") or sweeps.default_metric(trials)
    mode = params.get("mode") or sweeps.default_mode(metric)
    best = sweeps.best(trials, metric, mode)
    succeeded = sum(t["state"] == "succeeded" for t in trials)
    return {"trials": trials, "metric": metric, "mode": mode, "succeeded": succeeded,
            "failed": len(trials) - succeeded,
            "best": best and {k: best[k] for k in ("index", "job", "overrides", "model", "version")}
            | {"value": best["metrics"][metric], "metrics": best["metrics"]}}


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point: fan out on the first run; record, rank and register on the second."""
    if ctx.children is None:
        ctx.fan_out(children_of(ctx.job, ctx.params))  # raises: this process is released here
    out = summary(ctx.params, ctx.children)
    best = out["best"]
    if best is None:
        raise TrialsFailed(f"no trial of {len(out['trials'])} succeeded with metric {out['metric']!r}: "
                           f"{out['failed']} failed")
    alias = f"best-{ctx.job_id}"
    ctx.ensure_current()  # fencing: a superseded attempt moves no alias
    reg = registry(ctx)
    if reg.aliases(best["model"]).get(alias) != best["version"]:  # a re-run moves it once
        reg.move_alias(best["model"], alias, best["version"], by=f"sweep {ctx.job_id}")
    best["alias"] = alias
    ctx.progress("trials", len(out["trials"]), len(out["trials"]),
                 metrics={"done": len(out["trials"]), "failed": out["failed"], "total": len(out["trials"])})
    return out
