"""Safe by default: tenant names checked at load, loopback only without tokens, nothing executable loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from api import create_app
from bigmodel.config import Settings
from bigmodel.connections import tls_options
from bigmodel.errors import ConfigError
from bigmodel.ml.models import load_model


@pytest.mark.parametrize("bad", ["../x:tok", "a b:tok", ".hidden:tok", "x" * 65 + ":tok"])
def test_tenant_names_in_tokens_are_checked_when_settings_load(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid tenant name"):
        Settings.from_env({"BIGMODEL_TOKENS": bad})
    assert Settings.from_env({"BIGMODEL_TOKENS": "acme-1:tok"}).tokens == {"tok": "acme-1"}


def test_create_app_without_tokens_serves_loopback_clients_only(tmp_path: Path) -> None:
    client = create_app(Settings(store_url=str(tmp_path))).test_client()
    for remote in ("10.1.2.3", "192.168.0.9", "2001:db8::1"):
        refused = client.get("/healthz", environ_base={"REMOTE_ADDR": remote})
        assert refused.status_code == 403 and "BIGMODEL_TOKENS" in refused.get_json()["detail"]
    for local in ("127.0.0.1", "::1"):
        assert client.get("/healthz", environ_base={"REMOTE_ADDR": local}).status_code == 200


def test_create_app_with_tokens_serves_any_client_that_authenticates(tmp_path: Path) -> None:
    client = create_app(Settings(store_url=str(tmp_path), tokens={"tok": "acme"})).test_client()
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_cli_refuses_a_public_bind_without_tokens() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGMODEL_TOKEN")}
    for verb in ("api", "up"):
        out = subprocess.run([sys.executable, "-m", "bigmodel.cli", verb, "--host", "0.0.0.0"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "refusing to bind 0.0.0.0 without tokens" in out.stderr


def test_rediss_urls_verify_the_server_certificate() -> None:
    assert tls_options(Settings(redis_url="redis://h:1/0")) == {}
    options = tls_options(Settings(redis_url="rediss://h:1/0", redis_tls_ca="/ca.pem"))
    assert options == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"}


def test_a_keras_file_asking_for_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(2,))
    # A Lambda carries Python bytecode: loading it would run code of the file's author.
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "evil.keras")
    with pytest.raises(ValueError, match="(?i)unsafe|lambda"):
        load_model(tmp_path / "evil.keras")
    ok = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
    ok.save(tmp_path / "ok.keras")
    assert load_model(tmp_path / "ok.keras")(np.zeros((1, 2), np.float32)).shape == (1, 1)
