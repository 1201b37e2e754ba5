"""Given the default limits, a parameter past each bound answers 422 naming the bound and the setting that
raises it, and the same parameter at the bound is accepted; bodies past their bound answer 413 the same way.

The API runs in-process on a real Redis (a database no worker consumes: accepted jobs stay queued).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import redis

from api import create_app
from bigmodel.config import Settings
from bigmodel.limits import BOUNDS, Limits
from bigmodel.ml.registry import Registry
from bigmodel.store import Store

pytestmark = pytest.mark.integration

DATASET = "a" * 64
LIMITS = Limits()


def train(**over: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"dataset": DATASET, "model": {"name": "m", "hidden": [8]}, **over}
    return {"type": "train", "params": params}


def sweep(seeds: int, epochs: int) -> dict[str, Any]:
    """A sweep of seeds x epochs trials."""
    grid = {"seed": list(range(seeds)), "epochs": list(range(1, epochs + 1))}
    return {"type": "sweep", "params": {"train": train()["params"], "grid": grid}}


# (bound, a submission at the bound, the same past it, where the 422 points)
TABLE = [
    ("epochs", train(epochs=LIMITS.epochs), train(epochs=LIMITS.epochs + 1), ["epochs"]),
    ("batch_size", train(batch_size=LIMITS.batch_size), train(batch_size=LIMITS.batch_size + 1),
     ["batch_size"]),
    ("hidden_units", train(model={"name": "m", "hidden": [8, LIMITS.hidden_units]}),
     train(model={"name": "m", "hidden": [8, LIMITS.hidden_units + 1]}), ["model", "hidden", 1]),
    ("hidden_layers", train(model={"name": "m", "hidden": [4] * LIMITS.hidden_layers}),
     train(model={"name": "m", "hidden": [4] * (LIMITS.hidden_layers + 1)}), ["model", "hidden"]),
    ("epochs", {"type": "pipeline", "params": {"dataset": DATASET, "preprocess": {"label": "y"},
                                                "train": {"model": {"name": "m"}, "epochs": LIMITS.epochs}}},
     {"type": "pipeline", "params": {"dataset": DATASET, "preprocess": {"label": "y"},
                                     "train": {"model": {"name": "m"}, "epochs": LIMITS.epochs + 1}}},
     ["train", "epochs"]),
    ("ping_sleep", {"type": "ping", "params": {"sleep": LIMITS.ping_sleep}},
     {"type": "ping", "params": {"sleep": LIMITS.ping_sleep + 0.5}}, ["sleep"]),
    ("inline_rows", {"type": "predict", "params": {"model": "m", "instances": [[0]] * LIMITS.inline_rows}},
     {"type": "predict", "params": {"model": "m", "instances": [[0]] * (LIMITS.inline_rows + 1)}},
     ["instances"]),
    ("sweep_trials", sweep(16, LIMITS.sweep_trials // 16), sweep(16, LIMITS.sweep_trials // 16 + 1),
     ["grid"]),
]
# Checked elsewhere: the body bound below, the JSON body bound by tests/integration/test_bad_inputs.py,
# online inference rows by tests/unit/test_limits.py.
ELSEWHERE = {"body_bytes", "json_bytes"}


@pytest.fixture
def client(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return create_app(Settings(redis_url=url, store_url=str(tmp_path))).test_client()


def test_the_table_covers_every_bound() -> None:
    assert {row[0] for row in TABLE} | ELSEWHERE == set(BOUNDS)


@pytest.mark.parametrize(("bound", "at", "past", "loc"), TABLE, ids=[f"{r[0]}-{r[1]['type']}" for r in TABLE])
def test_a_parameter_past_its_bound_is_422_naming_the_bound_and_its_setting(client, bound, at, past,
                                                                            loc) -> None:
    accepted = client.post("/v1/jobs", json=at)
    assert accepted.status_code == 202, accepted.get_json()
    refused = client.post("/v1/jobs", json=past)
    body = refused.get_json()
    assert refused.status_code == 422 and refused.content_type == "application/problem+json", body
    setting = BOUNDS[bound].setting
    assert setting in body["detail"] and bound in body["detail"]
    (error,) = body["errors"]
    assert error["loc"] == ["body", "params", *loc]
    assert error["limit"] == bound and error["setting"] == setting and error["max"] == getattr(LIMITS, bound)
    assert setting in error["msg"]


def test_a_json_body_past_the_body_bound_is_413_naming_its_setting(redis_server, tmp_path) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    settings = Settings(redis_url=url, store_url=str(tmp_path), limits=Limits(body_bytes=2000),
                        max_upload_bytes=3000)
    client = create_app(settings).test_client()
    # A registered version (metadata only): the inference routes read the body after finding the model.
    Registry(redis.Redis.from_url(url), Store(str(tmp_path)), "default").register(
        "m", 1, {"features": ["a"], "transform": {"features": ["a"], "columns": ["a"], "task": "binary"}})
    small = {"type": "ping", "params": {"note": "x" * 1500}}
    assert client.post("/v1/jobs", json=small).status_code == 202
    for path, body in (("/v1/jobs", {"type": "ping", "params": {"note": "x" * 2500}}),
                       ("/v1/models/m:predict", {"instances": [["x" * 2500]]}),
                       ("/v2/models/m/infer", {"inputs": [{"data": ["x" * 2500]}]})):
        refused = client.post(path, json=body)
        assert refused.status_code == 413, (path, refused.get_data(as_text=True))
        assert "BIGMODEL_MAX_BODY_BYTES" in refused.get_data(as_text=True)
    # A dataset upload has its own bound, BIGMODEL_MAX_UPLOAD_BYTES, larger here than the body bound.
    csv = b"a,b\n" + b"1,2\n" * 600
    assert client.post("/v1/datasets", data={"file": (io.BytesIO(csv), "ok.csv")}).status_code == 201
    big = client.post("/v1/datasets", data={"file": (io.BytesIO(csv * 2), "big.csv")})
    assert big.status_code == 413 and "BIGMODEL_MAX_UPLOAD_BYTES" in big.get_json()["detail"]
