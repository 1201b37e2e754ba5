"""Given two tenants on the secure stack, every tenant-scoped route keeps each to its own.

For each route of the table: the owner gets its answer; the other tenant's valid token gets 404 (never
403, never the data: an id of another tenant answers as one that does not exist); a missing or wrong
token gets 401. Routes that list or create are checked for what they show and what they reuse.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests.integration.conftest import Secure
from tests.trained import publish

pytestmark = pytest.mark.integration


@dataclass
class World:
    """What acme owns: a dataset, a finished job with an artifact, a model served online."""

    secure: Secure
    dataset: str
    csv: bytes
    job: str
    features: int


def call(url: str, method: str, path: str, headers: dict[str, str] | None = None,
         **kw: Any) -> requests.Response:
    return requests.request(method, url + path, headers=headers or {}, timeout=60, **kw)


@pytest.fixture(scope="module")
def world(secure: Secure) -> World:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    frame = pd.DataFrame({"a": rng.normal(size=200) + 2 * y, "b": rng.normal(size=200),
                          "color": rng.choice(["red", "blue"], 200), "label": np.where(y == 1, "yes", "no")})
    stack = secure.stack
    _, _, transform = publish(stack.redis.url, str(stack.store), "acme", "churn", frame, "label")
    acme = secure.auth("acme")
    csv = frame.to_csv(index=False).encode()
    up = call(secure.url, "POST", "/v1/datasets", acme, files={"file": ("t.csv", io.BytesIO(csv))})
    assert up.status_code == 201, up.text
    job = call(secure.url, "POST", "/v1/jobs", {**acme, "Idempotency-Key": "acme-key"},
               json={"type": "ping", "params": {"steps": 2, "artifact": "acme's bytes"}}).json()["id"]
    done = call(secure.url, "GET", f"/v1/jobs/{job}?wait=60", acme).json()
    assert done["state"] == "succeeded", done
    moved = call(secure.url, "POST", "/v1/models/churn/aliases/production", acme, json={"version": 1})
    assert moved.status_code == 200, moved.text
    return World(secure, up.json()["id"], csv, job, len(transform["features"]))


def item_routes(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    """Routes on one of acme's things: (method, path, request arguments)."""
    v2 = {"json": {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, w.features],
                               "data": [0.0] * w.features}]}}
    rows = {"json": {"instances": [{"a": 1.0, "b": 0.5, "color": "red"}]}}
    return [
        ("GET", f"/v1/datasets/{w.dataset}", {}),
        ("GET", f"/v1/jobs/{w.job}", {}),
        ("GET", f"/v1/jobs/{w.job}?wait=1", {}),
        ("POST", f"/v1/jobs/{w.job}/cancel", {}),  # finished: the owner gets 409, another tenant 404
        ("GET", f"/v1/jobs/{w.job}/events", {}),  # Server-Sent Events (the job is over: the stream ends)
        ("GET", f"/v1/jobs/{w.job}/events?follow=0", {}),
        ("GET", f"/v1/jobs/{w.job}/artifacts/ping.txt", {}),
        ("GET", "/v1/models/churn", {}),
        ("POST", "/v1/models/churn/aliases/production", {"json": {"version": 1}}),
        ("GET", "/v2/models/churn", {}),
        ("GET", "/v2/models/churn/versions/1", {}),
        ("GET", "/v2/models/churn/ready", {}),
        ("GET", "/v2/models/churn/versions/1/ready", {}),
        ("POST", "/v2/models/churn/infer", v2),
        ("POST", "/v2/models/churn/versions/1/infer", v2),
        ("POST", "/v1/models/churn:predict", rows),
        ("POST", "/v1/models/churn/versions/1:predict", rows),
        ("POST", "/v1/models/churn/labels/production:predict", rows),
    ]


LISTS = ["/v1/datasets", "/v1/jobs", "/v1/jobs?prefix={job8}", "/v1/models"]
CREATES = ["/v1/datasets", "/v1/jobs"]


