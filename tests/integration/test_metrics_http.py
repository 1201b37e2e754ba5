"""/metrics through two API processes: it parses with Prometheus's own text parser, both processes
answer for the whole system, and the counters move with the jobs that ran."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_jobs_http import submit, wait_for
from tests.services import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_api(stack, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Another API process on the stack's Redis and store."""
    other = Stack(stack.redis, stack.store)
    other.logs = tmp_path_factory.mktemp("second-api")
    try:
        other.spawn("api", "--port", str(other.port), "--workers", "1", log="api.log")
        other.wait_ready(pools=("cpu",))
        yield other.url
    finally:
        other.stop()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].count("charset") == 1
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_the_jobs_that_ran_on_either_api(stack, second_api: str) -> None:
    before = scrape(second_api)
    ok = [submit(stack.url, {"type": "ping", "params": {"n": i}}).json()["id"] for i in range(2)]
    bad = submit(stack.url, {"type": "ping", "params": {"fail": "on purpose"}}).json()["id"]
    assert [wait_for(stack.url, j)["state"] for j in (*ok, bad)] == ["succeeded", "succeeded", "failed"]
    for url in (stack.url, second_api):
        after = scrape(url)
        succeeded = ("bigmodel_jobs_total", {"type": "ping", "state": "succeeded"})
        assert value(after, succeeded[0], **succeeded[1]) - value(before, succeeded[0], **succeeded[1]) == 2
        failed = ("bigmodel_jobs_total", {"type": "ping", "state": "failed"})
        assert value(after, failed[0], **failed[1]) - value(before, failed[0], **failed[1]) == 1
        ran = "bigmodel_job_duration_seconds_count"
        assert value(after, ran, type="ping") - value(before, ran, type="ping") == 3
        assert value(after, "bigmodel_workers_online", pool="cpu") >= 1
        assert ("bigmodel_queue_oldest_age_seconds", (("queue", "gpu"),)) in after
        assert ("bigmodel_queue_depth", (("queue", "cpu"),)) in after
    # Submissions were answered by the first API's processes; each sends its counts within a second.
    deadline = time.monotonic() + 30
    submitted = "bigmodel_jobs_submitted_total"
    while value(scrape(second_api), submitted, type="ping", queue="cpu") - \
            value(before, submitted, type="ping", queue="cpu") < 3:
        assert time.monotonic() < deadline, "the first API's submissions never reached the second's scrape"
        time.sleep(0.5)
    assert value(scrape(second_api), "bigmodel_http_requests_total", method="POST", status="202") >= 3
