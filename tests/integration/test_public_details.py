"""Given tokens, /readyz and /metrics show a caller without one counts, not worker or host names; any
tenant's valid token shows the names on /readyz; BIGMODEL_PUBLIC_DETAILS=1 opens them to everyone.
No token, password or Redis URL is in either, whoever asks."""

from __future__ import annotations

import socket

import pytest
import requests

from api import create_app
from bigmodel.config import Settings
from tests.integration.conftest import Secure

pytestmark = pytest.mark.integration


def readyz(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.get(f"{url}/readyz", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_readyz_names_workers_only_to_callers_with_a_valid_token(secure: Secure) -> None:
    detailed = readyz(secure.url, secure.auth("beta")).json()["pools"]
    names = [name for pool in detailed.values() for name in pool["workers"]]
    assert {"cpu", "infer"} <= set(detailed) and names
    assert all(pool["workers_online"] == len(pool["workers"]) for pool in detailed.values())
    host = socket.gethostname()
    assert any(host in name for name in names)  # what the public view must not show
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = readyz(secure.url, headers)
        public = response.json()["pools"]
        assert public == {p: {k: v for k, v in d.items() if k != "workers"} for p, d in detailed.items()}
        assert host not in response.text and not any(name in response.text for name in names)


def test_metrics_hold_counts_and_never_names_tokens_or_passwords(secure: Secure) -> None:
    detailed = readyz(secure.url, secure.auth("acme")).json()["pools"]
    names = [name for pool in detailed.values() for name in pool["workers"]]
    for headers in ({}, secure.auth("acme")):
        text = requests.get(f"{secure.url}/metrics", headers=headers, timeout=10).text
        assert 'bigmodel_workers_online{pool="cpu"} 1.0' in text
        assert socket.gethostname() not in text and not any(name in text for name in names)
    for body in (text, readyz(secure.url).text, readyz(secure.url, secure.auth("acme")).text):
        assert not any(secret in body for secret in secure.secrets())
        assert "redis://" not in body and "127.0.0.1" not in body


def test_an_operator_setting_opens_the_details_to_everyone(secure: Secure, tmp_path) -> None:
    assert Settings.from_env({"BIGMODEL_PUBLIC_DETAILS": "1"}).public_details
    assert not Settings.from_env({}).public_details
    base = Settings(redis_url=secure.stack.redis.url, store_url=str(tmp_path), tokens={"t": "acme"})
    for public_details, shown in ((False, False), (True, True)):
        client = create_app(base.with_overrides(public_details=public_details)).test_client()
        pools = client.get("/readyz").get_json()["pools"]
        assert all(("workers" in pool) is shown for pool in pools.values()) and pools