def test_another_tenants_token_gets_404_on_every_route_of_a_thing_it_does_not_own(world: World) -> None:
    s, seen = world.secure, []
    for method, path, kw in item_routes(world):
        mine = call(s.url, method, path, s.auth("acme"), **kw)
        theirs = call(s.url, method, path, s.auth("beta"), **kw)
        seen += [mine, theirs]
        assert mine.status_code in ((409,) if path.endswith("/cancel") else (200,)), (path, mine.text)
        assert theirs.status_code == 404, (method, path, theirs.status_code, theirs.text)
        assert "acme" not in theirs.text and '"features"' not in theirs.text  # no owner, no model data
    # The 404 of another tenant's job reads exactly as that of a job that does not exist.
    ghost = call(s.url, "GET", f"/v1/jobs/{'0' * 32}", s.auth("beta")).json()
    other = call(s.url, "GET", f"/v1/jobs/{world.job}", s.auth("beta")).json()
    assert {**other, "detail": None} == {**ghost, "detail": None}
    assert other["detail"].replace(world.job, "0" * 32) == ghost["detail"]
    _no_secret_in(s, seen)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "tok"}],
                         ids=["missing", "wrong", "not-bearer"])
def test_a_missing_or_wrong_token_gets_401_on_every_tenant_scoped_route(world: World, headers) -> None:
    s, seen = world.secure, []
    routes = [*item_routes(world), *(("GET", p.format(job8=world.job[:8]), {}) for p in LISTS),
              ("POST", "/v1/datasets", {"files": {"file": ("t.csv", io.BytesIO(world.csv))}}),
              ("POST", "/v1/jobs", {"json": {"type": "ping", "params": {}}})]
    for method, path, kw in routes:
        response = call(s.url, method, path, headers, **kw)
        seen.append(response)
        assert response.status_code == 401, (method, path, response.status_code, response.text)
    _no_secret_in(s, seen)


def test_lists_show_only_the_callers_own_things(world: World) -> None:
    s = world.secure
    for path in LISTS:
        path = path.format(job8=world.job[:8])
        mine = call(s.url, "GET", path, s.auth("acme"))
        theirs = call(s.url, "GET", path, s.auth("beta"))
        assert mine.status_code == theirs.status_code == 200
        assert mine.json()["items"], path
        assert not any(item_id in theirs.text for item_id in (world.dataset, world.job, '"churn"')), path


def test_creating_never_reuses_another_tenants_things(world: World) -> None:
    s, beta = world.secure, world.secure.auth("beta")
    # A job that names acme's dataset runs as beta and cannot reach it.
    params = {"dataset": world.dataset, "label": "label"}
    bad = call(s.url, "POST", "/v1/jobs", beta, json={"type": "preprocess", "params": params})
    record = call(s.url, "GET", f"/v1/jobs/{bad.json()['id']}?wait=60", beta).json()
    assert record["state"] == "failed" and record["error"]["type"] == "not_found", record
    # The same bytes are a new dataset for beta (201), not acme's stored one (200 would say acme has it).
    up = call(s.url, "POST", "/v1/datasets", beta, files={"file": ("t.csv", io.BytesIO(world.csv))})
    assert up.status_code == 201 and up.json()["id"] == world.dataset, up.text
    # acme's Idempotency-Key is nobody else's: beta gets a job of its own.
    job = call(s.url, "POST", "/v1/jobs", {**beta, "Idempotency-Key": "acme-key"},
               json={"type": "ping", "params": {}})
    assert job.status_code == 202 and job.json()["id"] != world.job


def test_artifact_uris_are_api_paths_not_store_paths(world: World) -> None:
    s = world.secure
    record = call(s.url, "GET", f"/v1/jobs/{world.job}", s.auth("acme")).json()
    (artifact,) = record["artifacts"]
    assert artifact["uri"] == f"/v1/jobs/{world.job}/artifacts/ping.txt"
    assert str(s.stack.store) not in str(record) and "file:" not in str(record)
    assert call(s.url, "GET", artifact["uri"], s.auth("acme")).content == b"acme's bytes"


def _no_secret_in(secure: Secure, responses: list[requests.Response]) -> None:
    for response in responses:
        for secret in secure.secrets():
            assert secret not in response.text and secret not in str(response.headers), response.url
