"""The log audit: once every other test has run, no log line of any stack of the run holds a token or a
Redis password.

It runs last (marked after_all) and stops every stack first, so that what processes print on the way
out, and what sat in their buffers, is read too. It cannot pass by reading nothing: it sends traffic of
its own through the secure stack (tokens, a password-protected Redis, workers logging at INFO), then
asserts that the run's logs hold those authenticated and refused requests and the workers' INFO lines
before it looks for any secret in them.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from bigmodel.config import parse_tokens
from tests.integration.conftest import Secure
from tests.services import Stack

pytestmark = pytest.mark.integration


def stack_secrets(stack: Stack) -> set[str]:
    """The tokens and Redis passwords a stack was given (through its environment or its redis-server)."""
    env = stack.env
    found = set(parse_tokens(env.get("BIGMODEL_TOKENS", ""))) | {env.get("BIGMODEL_TOKEN") or ""}
    found.add(urlsplit(env.get("BIGMODEL_REDIS_URL", "")).password or "")
    extra = list(getattr(stack.redis, "extra", ()))
    found |= {extra[i + 1] for i, arg in enumerate(extra[:-1]) if arg == "--requirepass"}
    return {s for s in found if s}


def logs_of(stack: Stack) -> dict[Path, str]:
    return {path: path.read_text(errors="replace") for path in sorted(stack.logs.glob("*.log"))}


@pytest.mark.after_all
def test_no_log_line_of_the_run_holds_a_token_or_a_password(secure: Secure) -> None:
    # Traffic of its own: an accepted job, a token with a real one inside it, the password as a token.
    acme = secure.auth("acme")
    job = requests.post(f"{secure.url}/v1/jobs", headers=acme, timeout=30,
                        json={"type": "ping", "params": {"steps": 2}}).json()["id"]
    assert requests.get(f"{secure.url}/v1/jobs/{job}?wait=60", headers=acme, timeout=90).json()["state"] \
        == "succeeded"
    for url, token in ((secure.urls[0], secure.tokens["acme"] + "x"), (secure.urls[1], secure.password)):
        assert requests.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {token}"},
                            timeout=30).status_code == 401
    for stack in Stack.instances:
        stack.stop()

    secrets = set().union(*(stack_secrets(stack) for stack in Stack.instances))
    logs = {path: text for stack in Stack.instances for path, text in logs_of(stack).items()}
    # Not vacuous: the secure stack's secrets are looked for, and its logs hold what it did.
    assert set(secure.secrets()) <= secrets
    mine = logs_of(secure.stack)
    assert {p.name for p, text in mine.items() if text} >= {"api.log", "api2.log", "worker.log", "infer.log"}
    api = mine[secure.stack.logs / "api.log"] + mine[secure.stack.logs / "api2.log"]
    assert re.search(r'"POST /v1/jobs HTTP/1.1" 202', api) and re.search(r'"GET /v1/jobs HTTP/1.1" 401', api)
    assert job in mine[secure.stack.logs / "worker.log"]  # the worker's INFO lines name the job
    leaks = [f"{path}:{n}: holds {'a token' if secret in secure.tokens.values() else 'a secret'}"
             for path, text in logs.items() for n, line in enumerate(text.splitlines(), 1)
             for secret in secrets if secret in line]
    assert not leaks, "\n".join(leaks[:20])
