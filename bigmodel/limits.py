"""Bounds on every costly request parameter and the per-tenant request rates, read once from BIGMODEL_*.

One table (`BOUNDS`) names each bound, its setting and what it limits, so that the settings, the 422
answers, the docs and the tests all come from the same place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bigmodel.errors import ConfigError, ValidationFailed

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Bound:
    """One bounded parameter: the Limits field, the setting that changes it, and what it counts."""

    field: str
    setting: str
    what: str


BOUNDS: Mapping[str, Bound] = {b.field: b for b in (
    Bound("epochs", "BIGMODEL_MAX_EPOCHS", "epochs of a train job"),
    Bound("hidden_units", "BIGMODEL_MAX_HIDDEN_UNITS", "units in one hidden layer"),
    Bound("hidden_layers", "BIGMODEL_MAX_HIDDEN_LAYERS", "hidden layers of a model"),
    Bound("batch_size", "BIGMODEL_MAX_BATCH_SIZE", "rows in one training batch"),
    Bound("ping_sleep", "BIGMODEL_MAX_PING_SLEEP", "seconds a ping job sleeps"),
    Bound("inline_rows", "BIGMODEL_MAX_INLINE_ROWS",
          "rows sent in a request: a predict job's instances, an online inference request"),
    Bound("sweep_trials", "BIGMODEL_MAX_SWEEP_TRIALS", "combinations in a sweep's grid"),
    Bound("body_bytes", "BIGMODEL_MAX_BODY_BYTES", "bytes in a request body other than a dataset upload"),
    Bound("json_bytes", "BIGMODEL_MAX_JSON_BYTES",
          "bytes in a JSON body of the job and model routes (a job's params are kept in Redis)"),
)}  # fmt: skip
RATES: Mapping[str, str] = {"submit_rate": "BIGMODEL_RATE_SUBMIT", "infer_rate": "BIGMODEL_RATE_INFER"}
# Per-tenant caps on jobs, counted in Redis (so every API process and worker shares them).
QUOTAS: Mapping[str, Bound] = {b.field: b for b in (
    Bound("tenant_queued", "BIGMODEL_TENANT_MAX_QUEUED",
          "queued jobs of one tenant (a submission past it answers 429)"),
    Bound("tenant_running", "BIGMODEL_TENANT_MAX_RUNNING",
          "jobs of one tenant running or on a queue at once (the rest wait in the tenant's line)"),
    Bound("tenant_gpu_jobs", "BIGMODEL_TENANT_MAX_GPU_JOBS",
          "GPU jobs of one tenant running or on a queue at once"),
)}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how often a tenant may ask: generous enough for one user.

    Rates use flask-limiter's notation ("3000/minute", "10 per hour"); None turns a rate off.
    """

    epochs: int = 1000
    hidden_units: int = 4096
    hidden_layers: int = 16
    batch_size: int = 65_536
    ping_sleep: float = 600.0
    inline_rows: int = 10_000
    sweep_trials: int = 256
    body_bytes: int = 64 * 1024 * 1024
    json_bytes: int = 8 * 1024 * 1024  # room for a predict job's inline_rows of a few dozen features
    tenant_queued: int = 10_000
    tenant_running: int = 1_000
    tenant_gpu_jobs: int = 1_000
    submit_rate: str | None = "3000/minute"  # POST /v1/jobs and POST /v1/datasets, per tenant
    infer_rate: str | None = "120000/minute"  # /v2/.../infer and :predict, per tenant

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Read every BIGMODEL_MAX_* and BIGMODEL_RATE_* setting; defaults for the rest."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(setting_of(f.name), "").strip()
            if raw:
                values[f.name] = _rate(RATES[f.name], raw) if f.name in RATES else _bound(f.name, raw)
        return cls(**values)


def setting_of(name: str) -> str:
    """The BIGMODEL_* setting of a Limits field."""
    bound = BOUNDS.get(name) or QUOTAS.get(name)
    return bound.setting if bound else RATES[name]


def _bound(name: str, raw: str) -> int | float:
    setting = setting_of(name)
    kind = float if isinstance(getattr(Limits, name), float) else int
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{setting} must be a {'number' if kind is float else 'whole number'}, "
                          f"got {raw!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{setting} must be more than 0, got {raw!r}")
    return value


