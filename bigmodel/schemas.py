"""Request and params schemas (pydantic): validated before anything is queued."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bigmodel.names import DATASET_ID_PATTERN, NAME_PATTERN


class Strict(BaseModel):
    """A schema that rejects unknown fields, so that a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """What a job asks of the pool."""

    gpu: int = Field(0, ge=0, le=8, description="GPUs the job needs; >0 routes it to the gpu queue")


class JobSubmission(Strict):
    """The body of POST /v1/jobs."""

    type: str = Field(description="job type, e.g. preprocess, train, evaluate, predict, pipeline, ping")
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
