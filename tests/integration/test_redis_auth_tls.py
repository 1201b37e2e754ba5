"""Given Redis with a password, or with TLS only, a job round trip works and the password is never logged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.test_jobs_http import submit, wait_for
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration

PASSWORD = "pw-Redis-s3cret-9b1"


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    run = lambda *a: subprocess.run(["openssl", *a], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bigmodel-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return {name: folder / f"{name}.pem" for name in ("ca", "server")} | {"key": folder / "server.key"}


def round_trip(server: RedisServer, store: Path, env: dict[str, str]) -> str:
    """Start the API and a worker on this Redis, run a ping job; return every log line they wrote."""
    stack = Stack(server, store, env=env)
    try:
        stack.start(cpu_workers=1, api_workers=1)
        job = submit(stack.url, {"type": "ping", "params": {"steps": 2}}).json()["id"]
        assert wait_for(stack.url, job)["state"] == "succeeded"
        ready = requests.get(f"{stack.url}/readyz", timeout=10)
        assert ready.status_code == 200 and PASSWORD not in ready.text
    finally:
        stack.stop()
    return "".join(p.read_text(errors="replace") for p in store.parent.glob("*.log"))


@pytest.mark.skipif(not RedisServer.available(), reason="needs the redis-server binary")
def test_password_protected_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", PASSWORD))
    server.url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    server.start()
    try:
        logs = round_trip(server, tmp_path / "s" / "store", {"BIGMODEL_REDIS_URL": server.url})
    finally:
        server.stop()
    assert logs and PASSWORD not in logs


@pytest.mark.skipif(not RedisServer.available(), reason="needs the redis-server binary")
def test_tls_only_redis(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server = RedisServer(tmp_path / "redis", extra=(
        "--port", "0", "--tls-port", "0", "--tls-cert-file", str(certs["server"]),
        "--tls-key-file", str(certs["key"]), "--tls-ca-cert-file", str(certs["ca"]),
        "--tls-auth-clients", "no", "--requirepass", PASSWORD))
    server.extra = (*server.extra[:2], "--tls-port", str(server.port), *server.extra[4:])
    server.url = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0"
    server.client_options = {"ssl_ca_certs": str(certs["ca"]), "ssl_cert_reqs": "required"}
    server.start()
    try:
        logs = round_trip(server, tmp_path / "s" / "store", {
            "BIGMODEL_REDIS_URL": server.url, "BIGMODEL_REDIS_TLS_CA": str(certs["ca"])})
    finally:
        server.stop()
    assert logs and PASSWORD not in logs
