"""The secure stack: several tenants' tokens, a password-protected Redis, two API processes, both pools.

One per test run (it is what the tenant matrix, the rate limits and the log audit are proved against);
its workers log at INFO so that the audit has every line they can write to read.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.services import RedisServer, Stack, free_port

SUBMIT_RATE = 12  # per hour and tenant: far above what the matrix submits, quickly reached by a flood
INFER_RATE = 12
TENANTS = ("acme", "beta", "flood", "calm")


@dataclass
class Secure:
    """The stack, its second API process, each tenant's token and the Redis password."""

    stack: Stack
    urls: tuple[str, str]  # two API processes on the same Redis
    tokens: dict[str, str]  # tenant -> token
    password: str

    @property
    def url(self) -> str:
        """The first API process."""
        return self.urls[0]

    def auth(self, tenant: str) -> dict[str, str]:
        """The Authorization header of a tenant."""
        return {"Authorization": f"Bearer {self.tokens[tenant]}"}

    def secrets(self) -> list[str]:
        """Every token and the password: what no log line, error body, /readyz or /metrics may hold."""
        return [*self.tokens.values(), self.password]


def _wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API at {url} did not come up")


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    if not RedisServer.available():
        pytest.skip("needs the redis-server binary")
    root = tmp_path_factory.mktemp("secure")
    password = f"pw-{secrets.token_hex(12)}"  # random: a hit in a log can only be a leak
    tokens = {t: f"tok-{t}-{secrets.token_hex(12)}" for t in TENANTS}
    server = RedisServer(root / "redis", extra=("--requirepass", password))
    server.url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    server.start()
    stack = Stack(server, root / "store", env={
        "BIGMODEL_TOKENS": ",".join(f"{tenant}:{token}" for tenant, token in tokens.items()),
        "BIGMODEL_RATE_SUBMIT": f"{SUBMIT_RATE}/hour", "BIGMODEL_RATE_INFER": f"{INFER_RATE}/hour"})
    try:
        stack.start(cpu_workers=1, pools=("cpu", "infer"), api_workers=2, loglevel="INFO")
        port = free_port()
        stack.spawn("api", "--port", str(port), "--workers", "1", log="api2.log")
        _wait_healthy(f"http://127.0.0.1:{port}")
        yield Secure(stack, (stack.url, f"http://127.0.0.1:{port}"), tokens, password)
    finally:
        stack.stop()
        server.stop()
