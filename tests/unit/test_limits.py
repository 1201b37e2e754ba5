"""The limits: read from BIGMODEL_* settings and checked at load; every bound refuses what goes past it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis

from bigmodel.config import Settings
from bigmodel.errors import ConfigError, ValidationFailed
from bigmodel.limits import BOUNDS, RATES, Limits, check_params
from bigmodel.serving.dataplane import DataPlane
from bigmodel.store import Store


def test_every_bound_and_rate_is_read_from_its_setting() -> None:
    env = {b.setting: "7" for b in BOUNDS.values()} | {s: "5/second" for s in RATES.values()}
    limits = Settings.from_env(env).limits
    assert all(getattr(limits, name) == 7 for name in BOUNDS)
    assert limits.submit_rate == limits.infer_rate == "5/second"
    assert Settings.from_env({}).limits == Limits()
    assert Limits.from_env({"BIGMODEL_RATE_SUBMIT": "off", "BIGMODEL_RATE_INFER": "0"}).submit_rate is None
    for notation in ("10/minute", "5 per second", "10 per hour"):  # as the README writes them
        assert Limits.from_env({"BIGMODEL_RATE_INFER": notation}).infer_rate == notation


@pytest.mark.parametrize(("setting", "value"), [
    ("BIGMODEL_MAX_EPOCHS", "ten"), ("BIGMODEL_MAX_EPOCHS", "0"), ("BIGMODEL_MAX_HIDDEN_UNITS", "-1"),
    ("BIGMODEL_MAX_PING_SLEEP", "nan"), ("BIGMODEL_MAX_BODY_BYTES", "1.5"),
    ("BIGMODEL_RATE_SUBMIT", "lots"), ("BIGMODEL_RATE_INFER", "10 per fortnight"),
])
def test_a_bad_setting_stops_the_settings_from_loading_and_names_itself(setting: str, value: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        Settings.from_env({setting: value})


def sweep(params: dict[str, Any], grid: dict[str, Any] | None = None, random: dict[str, Any] | None = None,
          base: str = "train") -> dict[str, Any]:
    """Sweep params as the schema leaves them (paths resolved)."""
    return {"base": {"type": base, "params": params}, "grid": grid, "random": random}


L = Limits(epochs=10, hidden_units=32, hidden_layers=3, batch_size=64, ping_sleep=5, inline_rows=4,
           sweep_trials=6)
TRAIN: dict[str, Any] = {"epochs": 10, "batch_size": 64, "model": {"hidden": [32, 32, 32]}}

# (job type, params within every bound, params past one bound, that bound, where the error points)
TABLE = [
    ("train", TRAIN, {**TRAIN, "epochs": 11}, "epochs", ["epochs"]),
    ("train", TRAIN, {**TRAIN, "batch_size": 65}, "batch_size", ["batch_size"]),
    ("train", TRAIN, {**TRAIN, "model": {"hidden": [32, 33]}}, "hidden_units", ["model", "hidden", 1]),
    ("train", TRAIN, {**TRAIN, "model": {"hidden": [1] * 4}}, "hidden_layers", ["model", "hidden"]),
    ("pipeline", {"train": TRAIN}, {"train": {**TRAIN, "epochs": 11}}, "epochs", ["train", "epochs"]),
    ("ping", {"sleep": 5}, {"sleep": 5.01}, "ping_sleep", ["sleep"]),
    ("predict", {"instances": [[0]] * 4}, {"instances": [[0]] * 5}, "inline_rows", ["instances"]),
    ("sweep", sweep(TRAIN, {"learning_rate": [0.1, 0.01], "epochs": [1, 2, 3]}),
     sweep(TRAIN, {"learning_rate": [0.1, 0.01], "epochs": [1, 2, 3, 4]}), "sweep_trials", ["grid"]),
    ("sweep", sweep(TRAIN, random={"space": {"epochs": {"int": [1, 9]}}, "trials": 6}),
     sweep(TRAIN, random={"space": {"epochs": {"int": [1, 9]}}, "trials": 7}), "sweep_trials",
     ["random", "trials"]),
    ("sweep", sweep(TRAIN, {"epochs": [1, 10]}), sweep(TRAIN, {"epochs": [1, 11]}), "epochs",
     ["grid", "epochs", 1]),
    ("sweep", sweep(TRAIN, random={"space": {"epochs": {"int": [1, 10]}}, "trials": 2}),
     sweep(TRAIN, random={"space": {"epochs": {"int": [1, 11]}}, "trials": 2}), "epochs",
     ["random", "space", "epochs", 1]),
    ("sweep", sweep(TRAIN, {"model.hidden": [[32]]}), sweep(TRAIN, {"model.hidden": [[33]]}), "hidden_units",
     ["grid", "model.hidden", 0]),
    ("sweep", sweep(TRAIN, {"seed": [1]}), sweep({**TRAIN, "batch_size": 65}, {"seed": [1]}), "batch_size",
     ["base", "params", "batch_size"]),
    ("sweep", sweep({"train": TRAIN}, {"train.epochs": [10]}, base="pipeline"),
     sweep({"train": TRAIN}, {"train.epochs": [11]}, base="pipeline"), "epochs", ["grid", "train.epochs", 0]),
]


def test_the_table_covers_every_bound_of_a_job() -> None:
    # Body bounds are checked over HTTP: tests/integration/test_limits_http.py and test_bad_inputs.py.
    assert {row[3] for row in TABLE} == set(BOUNDS) - {"body_bytes", "json_bytes"}


@pytest.mark.parametrize(("job_type", "within", "past", "bound", "loc"), TABLE,
                         ids=[f"{r[0]}-{r[3]}" for r in TABLE])
def test_params_past_a_bound_are_refused_naming_it(job_type, within, past, bound, loc) -> None:
    check_params(job_type, within, L)
    with pytest.raises(ValidationFailed) as caught:
        check_params(job_type, past, L)
    (error,) = caught.value.errors
    setting = BOUNDS[bound].setting
    assert error["loc"] == ["body", "params", *loc] and error["limit"] == bound
    assert error["max"] == getattr(L, bound) and error["setting"] == setting and setting in error["msg"]
    assert f"{bound} <= {getattr(L, bound):g} ({setting})" in caught.value.message


def test_online_inference_rows_are_bounded_too(tmp_path) -> None:
    plane = DataPlane(redis.Redis(), Store(str(tmp_path)), Settings(limits=Limits(inline_rows=3)))
    meta = {"transform": {"features": ["a", "b"]}}
    assert plane.check_features(meta, np.zeros((3, 2))).shape == (3, 2)
    with pytest.raises(ValidationFailed, match="BIGMODEL_MAX_INLINE_ROWS"):
        plane.check_features(meta, np.zeros((4, 2)))


def test_counted_routes_answer_503_with_retry_after_when_redis_is_down(tmp_path) -> None:
    from api import create_app

    client = create_app(Settings(redis_url="redis://127.0.0.1:1/0", store_url=str(tmp_path))).test_client()
    for path, body in (("/v1/jobs", {"type": "ping"}), ("/v2/models/m/infer", {"inputs": []})):
        down = client.post(path, json=body)
        assert down.status_code == 503 and down.headers["Retry-After"] == "5", down.get_data(as_text=True)
        assert "redis://" not in down.get_data(as_text=True)
