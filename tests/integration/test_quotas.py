"""Per-tenant quotas and fair turns on a real stack: two API processes, a two-process pool, two tenants.

The flooding tenant holds its running cap and gets 429 past its queued cap, counted in Redis across
both API processes; the calm tenant's job starts at the next free process, ahead of the backlog.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import _wait_healthy
from tests.services import Stack, free_port

QUEUED_CAP, RUNNING_CAP, PROCESSES = 6, 2, 2
JOB_SECONDS = 2.0  # L: how long each of the flood's jobs holds a process


@pytest.fixture(scope="module")
def fair(redis_server, tmp_path_factory) -> Iterator[tuple[Stack, list[str], dict[str, dict[str, str]]]]:
    root = tmp_path_factory.mktemp("quotas")
    tokens = {t: f"tok-{t}-{secrets.token_hex(8)}" for t in ("flood", "calm")}
    stack = Stack(redis_server, root / "store", env={
        "BIGMODEL_TOKENS": ",".join(f"{t}:{k}" for t, k in tokens.items()),
        "BIGMODEL_TENANT_MAX_QUEUED": str(QUEUED_CAP), "BIGMODEL_TENANT_MAX_RUNNING": str(RUNNING_CAP)})
    try:
        stack.start(cpu_workers=PROCESSES, api_workers=1)
        port = free_port()
        stack.spawn("api", "--port", str(port), "--workers", "1", log="api2.log")
        _wait_healthy(f"http://127.0.0.1:{port}")
        auth = {t: {"Authorization": f"Bearer {k}"} for t, k in tokens.items()}
        yield stack, [stack.url, f"http://127.0.0.1:{port}"], auth
    finally:
        stack.stop()


def test_a_flood_holds_its_caps_and_another_tenant_starts_at_the_next_free_process(fair) -> None:
    stack, urls, auth = fair
    ping = {"type": "ping", "params": {"sleep": JOB_SECONDS, "steps": 4}}
    accepted, refused = [], []
    for i in range(20):  # alternating between the two API processes
        answer = requests.post(f"{urls[i % 2]}/v1/jobs", json=ping, headers=auth["flood"], timeout=10)
        (accepted if answer.status_code == 202 else refused).append(answer)
        if len(refused) >= 2:
            break
    assert [r.status_code for r in refused] == [429, 429], [r.text for r in refused]
    assert {r.url.split("/v1")[0] for r in refused} == set(urls)  # both processes count the same queue
    body = refused[0].json()
    assert body["limit"] == "tenant_queued" and body["max"] == QUEUED_CAP
    assert body["setting"] == "BIGMODEL_TENANT_MAX_QUEUED" and int(refused[0].headers["Retry-After"]) > 0
    # Counted once for both processes: at most the queued cap plus what already started.
    assert QUEUED_CAP <= len(accepted) <= QUEUED_CAP + RUNNING_CAP

    listing = requests.get(f"{urls[0]}/v1/jobs?state=queued", headers=auth["flood"], timeout=10).json()
    reasons = {j["waiting"]["reason"] for j in listing["items"]}
    assert "tenant_quota" in reasons, listing["items"][:2]

    calm = requests.post(f"{urls[1]}/v1/jobs", json={"type": "ping", "params": {}}, headers=auth["calm"],
                         timeout=10).json()
    most_running, calm_record = 0, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = requests.get(f"{urls[0]}/v1/jobs?state=running", headers=auth["flood"], timeout=10).json()
        most_running = max(most_running, len(running["items"]))
        calm_record = requests.get(f"{urls[0]}/v1/jobs/{calm['id']}", headers=auth["calm"], timeout=10).json()
        if calm_record["state"] == "succeeded":
            break
        time.sleep(0.1)
    assert calm_record is not None and calm_record["state"] == "succeeded", calm_record
    waited = _seconds(calm_record["started_at"]) - _seconds(calm_record["created_at"])
    # The next free process: within one flood job's length (and some slack for a loaded machine),
    # not after the flood's backlog (at least two more rounds of JOB_SECONDS).
    assert waited < JOB_SECONDS + 1.5, f"the calm tenant's job waited {waited:.1f} s"
    still_queued = [j for j in requests.get(f"{urls[0]}/v1/jobs?state=queued", headers=auth["flood"],
                                            timeout=10).json()["items"]]
    assert len(still_queued) >= 2, "the flood's backlog was not still waiting: nothing was overtaken"
    assert most_running <= RUNNING_CAP


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