def _rate(setting: str, raw: str) -> str | None:
    if raw.lower() in ("off", "none", "0"):
        return None
    from limits import parse_many  # flask-limiter's own notation, checked by its own parser

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{setting} must look like '600/minute' or '10 per hour' (or 'off'), "
                          f"got {raw!r}") from None
    return raw


def over(limits: Limits, name: str, value: float, loc: Loc) -> dict[str, Any]:
    """The `errors` entry of a value past a bound: where, the bound, and the setting that raises it."""
    bound, limit = BOUNDS[name], getattr(limits, name)
    return {"loc": ["body", "params", *loc], "limit": name, "max": limit, "setting": bound.setting,
            "msg": f"{value:g} is over the limit of {limit:g} {bound.what} (the server's {bound.setting})"}


def _train(limits: Limits, params: Mapping[str, Any], loc: Loc = ()) -> Iterator[dict[str, Any]]:
    """Epochs, batch size and the hidden layers of train params (a train job, a pipeline's, a sweep's)."""
    if params.get("epochs", 0) > limits.epochs:
        yield over(limits, "epochs", params["epochs"], (*loc, "epochs"))
    if params.get("batch_size", 0) > limits.batch_size:
        yield over(limits, "batch_size", params["batch_size"], (*loc, "batch_size"))
    hidden = (params.get("model") or {}).get("hidden") or []
    if len(hidden) > limits.hidden_layers:
        yield over(limits, "hidden_layers", len(hidden), (*loc, "model", "hidden"))
    for i, units in enumerate(hidden):
        if units > limits.hidden_units:
            yield over(limits, "hidden_units", units, (*loc, "model", "hidden", i))


def _ping(limits: Limits, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    if params.get("sleep", 0) > limits.ping_sleep:
        yield over(limits, "ping_sleep", params["sleep"], ("sleep",))


def _predict(limits: Limits, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    rows = params.get("instances")
    if rows is not None and len(rows) > limits.inline_rows:
        yield over(limits, "inline_rows", len(rows), ("instances",))


def _pipeline(limits: Limits, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _train(limits, params.get("train") or {}, ("train",))


def sweep_trials(grid: Mapping[str, Any]) -> int:
    """How many trainings a sweep's grid asks for: the product of its value lists' lengths."""
    return math.prod(len(values) if isinstance(values, list) else 1 for values in grid.values())


def _sweep(limits: Limits, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The grid's size, the base train params, and every value the grid puts into them.

    The sweep job type is not built yet: this is its check, ready for the params API.md gives it
    ({"train": {...}, "grid": {"learning_rate": [...], "hidden": [[...], ...]}, ...}).
    """
    grid = params.get("grid") or {}
    trials = sweep_trials(grid)
    if trials > limits.sweep_trials:
        yield over(limits, "sweep_trials", trials, ("grid",))
    base = params.get("train") or {}
    yield from _train(limits, base, ("train",))
    for key, values in grid.items():
        for i, value in enumerate(values if isinstance(values, list) else []):
            trial = {**base, "model": {**(base.get("model") or {}), "hidden": value}} if key == "hidden" \
                else {**base, key: value}
            for problem in _train(limits, trial):
                yield {**problem, "loc": ["body", "params", "grid", key, i]}


CHECKS: Mapping[str, Callable[[Limits, Mapping[str, Any]], Iterator[dict[str, Any]]]] = {
    "train": _train, "pipeline": _pipeline, "ping": _ping, "predict": _predict, "sweep": _sweep,
}


def check_params(job_type: str, params: Mapping[str, Any], limits: Limits) -> None:
    """Raise a 422 naming every bound the (schema-checked) params go past, and the setting for each."""
    check = CHECKS.get(job_type)
    problems = list(check(limits, params)) if check else []
    if problems:
        named = ", ".join(f"{p['limit']} <= {p['max']:g} ({p['setting']})" for p in problems)
        raise ValidationFailed(f"the {job_type} job asks for more than this server allows: {named}",
                               errors=problems)
