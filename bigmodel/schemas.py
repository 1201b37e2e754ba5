"""Request and params schemas (pydantic): validated before anything is queued."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bigmodel import sweeps
from bigmodel.names import DATASET_ID_PATTERN, NAME_PATTERN


class Strict(BaseModel):
    """A schema that rejects unknown fields, so that a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """What a job asks of the pool."""

    gpu: int = Field(0, ge=0, le=8, description="GPUs the job needs; >0 routes it to the gpu queue")


class JobSubmission(Strict):
    """The body of POST /v1/jobs."""

    type: str = Field(description="job type: preprocess, train, evaluate, predict, pipeline, sweep, ping")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(5, ge=0, le=9, description="0 (lowest) to 9 (highest)")
    resources: Resources = Field(default_factory=lambda: Resources.model_validate({}))


class PingParams(BaseModel):
    """A diagnostic job that returns its params; `sleep`, `fail` and `crash` help test the pools."""

    model_config = ConfigDict(extra="allow")
    sleep: float = Field(0.0, ge=0, allow_inf_nan=False)  # upper bound: Limits.ping_sleep
    fail: str | None = None
    steps: int = Field(1, ge=1, le=10_000)
    crash: bool = Field(False, description="kill the worker process running it (a poison job)")
    children: list[dict[str, Any]] | None = Field(
        None, min_length=1, max_length=1024,
        description="ping params of child jobs to fan out to; the job ends after them with their states")


class SplitSpec(Strict):
    """Fractions of the rows that go to each split."""

    train: float = Field(0.8, gt=0, le=1)
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError("split fractions must add up to 1")
        return self


class PreprocessParams(Strict):
    """Params of a preprocess job."""

    dataset: str = Field(pattern=DATASET_ID_PATTERN, description="id of an uploaded (raw) dataset")
    label: str = Field(min_length=1)
    features: list[str] | None = None
    task: Literal["binary", "multiclass", "regression"] | None = None
    dropna: bool = True
    normalize: Literal["standard", "minmax", "l2", "none"] = "standard"
    split: SplitSpec = Field(default_factory=lambda: SplitSpec.model_validate({}))
    seed: int = 0
    max_categories: int = Field(50, ge=2, le=10_000)


class ModelSpec(Strict):
    """The architecture of a model to train."""

    name: str = Field(pattern=NAME_PATTERN)
    task: Literal["binary", "multiclass", "regression"] | None = None
    hidden: list[int] = Field(default_factory=lambda: [64, 32])  # upper bounds: Limits.hidden_*
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("hidden")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(h < 1 for h in value):
            raise ValueError("hidden layer sizes must be at least 1")
        return value


class EarlyStopping(Strict):
    """Stop when a monitored metric stops improving."""

    monitor: str = "val_loss"
    patience: int = Field(3, ge=0, le=1000)


class TrainParams(Strict):
    """Params of a train job."""

    dataset: str = Field(pattern=DATASET_ID_PATTERN, description="id of a processed dataset")
    model: ModelSpec
    epochs: int = Field(10, ge=1)  # upper bounds of these two: Limits (bigmodel/limits.py)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw", "adagrad"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    early_stopping: EarlyStopping | None = None
    seed: int = 0


Version = int | Literal["latest"] | str


class EvaluateParams(Strict):
    """Params of an evaluate job."""

    model: str = Field(pattern=NAME_PATTERN)
    version: Version = "latest"
    dataset: str = Field(pattern=DATASET_ID_PATTERN, description="id of a processed dataset")
    split: Literal["train", "validation", "test"] = "test"


class PredictParams(Strict):
    """Params of a predict job: a dataset (raw or processed) or inline instances."""

    model: str = Field(pattern=NAME_PATTERN)
    version: Version = "latest"
    dataset: str | None = Field(None, pattern=DATASET_ID_PATTERN)
    split: Literal["train", "validation", "test"] | None = None
    instances: list[list[Any] | dict[str, Any]] | None = Field(None, min_length=1)  # Limits.inline_rows
    missing: Literal["fail", "null", "impute"] = Field(
        "null", description="a row the model cannot take (a missing value it was not trained to fill, an "
        "unseen category): fail the job, predict null with a reason, or fill from the train statistics")
    rows: list[int] | None = Field(
        None, min_length=2, max_length=2,
        description="[start, stop) of the dataset's (or split's) rows: one shard, never split further")

    @model_validator(mode="after")
    def _one_input(self) -> PredictParams:
        if (self.dataset is None) == (self.instances is None):
            raise ValueError("give exactly one of 'dataset' or 'instances'")
        if self.rows is not None:
            if self.dataset is None:
                raise ValueError("'rows' goes with 'dataset'")
            if not 0 <= self.rows[0] < self.rows[1]:
                raise ValueError("'rows' must be [start, stop) with 0 <= start < stop")
        return self


class PipelineTrain(TrainParams):
    """Train params inside a pipeline: the dataset comes from the preprocess stage."""

    dataset: str | None = Field(None, pattern=DATASET_ID_PATTERN)  # type: ignore[assignment]


class PipelinePreprocess(PreprocessParams):
    """Preprocess params inside a pipeline: the dataset is the pipeline's."""

    dataset: str | None = Field(None, pattern=DATASET_ID_PATTERN)  # type: ignore[assignment]


