"""Sweeps on a ONE-process pool: the sweep holds no worker while its trials run, so a grid of trainings
finishes there; every trial is recorded and the best registered; failed trials are recorded; cancelling a
sweep cancels its trials."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bigmodel.sweeps import default_mode
from tests.integration.test_dashboard import Browser, chromium  # noqa: F401 - chromium: a fixture
from tests.integration.test_jobs_http import submit, wait_for
from tests.integration.test_ml_pipeline_http import separable_csv
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose cpu pool has one worker process."""
    tmp = tmp_path_factory.mktemp("sweep-stack")
    server = RedisServer(tmp / "redis")
    server.start()
    s = Stack(server, tmp / "store")
    try:
        s.start(cpu_workers=1, api_workers=1)
        yield s
    finally:
        s.stop()
        server.stop()


@pytest.fixture(scope="module")
def processed(one: Stack) -> str:
    """A small processed dataset (300 rows, two classes, a validation split)."""
    payload, _ = separable_csv(300, seed=3)
    raw = requests.post(f"{one.url}/v1/datasets", files={"file": ("s.csv", payload)}, timeout=30).json()
    job = wait_for(one.url, submit(one.url, {"type": "preprocess", "params": {
        "dataset": raw["id"], "label": "label"}}).json()["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    return job["result"]["dataset"]  # type: ignore[no-any-return]


def train(dataset: str, name: str, **over: Any) -> dict[str, Any]:
    return {"dataset": dataset, "model": {"name": name, "hidden": [4]}, "epochs": 2, "batch_size": 32, **over}


def sweep(url: str, params: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    created = submit(url, {"type": "sweep", "params": params})
    assert created.status_code == 202, created.text
    return wait_for(url, created.json()["id"], timeout=timeout)


def test_a_grid_trains_every_trial_and_registers_the_best(one: Stack, processed: str) -> None:
    # Given a 2x2 grid of learning rates and hidden sizes on a one-process pool
    grid = {"learning_rate": [0.05, 0.001], "hidden": [[4], [8]]}
    record = sweep(one.url, {"train": train(processed, "swept"), "grid": grid})
    # Then the sweep succeeded with every trial recorded, each a child job of the sweep
    assert record["state"] == "succeeded", record["error"]
    result = record["result"]
    trials = result["trials"]
    assert [t["index"] for t in trials] == [0, 1, 2, 3] and result["succeeded"] == 4 and result["failed"] == 0
    assert [t["overrides"] for t in trials] == [
        {"learning_rate": 0.05, "model.hidden": [4]}, {"learning_rate": 0.05, "model.hidden": [8]},
        {"learning_rate": 0.001, "model.hidden": [4]}, {"learning_rate": 0.001, "model.hidden": [8]}]
    assert record["children"] == [t["job"] for t in trials]
    assert sorted(t["version"] for t in trials) == [1, 2, 3, 4]
    for t in trials:
        assert t["state"] == "succeeded" and t["model"] == "swept" and "val_loss" in t["metrics"]
        trial_job = requests.get(f"{one.url}/v1/jobs/{t['job']}", timeout=10).json()
        assert trial_job["parent"] == record["id"] and trial_job["type"] == "train"
        assert trial_job["params"]["learning_rate"] == t["overrides"]["learning_rate"]
        assert trial_job["params"]["model"]["hidden"] == t["overrides"]["model.hidden"]
    # And the best by val_loss (the default, lower is better) is registered as best-<sweep id>
    assert result["metric"] == "val_loss" and result["mode"] == default_mode("val_loss") == "min"
    best = min(trials, key=lambda t: t["metrics"]["val_loss"])
    assert result["best"]["index"] == best["index"] and result["best"]["alias"] == f"best-{record['id']}"
    model = requests.get(f"{one.url}/v1/models/swept", timeout=10).json()
    assert model["aliases"][f"best-{record['id']}"] == best["version"]
    assert record["progress"]["percent"] == 100
    # And `bigmodel status` shows the trials table, the best starred
    shown = subprocess.run([sys.executable, "-m", "bigmodel.cli", "status", record["id"]],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "BIGMODEL_API_URL": one.url})
    assert shown.returncode == 0, shown.stderr
    assert "TRIAL" in shown.stdout and "VAL_LOSS" in shown.stdout and f"{best['index']} *" in shown.stdout
    assert all(t["job"][:12] in shown.stdout for t in trials)


def test_a_pipeline_sweep_ranks_its_trials_and_registers_the_best(one: Stack) -> None:
    payload, _ = separable_csv(200, seed=5)
    raw = requests.post(f"{one.url}/v1/datasets", files={"file": ("p.csv", payload)}, timeout=30).json()["id"]
    base = {"dataset": raw, "preprocess": {"label": "label"},
            "train": {"model": {"name": "piped", "hidden": [4]}, "epochs": 2}}
    record = sweep(one.url, {"base": {"type": "pipeline", "params": base},
                             "grid": {"learning_rate": [0.05, 0.001]}, "metric": "accuracy"})
    assert record["state"] == "succeeded", record["error"]
    result = record["result"]
    assert record["params"]["grid"] == {"train.learning_rate": [0.05, 0.001]}
    assert result["mode"] == "max" and result["succeeded"] == 2
    best = max(result["trials"], key=lambda t: t["metrics"]["accuracy"])
    assert result["best"]["index"] == best["index"]
    aliases = requests.get(f"{one.url}/v1/models/piped", timeout=10).json()["aliases"]
    assert aliases[f"best-{record['id']}"] == best["version"]
    child = requests.get(f"{one.url}/v1/jobs/{best['job']}", timeout=10).json()
    assert child["type"] == "pipeline" and child["params"]["train"]["learning_rate"] == best["overrides"][
        "train.learning_rate"]


def test_two_sweeps_at_once_both_finish_on_one_process(one: Stack, processed: str) -> None:
    # Neither waiting sweep holds the process (nor the tenant's slot on its queue) its trials need
    bodies = [{"type": "sweep", "params": {"train": train(processed, f"both{i}", epochs=1),
                                           "grid": {"seed": [1, 2]}}} for i in range(2)]
    ids = [submit(one.url, body).json()["id"] for body in bodies]
    for sweep_id in ids:
        record = wait_for(one.url, sweep_id, timeout=180)
        assert record["state"] == "succeeded" and record["result"]["succeeded"] == 2, record["error"]


def test_a_failed_trial_is_recorded_and_the_sweep_still_succeeds(one: Stack, processed: str) -> None:
    # Given a grid whose second value passes validation but fails in training (no such activation)
    grid = {"model.activation": ["relu", "no_such_activation"]}
    record = sweep(one.url, {"train": train(processed, "half"), "grid": grid, "metric": "accuracy"})
    assert record["state"] == "succeeded", record["error"]
    result = record["result"]
    ok, bad = result["trials"]
    assert (result["succeeded"], result["failed"], result["mode"]) == (1, 1, "max")
    assert bad["state"] == "failed" and "no_such_activation" in bad["error"]["message"]
    assert bad["version"] is None
    assert result["best"]["index"] == 0 and result["best"]["version"] == ok["version"]
    model = requests.get(f"{one.url}/v1/models/half", timeout=10).json()
    assert model["aliases"][f"best-{record['id']}"] == ok["version"]


def test_a_sweep_whose_trials_all_fail_fails(one: Stack, processed: str) -> None:
    grid = {"model.activation": ["no_such_activation", "nor_this_one"]}
    record = sweep(one.url, {"train": train(processed, "none"), "grid": grid})
    assert record["state"] == "failed" and record["error"]["type"] == "trials_failed", record["error"]
    message = record["error"]["message"]
    assert message.startswith("2 of 2 trials failed; the first: invalid_input")
    assert "no_such_activation" in message
    for child in record["children"]:
        assert requests.get(f"{one.url}/v1/jobs/{child}", timeout=10).json()["state"] == "failed"


def test_a_metric_no_trial_reports_fails_the_sweep_naming_what_they_report(one: Stack,
                                                                            processed: str) -> None:
    params = {"train": train(processed, "unranked"), "grid": {"seed": [1]}, "metric": "val_auc"}
    record = sweep(one.url, params)
    assert record["state"] == "failed" and record["error"]["type"] == "trials_failed", record["error"]
    assert "'val_auc'" in record["error"]["message"] and "val_loss" in record["error"]["message"]


def test_cancelling_a_sweep_cancels_its_trials(one: Stack, processed: str) -> None:
    # Given a sweep of three long trainings, the first one running
    params = {"train": train(processed, "long", epochs=500, batch_size=8), "grid": {"seed": [1, 2, 3]}}
    sweep_id = submit(one.url, {"type": "sweep", "params": params}).json()["id"]
    deadline = time.monotonic() + 120
    children: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        record = requests.get(f"{one.url}/v1/jobs/{sweep_id}", timeout=10).json()
        children = [requests.get(f"{one.url}/v1/jobs/{c}", timeout=10).json()
                    for c in record.get("children") or []]
        if any(c["state"] == "running" for c in children):
            break
        time.sleep(0.3)
    assert len(children) == 3 and any(c["state"] == "running" for c in children), children
    # Its progress is trials done / total, and it holds no worker process while they run
    assert record["state"] == "running" and record["worker"] is None
    assert (record["progress"]["stage"], record["progress"]["current"], record["progress"]["total"]) == \
        ("children", 0, 3)
    # When the sweep is cancelled
    assert requests.post(f"{one.url}/v1/jobs/{sweep_id}/cancel", timeout=10).status_code == 202
    # Then it ends cancelled, and so does every trial (the running one at its next batch)
    final = wait_for(one.url, sweep_id, timeout=120)
    assert final["state"] == "cancelled", final
    for child in children:
        ended = wait_for(one.url, child["id"], timeout=60)
        assert ended["state"] == "cancelled", ended


@pytest.fixture
def browser(chromium) -> Iterator[Browser]:  # type: ignore[no-untyped-def]  # noqa: F811
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    yield Browser(context.new_page())
    context.close()


def test_the_job_page_lists_the_trials_while_they_run_and_once_ranked(one: Stack, processed: str,
                                                                       browser: Browser) -> None:
    params = {"train": train(processed, "paged", epochs=30, batch_size=8),
              "grid": {"learning_rate": [0.01, 0.002]}}
    sweep_id = submit(one.url, {"type": "sweep", "params": params}).json()["id"]
    browser.page.goto(f"{one.url}/#/jobs/{sweep_id}", wait_until="domcontentloaded")
    # While the trials run: a row per child job, with its state and the value it tries
    browser.page.wait_for_selector("#trials tr[data-job]", timeout=60_000)
    assert "learning_rate" in browser.page.inner_text("#trials thead").lower()
    record = wait_for(one.url, sweep_id, timeout=120)
    assert record["state"] == "succeeded", record["error"]
    # Once ranked: every trial with its metric, the best marked, and the alias named
    browser.page.wait_for_selector("#trials tr.best", timeout=30_000)
    assert browser.page.locator("#trials tbody tr").count() == 2
    best = record["result"]["best"]
    assert browser.page.get_attribute("#trials tr.best", "data-trial") == str(best["index"])
    assert f"best-{sweep_id}" in browser.page.inner_text("#trials-summary")
    browser.shot("sweep")
    browser.check_clean(one.url)
