"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against the stack:
live jobs with moving progress bars, training curves with one point per epoch, a tenant's token kept for
the session, the waiting explanation, and nothing requested from anywhere but the API itself."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.test_jobs_http import submit, wait_for
from tests.integration.test_ml_pipeline_http import separable_csv
from tests.services import Stack

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test-output" / "dashboard"


class Browser:
    """A chromium page that remembers every request and every console error."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def check_clean(self, url: str) -> None:
        """No console error, and no request to any origin but the API's."""
        assert self.errors == []
        hosts = {urlsplit(u).netloc for u in self.requests if not u.startswith(("data:", "blob:"))}
        assert hosts == {urlsplit(url).netloc}, hosts


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (make test does when it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    yield Browser(context.new_page())
    context.close()


def test_jobs_page_lists_a_job_whose_progress_bar_moves(stack, browser: Browser) -> None:
    job = submit(stack.url, {"type": "ping", "params": {"sleep": 6, "steps": 10}}).json()["id"]
    browser.page.goto(stack.url + "/", wait_until="domcontentloaded")
    row = f'#jobs tr[data-job="{job}"]'
    browser.page.wait_for_selector(row, timeout=30_000)
    seen: list[float] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen.append(float(browser.page.get_attribute(f"{row} .bar", "data-percent") or 0))
        if browser.page.get_attribute(row, "data-state") == "succeeded":
            break
        time.sleep(0.3)
    moving = sorted({p for p in seen if 0 < p < 100})
    assert len(moving) >= 2, seen  # the bar showed the job part-way at least twice
    assert seen == sorted(seen)  # and only ever moved forward
    browser.page.wait_for_selector(f'{row}[data-state="succeeded"] .bar[data-percent="100"]', timeout=30_000)
    browser.shot("jobs")
    browser.check_clean(stack.url)


def test_a_finished_training_job_draws_one_point_per_epoch(stack, browser: Browser) -> None:
    payload, _ = separable_csv(200, seed=3)
    dataset = requests.post(f"{stack.url}/v1/datasets", files={"file": ("curves.csv", payload)},
                            timeout=30).json()["id"]
    epochs = 8
    job = submit(stack.url, {"type": "pipeline", "params": {
        "dataset": dataset, "preprocess": {"label": "label"},
        "train": {"model": {"name": "curves", "hidden": [8]}, "epochs": epochs, "learning_rate": 0.02},
    }}).json()["id"]
    assert wait_for(stack.url, job, timeout=240)["state"] == "succeeded"
    browser.page.goto(f"{stack.url}/#/jobs/{job}", wait_until="domcontentloaded")
    for chart, series in (("loss", "loss"), ("loss", "val_loss"), ("accuracy", "accuracy"),
                          ("accuracy", "val_accuracy")):
        points = f'figure[data-chart="{chart}"] g[data-series="{series}"] circle'
        browser.page.wait_for_selector(points, timeout=30_000)
        assert browser.page.locator(points).count() == epochs, (chart, series)
    assert browser.page.locator("#events tr").count() >= epochs  # the events list came too
    browser.shot("training-job")
    browser.page.goto(f"{stack.url}/#/models/curves", wait_until="domcontentloaded")
    browser.page.click('#versions tr[data-version="1"] button')  # promote from the models page
    browser.page.wait_for_selector('#versions tr[data-version="1"] button[disabled]', timeout=30_000)
    aliases = requests.get(f"{stack.url}/v1/models/curves", timeout=10).json()["aliases"]
    assert aliases["production"] == 1
    browser.shot("model")
    browser.page.goto(f"{stack.url}/#/pools", wait_until="domcontentloaded")
    browser.page.wait_for_selector('.pill[data-pool="cpu"]', timeout=30_000)
    browser.check_clean(stack.url)


def test_curves_are_drawn_from_the_epoch_events_as_they_arrive(stack, browser: Browser) -> None:
    # A training job stopped part-way has no history in a result: every point comes from its events,
    # the same path the page takes while a job runs.
    payload, _ = separable_csv(400, seed=4)
    dataset = requests.post(f"{stack.url}/v1/datasets", files={"file": ("live.csv", payload)},
                            timeout=30).json()["id"]
    job = submit(stack.url, {"type": "pipeline", "params": {
        "dataset": dataset, "preprocess": {"label": "label"},
        "train": {"model": {"name": "live", "hidden": [8]}, "epochs": 500, "batch_size": 4}}}).json()["id"]
    browser.page.goto(f"{stack.url}/#/jobs/{job}", wait_until="domcontentloaded")
    points = 'figure[data-chart="loss"] g[data-series="loss"] circle'
    browser.page.wait_for_selector(points, timeout=120_000)  # drawn while the job runs
    assert requests.post(f"{stack.url}/v1/jobs/{job}/cancel", timeout=10).status_code == 202
    assert wait_for(stack.url, job, timeout=60)["state"] == "cancelled"
    events = requests.get(f"{stack.url}/v1/jobs/{job}/events", params={"follow": 0}, timeout=10).json()
    epochs = {e["data"]["current"] for e in events["items"]
              if e["type"] == "progress" and e["data"]["stage"] == "train.epoch"}
    browser.page.wait_for_selector('.state-cancelled', timeout=30_000)
    assert 0 < len(epochs) < 500
    assert browser.page.locator(points).count() == len(epochs)
    browser.check_clean(stack.url)


@pytest.fixture(scope="module")
def api_with_tokens(redis_server, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """An API that wants tokens and has no worker: its jobs wait, and say why."""
    root = tmp_path_factory.mktemp("tokens")
    api = Stack(redis_server, root / "store", env={"BIGMODEL_TOKENS": "acme:s3cret"})
    # A database of its own on the same server: the shared stack's workers never see these jobs.
    api.env["BIGMODEL_REDIS_URL"] = redis_server.url.rsplit("/", 1)[0] + "/1"
    try:
        api.spawn("api", "--port", str(api.port), "--workers", "1", log="api.log")
        api.wait_ready(pools=())
        yield api
    finally:
        api.stop()


def test_a_token_entered_once_serves_the_session_and_waiting_jobs_say_why(api_with_tokens,
                                                                          browser: Browser) -> None:
    url = api_with_tokens.url
    job = requests.post(f"{url}/v1/jobs", json={"type": "ping", "params": {}, "resources": {"gpu": 1}},
                        headers={"Authorization": "Bearer s3cret"}, timeout=10).json()["id"]
    page = browser.page
    page.goto(url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#token-needed", timeout=30_000)  # asked for, before any request fails
    page.fill("#token-input", "s3cret")
    page.click("#token-save")
    page.wait_for_selector(f'#jobs tr[data-job="{job}"]', timeout=30_000)
    page.click(f'#jobs tr[data-job="{job}"] a')
    page.wait_for_selector("#waiting", timeout=30_000)
    assert "no GPU worker is online" in page.inner_text("#waiting")
    assert "gpu_unavailable" in page.inner_text("#waiting")
    page.reload(wait_until="domcontentloaded")  # the token is kept for the browser session
    page.wait_for_selector("#waiting", timeout=30_000)
    assert page.evaluate("sessionStorage.getItem('bigmodel.token')") == "s3cret"
    assert page.evaluate("localStorage.length") == 0  # never kept beyond the session
    browser.shot("waiting")
    browser.check_clean(url)
    requests.post(f"{url}/v1/jobs/{job}/cancel", headers={"Authorization": "Bearer s3cret"}, timeout=10)


def test_the_index_answers_json_to_api_clients_and_the_dashboard_to_browsers(stack) -> None:
    for accept in (None, "*/*", "application/json"):
        r = requests.get(stack.url + "/", headers={"Accept": accept} if accept else {}, timeout=10)
        assert r.headers["Content-Type"].startswith("application/json"), accept
        assert r.json()["docs"] == "/openapi.json" and r.json()["auth"] == "none"
    page = requests.get(stack.url + "/", headers={"Accept": "text/html,*/*;q=0.8"}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html") and "/ui/app.js" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "http" not in csp
    assert requests.get(stack.url + "/ui/app.js", timeout=10).status_code == 200
    for sneaky in ("/ui/../jobs.py", "/ui/%2e%2e/jobs.py", "/ui/nothing.js"):
        assert requests.get(stack.url + sneaky, timeout=10).status_code == 404, sneaky
