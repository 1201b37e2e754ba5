"""Sweeps without services: a grid or a seeded space into trials, every value validated, the best trial."""

from __future__ import annotations

from typing import Any

import pytest

from bigmodel import sweeps
from bigmodel.errors import ValidationFailed
from bigmodel.jobs.jobtypes import validate_params
from bigmodel.runners.sweep import children_of
from bigmodel.sweeps import summary

DATASET = "a" * 64
TRAIN: dict[str, Any] = {"dataset": DATASET, "model": {"name": "m", "hidden": [8]}, "epochs": 2}
PIPELINE: dict[str, Any] = {"dataset": DATASET, "preprocess": {"label": "y"},
                            "train": {"model": {"name": "p"}}}


def test_a_grid_expands_to_every_combination_in_order() -> None:
    grid = {"learning_rate": [0.1, 0.01], "model.hidden": [[4], [8], [16]]}
    trials = sweeps.expand_grid(grid)
    assert sweeps.grid_size(grid) == len(trials) == 6
    assert trials[0] == {"learning_rate": 0.1, "model.hidden": [4]}
    assert trials[1] == {"learning_rate": 0.1, "model.hidden": [8]}
    assert trials[-1] == {"learning_rate": 0.01, "model.hidden": [16]}
    assert len({repr(t) for t in trials}) == 6


def test_overrides_set_dotted_paths_on_a_copy() -> None:
    out = sweeps.apply(TRAIN, {"model.hidden": [4, 4], "learning_rate": 0.5, "early_stopping.patience": 1})
    assert out["model"] == {"name": "m", "hidden": [4, 4]} and out["learning_rate"] == 0.5
    assert out["early_stopping"] == {"patience": 1}
    assert TRAIN["model"]["hidden"] == [8] and "learning_rate" not in TRAIN


def test_a_random_sample_is_seeded_and_stays_in_its_space() -> None:
    space = {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "epochs": {"int": [1, 3]},
             "dropout": {"uniform": [0.0, 0.5]}, "model.hidden": {"values": [[4], [8]]}}
    for spec in space.values():
        sweeps.check_distribution(spec)
    first, again = sweeps.sample(space, 50, seed=7), sweeps.sample(space, 50, seed=7)
    assert first == again and first != sweeps.sample(space, 50, seed=8)
    assert all(1e-4 <= t["learning_rate"] <= 1e-1 and t["epochs"] in (1, 2, 3) and 0 <= t["dropout"] <= 0.5
               and t["model.hidden"] in ([4], [8]) for t in first)
    assert {t["epochs"] for t in first} == {1, 2, 3}


@pytest.mark.parametrize("spec", [{}, {"normal": [0, 1]}, {"values": []}, {"uniform": [2, 1]},
                                  {"log_uniform": [0, 1]}, {"int": [1.5, 3]}, {"uniform": [0, "x"]},
                                  {"values": [1], "int": [1, 2]}])
def test_a_bad_distribution_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sweeps.check_distribution(spec)


def test_the_best_trial_by_metric_and_mode_skips_failed_and_missing_values() -> None:
    trials = [{"index": 0, "state": "succeeded", "metrics": {"val_loss": 0.5, "accuracy": 0.7}},
              {"index": 1, "state": "failed", "metrics": {"val_loss": 0.1}},
              {"index": 2, "state": "succeeded", "metrics": {"val_loss": 0.3, "accuracy": 0.9}},
              {"index": 3, "state": "succeeded", "metrics": {"accuracy": 0.95}},
              {"index": 4, "state": "succeeded", "metrics": {"val_loss": 0.3, "accuracy": float("nan")}}]
    assert sweeps.best(trials, "val_loss", "min")["index"] == 2  # the first of equal values
    assert sweeps.best(trials, "accuracy", "max")["index"] == 3
    assert sweeps.best(trials, "val_loss", "max")["index"] == 0
    assert sweeps.best(trials, "auc", "max") is None and sweeps.best(trials[1:2], "val_loss", "min") is None
    assert sweeps.default_metric(trials) == "val_loss" and sweeps.default_metric(trials[3:4]) == "loss"
    assert [sweeps.default_mode(m) for m in ("val_loss", "mae", "accuracy", "val_auc", "r2")] == \
        ["min", "min", "max", "max", "max"]


def test_sweep_params_resolve_bare_keys_and_take_the_api_md_shorthand() -> None:
    params = validate_params("sweep", {"train": TRAIN, "grid": {"learning_rate": [0.1, 0.01],
                                                               "hidden": [[4], [8]]}})
    assert params["base"] == {"type": "train", "params": TRAIN}
    assert params["grid"] == {"learning_rate": [0.1, 0.01], "model.hidden": [[4], [8]]}
    piped = validate_params("sweep", {"base": {"type": "pipeline", "params": PIPELINE},
                                      "random": {"space": {"learning_rate": {"log_uniform": [1e-3, 1e-1]},
                                                           "hidden": {"values": [[4], [8]]}}, "trials": 3},
                                      "metric": "accuracy"})
    assert set(piped["random"]["space"]) == {"train.learning_rate", "train.model.hidden"}
    assert piped["random"]["seed"] == 0 and piped["metric"] == "accuracy" and piped["mode"] is None


