"""Sweeps without the queue: a grid or a seeded random space into trials, and the best trial by a metric.

A trial is a set of overrides, `{dotted.param.path: value}`, applied to the base job's params. Pure
Python (no pydantic, no Redis), so that validation, the runner and a notebook expand a sweep alike.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

DISTRIBUTIONS = ("values", "uniform", "log_uniform", "int")
LOSS_LIKE = ("loss", "mse", "mae", "rmse", "error")  # metric names where smaller is better


def apply(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The params with each dotted path set to its value (a copy; missing folders are created)."""
    out = copy.deepcopy(dict(params))
    for path, value in overrides.items():
        *folders, leaf = path.split(".")
        node = out
        for name in folders:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node[leaf] = copy.deepcopy(value)
    return out


def grid_size(grid: Mapping[str, list[Any]]) -> int:
    """How many trials a grid makes: the product of its value lists' lengths."""
    return math.prod(len(values) for values in grid.values())


def expand_grid(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid, the last key varying fastest (the order trials are numbered in)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_distribution(spec: Mapping[str, Any]) -> None:
    """Raise ValueError unless spec is {"values": [...]} or {"uniform" | "log_uniform" | "int": [lo, hi]}."""
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)}")
    kind, arg = next(iter(spec.items()))
    if kind == "values":
        if not isinstance(arg, list) or not arg:
            raise ValueError("values must be a non-empty list")
        return
    if not isinstance(arg, list) or len(arg) != 2 or not all(_finite(v) for v in arg):
        raise ValueError(f"{kind} takes [low, high], two finite numbers")
    lo, hi = arg
    if lo > hi:
        raise ValueError(f"{kind}: low {lo} is above high {hi}")
    if kind == "log_uniform" and lo <= 0:
        raise ValueError("log_uniform needs low > 0")
    if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise ValueError("int takes two whole numbers")


def extremes(spec: Mapping[str, Any]) -> list[Any]:
    """The values a distribution can reach that validation must accept: every listed value, or both ends."""
    kind, arg = next(iter(spec.items()))
    if kind == "values":
        return list(arg)
    if kind == "int":
        return [int(arg[0]), int(arg[1])]
    return [float(arg[0]), float(arg[1])]


def _draw(rng: random.Random, spec: Mapping[str, Any]) -> Any:
    kind, arg = next(iter(spec.items()))
    if kind == "values":
        return copy.deepcopy(arg[rng.randrange(len(arg))])
    if kind == "int":
        return rng.randint(int(arg[0]), int(arg[1]))
    if kind == "log_uniform":
        return math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1])))
    return rng.uniform(float(arg[0]), float(arg[1]))


def sample(space: Mapping[str, Mapping[str, Any]], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` draws from the space, the same for the same seed (keys drawn in the order given)."""
    # A reproducible sample of hyperparameters, not a secret: random.Random is the right tool.
    rng = random.Random(seed)  # nosec B311
    return [{key: _draw(rng, spec) for key, spec in space.items()} for _ in range(trials)]


def trials_of(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The overrides of every trial of (validated) sweep params, in trial order."""
    if params.get("grid") is not None:
        return expand_grid(params["grid"])
    search = params["random"]
    return sample(search["space"], search["trials"], search.get("seed", 0))


def trial_count(params: Mapping[str, Any]) -> int:
    """How many trials sweep params ask for, without expanding them."""
    if params.get("grid") is not None:
        return grid_size(params["grid"])
    return int((params.get("random") or {}).get("trials", 0))


def default_mode(metric: str) -> str:
    """'min' for a loss-like metric (loss, val_loss, mse, mae...), else 'max'."""
    return "min" if any(part in metric for part in LOSS_LIKE) else "max"


def default_metric(trials: Iterable[Mapping[str, Any]]) -> str:
    """val_loss if a succeeded trial reports it, else loss."""
    reported = {k for t in trials if t.get("state") == "succeeded" for k in (t.get("metrics") or {})}
    return "val_loss" if "val_loss" in reported else "loss"


def best(trials: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The succeeded trial with the best finite value of the metric (the first one on ties), or None."""
    scored: list[tuple[float, dict[str, Any]]] = []
    for trial in trials:
        v = (trial.get("metrics") or {}).get(metric)
        if trial.get("state") == "succeeded" and _finite(v):
            scored.append((float(v), trial))  # type: ignore[arg-type]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda pair: pair[0])[1]  # min/max keep the first of equal values


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if _finite(v)}


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
    trials = [trial(i, o, c) for i, (o, c) in enumerate(zip(trials_of(params), children, strict=True))]
    metric = params.get("metric") or default_metric(trials)
    mode = params.get("mode") or default_mode(metric)
    pick = best(trials, metric, mode)
    succeeded = sum(t["state"] == "succeeded" for t in trials)
    return {"trials": trials, "metric": metric, "mode": mode, "succeeded": succeeded,
            "failed": len(trials) - succeeded,
            "best": pick and {k: pick[k] for k in ("index", "job", "overrides", "model", "version")}
            | {"value": pick["metrics"][metric], "metrics": pick["metrics"]}}
