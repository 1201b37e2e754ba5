"""The one table of job types: type -> params schema -> runner -> default queue."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from bigmodel import schemas
from bigmodel.config import Settings
from bigmodel.errors import ValidationFailed
from bigmodel.jobs.waiting import no_gpu_worker

Runner = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class JobType:
    """A kind of job: how its params are checked, which function runs it, where it goes by default."""

    name: str
    params: type[BaseModel]
    runner: str  # "module:function", imported only inside workers (keeps TF out of the API)
    queue: str = "cpu"
    summary: str = ""
    soft_limit: int | None = None  # seconds; None: the settings' task_soft_time_limit (the longest)

    def load_runner(self) -> Runner:
        """Import the function that runs this job type."""
        module, _, func = self.runner.partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


JOB_TYPES: Mapping[str, JobType] = {
    t.name: t
    for t in (
        JobType("ping", schemas.PingParams, "bigmodel.runners.ping:run",
                summary="diagnostic: returns its params", soft_limit=3600 + 300),
        JobType("preprocess", schemas.PreprocessParams, "bigmodel.runners.preprocess:run",
                summary="clean, encode, normalise and split a dataset", soft_limit=2 * 3600),
        JobType("train", schemas.TrainParams, "bigmodel.runners.train:run",
                summary="train a Keras model and register a version"),
        JobType("evaluate", schemas.EvaluateParams, "bigmodel.runners.evaluate:run",
                summary="metrics of a model version on a split", soft_limit=2 * 3600),
        JobType("predict", schemas.PredictParams, "bigmodel.runners.predict:run",
                summary="predictions for a dataset or inline rows", soft_limit=2 * 3600),
        JobType("pipeline", schemas.PipelineParams, "bigmodel.runners.pipeline:run",
                summary="preprocess, train and evaluate in one job"),
        JobType("sweep", schemas.SweepParams, "bigmodel.runners.sweep:run",
                summary="train a grid or a random sample of params across the pool; register the best"),
    )
}  # fmt: skip


def limits(type_name: str, settings: Settings) -> dict[str, int]:
    """A job type's time limits in seconds: soft < hard < the broker's visibility timeout.

    The soft limit raises inside the job (it fails with `time_limit`); the hard limit stops its
    process (the reaper then fails it with `time_limit`). No type exceeds the settings' limits, and
    the visibility timeout is an hour past the longest hard limit.
    """
    cap = settings.task_soft_time_limit
    soft = min(JOB_TYPES[type_name].soft_limit or cap, cap)
    return {"soft": soft, "hard": soft + settings.task_time_limit - cap}


def errors_of(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as problem+json `errors` entries."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in exc.errors()]


def validate_params(type_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check params against the job type's schema; returns them with defaults filled in."""
    job_type = JOB_TYPES.get(type_name)
    if job_type is None:
        raise ValidationFailed(
            f"unknown job type {type_name!r}; known: {', '.join(sorted(JOB_TYPES))}",
            errors=[{"loc": ["body", "type"], "msg": "unknown job type"}],
        )
    try:
        model = job_type.params.model_validate(params)
    except ValidationError as exc:
        raise ValidationFailed(
            f"invalid params for a {type_name} job", errors=errors_of(exc, ("body", "params"))
        ) from None
    return model.model_dump(mode="json")


@dataclass(frozen=True)
class Route:
    """Where a job goes, and why it may wait (the `waiting` shape of bigmodel.jobs.waiting)."""

    queue: str
    waiting: dict[str, Any] | None = None


def gpu_queue(gpus: int) -> str:
    """The queue of jobs that need `gpus` GPUs in one process: `gpu`, then `gpu2`, `gpu4`...

    A GPU worker process with N devices consumes exactly the queue for N, so a job gets the devices it
    asked for (its batch split and strategy are what the user planned) and never waits behind a smaller
    job on a process too small for it.
    """
    return "gpu" if gpus <= 1 else f"gpu{gpus}"


def route(type_name: str, gpus: int, *, gpu_fallback: str | None, gpu_workers_online: bool) -> Route:
    """Pick the queue from the table and the resources asked; a GPU job waits when no GPU worker is up.

    `gpu_workers_online` says whether a worker consumes `gpu_queue(gpus)`.
    """
    if gpus > 0:
        queue = gpu_queue(gpus)
        if gpu_fallback == "cpu" and not gpu_workers_online:
            return Route("cpu")
        if not gpu_workers_online:
            return Route(queue, waiting=no_gpu_worker(gpus))
        return Route(queue)
    return Route(JOB_TYPES[type_name].queue)