@pytest.mark.parametrize(("params", "loc", "words"), [
    ({"train": TRAIN, "grid": {"learning_rat": [0.1]}}, ["grid"], "'learning_rat'"),
    ({"train": TRAIN, "grid": {"learning_rate": [0.1, -1]}}, ["grid"], "value 1 (-1)"),
    ({"train": TRAIN, "grid": {"model.hidden": [[4], [0]]}}, ["grid"], "model.hidden"),
    ({"train": TRAIN, "grid": {"hidden": [[4]], "model.hidden": [[8]]}}, ["grid"], "twice"),
    ({"train": TRAIN, "grid": {"learning_rate": []}}, ["grid"], "non-empty"),
    ({"train": TRAIN}, [], "exactly one of 'grid' or 'random'"),
    ({"train": {**TRAIN, "epochs": 0}, "grid": {"seed": [1]}}, ["base"], "epochs"),
    ({"base": {"type": "predict", "params": {}}, "grid": {"seed": [1]}}, ["base", "type"], ""),
    ({"train": TRAIN, "random": {"space": {"learning_rate": {"uniform": [0.1, 20]}}, "trials": 2}},
     ["random"], "value 1 (20.0)"),
    ({"train": TRAIN, "random": {"space": {"epochs": {"int": [1, 3]}}, "trials": 0}}, ["random", "trials"],
     ""),
    ({"train": TRAIN, "grid": {"seed": [1]}, "mode": "best"}, ["mode"], ""),
])
def test_a_bad_sweep_is_refused_naming_what_is_wrong(params: dict[str, Any], loc: list[Any],
                                                     words: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_params("sweep", params)
    (error,) = caught.value.errors
    assert error["loc"][:2 + len(loc)] == ["body", "params", *loc] and words in error["msg"]


def child(i: int, state: str, val_loss: float | None = None, job_type: str = "train") -> dict[str, Any]:
    """A child's final record as the core hands it back."""
    if state != "succeeded":
        return {"id": f"c{i}", "type": job_type, "state": state, "result": None,
                "error": {"type": "internal_error", "message": "boom"}}
    trained = {"model": "m", "version": i + 1, "metrics": {"loss": val_loss, "accuracy": 1 - val_loss,
                                                         "confusion": [[1, 0], [0, 1]]},
               "history": {"loss": [0.9, 0.8], "val_loss": [0.7, val_loss]}}
    result = {"preprocess": {}, "train": trained, "evaluate": {"metrics": {"loss": 0.0}}} \
        if job_type == "pipeline" else trained
    return {"id": f"c{i}", "type": job_type, "state": state, "result": result, "error": None}


def test_the_summary_records_every_trial_and_picks_the_best() -> None:
    params = validate_params("sweep", {"train": TRAIN, "grid": {"learning_rate": [0.1, 0.01],
                                                               "hidden": [[4], [8]]}})
    children = [child(0, "succeeded", 0.4), child(1, "failed"), child(2, "succeeded", 0.2),
                child(3, "cancelled")]
    out = summary(params, children)
    assert [t["job"] for t in out["trials"]] == ["c0", "c1", "c2", "c3"]
    assert out["trials"][1]["overrides"] == {"learning_rate": 0.1, "model.hidden": [8]}
    assert out["trials"][1]["error"]["message"] == "boom" and out["trials"][1]["state"] == "failed"
    assert out["trials"][0]["metrics"] == {"loss": 0.4, "val_loss": 0.4, "accuracy": pytest.approx(0.6)}
    assert (out["succeeded"], out["failed"], out["metric"], out["mode"]) == (2, 2, "val_loss", "min")
    assert out["best"]["index"] == 2 and out["best"]["version"] == 3 and out["best"]["value"] == 0.2
    assert out["best"]["overrides"] == {"learning_rate": 0.01, "model.hidden": [4]}
    by_accuracy = summary({**params, "metric": "accuracy"}, children)
    assert by_accuracy["mode"] == "max" and by_accuracy["best"]["index"] == 2
    assert summary(params, [child(i, "failed") for i in range(4)])["best"] is None


def test_a_pipeline_sweep_ranks_by_the_train_stage_not_the_test_split() -> None:
    params = validate_params("sweep", {"base": {"type": "pipeline", "params": PIPELINE},
                                       "grid": {"learning_rate": [0.1, 0.01]}})
    out = summary(params, [child(0, "succeeded", 0.5, "pipeline"), child(1, "succeeded", 0.3, "pipeline")])
    assert out["best"]["index"] == 1 and out["best"]["model"] == "m"
    assert out["trials"][0]["metrics"]["loss"] == 0.5


def test_each_trial_becomes_a_child_of_the_base_type_with_the_sweeps_priority() -> None:
    params = validate_params("sweep", {"base": {"type": "pipeline", "params": PIPELINE},
                                       "grid": {"learning_rate": [0.1, 0.01]}})
    kids = children_of({"priority": 7, "resources": {"gpu": 0}}, params)
    assert [k["params"]["train"]["learning_rate"] for k in kids] == [0.1, 0.01]
    assert all(k["type"] == "pipeline" and k["priority"] == 7 for k in kids)
    for kid in kids:
        validate_params(kid["type"], kid["params"])


def test_the_cli_trials_table_stars_the_best_and_shows_each_trials_values() -> None:
    from bigmodel.cli.output import trial_headers, trial_row

    params = validate_params("sweep", {"train": TRAIN, "grid": {"learning_rate": [0.1, 0.01]}})
    out = summary(params, [child(0, "succeeded", 0.4), child(1, "failed")])
    assert trial_headers(out["metric"])[3] == "VAL_LOSS"
    best, failed = (trial_row(t, out["metric"], out["best"]["index"]) for t in out["trials"])
    assert best == ["0 *", "succeeded", "learning_rate=0.1", "0.4", "m v1", "c0", ""]
    assert failed == ["1", "failed", "learning_rate=0.01", "", "", "c1", "internal_error: boom"]