class PipelineParams(Strict):
    """Params of a pipeline job: preprocess -> train -> evaluate in one job."""

    dataset: str = Field(pattern=DATASET_ID_PATTERN, description="id of an uploaded (raw) dataset")
    preprocess: PipelinePreprocess
    train: PipelineTrain
    evaluate: bool = True


class AliasMove(Strict):
    """The body of POST /v1/models/{name}/aliases/{alias}."""

    version: int = Field(ge=1)


SWEEPABLE: dict[str, type[Strict]] = {"train": TrainParams, "pipeline": PipelineParams}
# Where a bare grid key (`learning_rate`, `hidden`) is looked for when it is not a field of the base itself.
_NESTED: dict[str, tuple[tuple[str, type[BaseModel]], ...]] = {
    "train": (("model", ModelSpec),),
    "pipeline": (("train", PipelineTrain), ("train.model", ModelSpec), ("preprocess", PipelinePreprocess)),
}


def sweep_path(base_type: str, key: str) -> str:
    """The dotted params path a sweep key names: as given, or a bare field found in a nested section."""
    if "." in key or key in SWEEPABLE[base_type].model_fields:
        return key
    for prefix, section in _NESTED[base_type]:
        if key in section.model_fields:
            return f"{prefix}.{key}"
    return key  # not a field anywhere: validation says so, naming it


def _problems(schema: type[BaseModel], params: dict[str, Any]) -> str | None:
    """What is wrong with params for schema, as 'path: message; ...', or None."""
    try:
        schema.model_validate(params)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg']}" for e in exc.errors())
    return None


class SweepBase(Strict):
    """The job each trial of a sweep runs, before the trial's overrides."""

    type: Literal["train", "pipeline"]
    params: dict[str, Any]

    @model_validator(mode="after")
    def _valid_params(self) -> SweepBase:
        problems = _problems(SWEEPABLE[self.type], self.params)
        if problems:
            raise ValueError(f"not valid {self.type} params: {problems}")
        return self


def _resolved(base: SweepBase | None, values_by_key: dict[str, list[Any]], what: str) -> dict[str, str]:
    """Each key's params path; every value a trial can take must make valid params of the base job."""
    if base is None:  # the base is invalid: its own error says why
        return {key: key for key in values_by_key}
    schema, paths = SWEEPABLE[base.type], dict[str, str]()
    for key, values in values_by_key.items():
        path = sweep_path(base.type, key)
        if path in paths.values():
            raise ValueError(f"{what} {key!r} names {path!r} twice")
        paths[key] = path
        for i, value in enumerate(values):
            problems = _problems(schema, sweeps.apply(base.params, {path: value}))
            if problems:
                raise ValueError(f"{what} {key!r} value {i} ({value!r}) makes invalid {base.type} params: "
                                 f"{problems}")
    return paths


class RandomSearch(Strict):
    """A seeded random sample of a space: each key a distribution over a param's values."""

    space: dict[str, dict[str, Any]] = Field(min_length=1, description=(
        'path -> {"values": [...]} | {"uniform": [lo, hi]} | {"log_uniform": [lo, hi]} | {"int": [lo, hi]}'))
    trials: int = Field(ge=1)  # upper bound: Limits.sweep_trials
    seed: int = 0

    @field_validator("space")
    @classmethod
    def _distributions(cls, space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, spec in space.items():
            try:
                sweeps.check_distribution(spec)
            except ValueError as exc:
                raise ValueError(f"space {key!r}: {exc}") from None
        return space


class SweepParams(Strict):
    """Params of a sweep job: a base train or pipeline job and a grid (or a random space) of overrides.

    `{"train": {...}}` is short for `{"base": {"type": "train", "params": {...}}}`. Grid and space keys
    are dotted params paths (`model.hidden`, `train.learning_rate`); a bare field name is looked up in
    the base's sections (`hidden` -> `model.hidden`). Every value a trial can take is validated here.
    """

    base: SweepBase
    grid: dict[str, list[Any]] | None = Field(None, description="path -> values; trials: every combination")
    random: RandomSearch | None = None
    metric: str | None = Field(None, min_length=1, max_length=64,
                               description="the trial metric to rank by; default val_loss, else loss")
    mode: Literal["min", "max"] | None = Field(None, description="default: min for loss-like metrics")

    @model_validator(mode="before")
    @classmethod
    def _train_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "train" in data and "base" not in data:
            rest = {k: v for k, v in data.items() if k != "train"}
            return {**rest, "base": {"type": "train", "params": data["train"]}}
        return data

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]] | None, info: ValidationInfo) -> dict[str, list[Any]] | None:
        if grid is None:
            return None
        if not grid or any(not values for values in grid.values()):
            raise ValueError("a grid maps at least one param path to a non-empty list of values")
        paths = _resolved(info.data.get("base"), grid, "grid key")
        return {paths[key]: values for key, values in grid.items()}

    @field_validator("random")
    @classmethod
    def _space(cls, search: RandomSearch | None, info: ValidationInfo) -> RandomSearch | None:
        if search is None:
            return None
        reach = {key: sweeps.extremes(spec) for key, spec in search.space.items()}
        paths = _resolved(info.data.get("base"), reach, "space key")
        return search.model_copy(update={"space": {paths[k]: spec for k, spec in search.space.items()}})

    @model_validator(mode="after")
    def _one_search(self) -> SweepParams:
        if (self.grid is None) == (self.random is None):
            raise ValueError("give exactly one of 'grid' or 'random'")
        return self
