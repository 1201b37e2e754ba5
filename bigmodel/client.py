"""The Python client of the HTTP API (the CLI is built on it; usable from notebooks and scripts).

    from bigmodel.client import Client
    client = Client("http://127.0.0.1:8000", token=None)
    dataset = client.upload("blobs.csv")
    job = client.pipeline(dataset["id"], label="label", model="blobs").wait(progress=True)
    print(job.summary())
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from bigmodel import jobview
from bigmodel.config import Settings
from bigmodel.errors import BigModelError

LONG_POLL_SECONDS = 30  # each ?wait= request; the server allows up to 60
RETRY_STATUSES = frozenset({502, 503, 504})


class ApiError(BigModelError):
    """The API answered with a problem (RFC 9457): `status`, `type`, `title`, `detail`, `errors`."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "error"
        errors = problem.get("errors") or []
        if errors:
            detail += "; " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status = status
        self.problem = problem
        self.type = problem.get("type", "about:blank")
        self.title = problem.get("title", "")
        self.detail = problem.get("detail", "")
        self.errors = errors


class ApiUnreachable(ApiError):
    """Nothing answers at the API's URL."""

    def __init__(self, url: str) -> None:
        super().__init__(0, {"title": "API unreachable", "detail": (
            f"cannot reach the bigmodel API at {url}. Start one with `make run` (or `bigmodel up`), "
            "or point --api-url / BIGMODEL_API_URL at a running one")})


class JobFailed(BigModelError):
    """A waited-for job ended failed or cancelled; `job` holds its record and `error` its error."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} {jobview.summary(job.record)}")
        self.job = job
        self.error = job.record.get("error") or {}


class WaitTimeout(BigModelError):
    """A job was still running when the wait's timeout ran out (the job goes on)."""


class Job:
    """A job on the server: its id and its record as last read."""

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self.client = client
        self.record = record
        self.id: str = record["id"]

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.record.get('type')} {self.state}>"

    @property
    def state(self) -> str:
        """queued, running, succeeded, failed or cancelled."""
        return str(self.record["state"])

    @property
    def finished(self) -> bool:
        """Whether the job reached a final state."""
        return self.state in jobview.FINISHED

    @property
    def result(self) -> Any:
        """The job's result (None until it succeeded)."""
        return self.record.get("result")

    def summary(self) -> str:
        """One line: how it ended (or why it waits) and what it made."""
        return jobview.summary(self.record)

    def refresh(self, wait: float = 0) -> Job:
        """Read the record again; with `wait`, the server answers once the job ends or after that long."""
        params = {"wait": wait} if wait else None
        self.record = self.client._call("GET", f"/v1/jobs/{self.id}", params=params,
                                        timeout=(5, self.client.timeout + wait))
        return self

    def wait(self, progress: bool = False, timeout: float | None = None,
             raise_on_failure: bool = True) -> Job:
        """Block until the job ends (long-polls ?wait=; with `progress`, a live bar from its events).

        Raises WaitTimeout when `timeout` seconds pass first (the job goes on) and JobFailed when it
        ends failed or cancelled, unless `raise_on_failure` is False.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if progress and not self.finished:
            with jobview.ProgressBar(self.id) as bar:
                try:
                    bar.update(self._events_until(deadline))
                except ApiError:
                    pass  # no event stream: the long polls below still end the wait
        while not self.finished:
            left = float(LONG_POLL_SECONDS)
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
            if left <= 0:
                raise WaitTimeout(f"job {self.id} is still {self.state} after {timeout} s; it goes on")
            self.refresh(wait=left)
        if raise_on_failure and self.state != "succeeded":
            raise JobFailed(self)
        return self

    def _events_until(self, deadline: float | None) -> Iterator[dict[str, Any]]:
        for event in self.client.follow(self.id):
            if event.get("type") == "state" and (event.get("data") or {}).get("state") in jobview.FINISHED:
                self.refresh()
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            if event.get("type") != "keepalive":
                yield event

    def events(self) -> list[dict[str, Any]]:
        """Every event so far (state changes, progress, log lines), oldest first."""
        return self.client.events(self.id)

    def cancel(self) -> Job:
        """Ask the job to stop: a queued job never starts, a running one stops at its next checkpoint."""
        self.record = self.client._call("POST", f"/v1/jobs/{self.id}/cancel")
        return self

    def download(self, name: str, path: str | Path | None = None) -> Path:
        """Save an artifact (e.g. predictions.parquet) to `path` (default: its name, here)."""
        return self.client.download(self.id, name, path)


class Client:
    """Talks to the API at `url` with a bearer `token` (defaults: BIGMODEL_API_URL, BIGMODEL_TOKEN)."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0,
                 retries: int = 3) -> None:
        settings = Settings.from_env() if url is None or token is None else None
        self.url = (url or (settings.api_url if settings else "")).rstrip("/")
        self.token = token if token is not None or settings is None else settings.token
        self.timeout = timeout
        self.retries = retries
        self.http = requests.Session()
        if self.token:
            self.http.headers["Authorization"] = f"Bearer {self.token}"

    # the one way requests are made --------------------------------------------------------
    def _send(self, method: str, path: str, idempotent: bool, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not idempotent
            try:
                response = self.http.request(method, self.url + path, **kwargs)
            except requests.ConnectionError:
                if last:
                    raise ApiUnreachable(self.url) from None
                time.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(min(float(response.headers.get("Retry-After") or 0.2 * 2**attempt), 5.0))
                continue
            if response.status_code >= 400:
                try:
                    problem = response.json()
                except ValueError:
                    problem = {"detail": response.text[:500]}
                raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
            return response
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        # GETs, and POSTs that carry an Idempotency-Key, are safe to send again after a lost answer.
        if idempotent is None:
            idempotent = method == "GET" or "Idempotency-Key" in (kwargs.get("headers") or {})
        response = self._send(method, path, idempotent, **kwargs)
        return response.json() if response.content else None

    # datasets -------------------------------------------------------------------------------
    def upload(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """Upload a CSV or Parquet file; returns the dataset record (same bytes: the same record)."""
        p = Path(path)
        with p.open("rb") as fh:
            data = {"name": name} if name else {}
            return self._call("POST", "/v1/datasets", files={"file": (p.name, fh)}, data=data,  # type: ignore[no-any-return]
                              timeout=max(self.timeout, 300))

    def datasets(self, limit: int = 50) -> list[dict[str, Any]]:
        """The tenant's datasets, newest first."""
        return self._call("GET", "/v1/datasets", params={"limit": limit})["items"]  # type: ignore[no-any-return]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """One dataset record."""
        return self._call("GET", f"/v1/datasets/{dataset_id}")  # type: ignore[no-any-return]

    # jobs ---------------------------------------------------------------------------------------
    def submit(self, type: str, params: dict[str, Any] | None = None, *, priority: int = 5, gpu: int = 0,
               idempotency_key: str | None = None) -> Job:
        """Submit a job; retried safely (an Idempotency-Key is made when none is given)."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        body = {"type": type, "params": params or {}, "priority": priority, "resources": {"gpu": gpu}}
        return Job(self, self._call("POST", "/v1/jobs", json=body, headers=headers))

    def preprocess(self, dataset: str, label: str, **params: Any) -> Job:
        """Clean, encode, normalise and split a raw dataset (params as in the API: normalize, split...)."""
        return self.submit("preprocess", {"dataset": dataset, "label": label, **params})

    def train(self, dataset: str, model: str | dict[str, Any], **params: Any) -> Job:
        """Train a model on a processed dataset; `model` is a name or a spec {"name", "hidden", ...}."""
        spec = {"name": model} if isinstance(model, str) else model
        return self.submit("train", {"dataset": dataset, "model": spec, **params})

    def pipeline(self, dataset: str, label: str, model: str | dict[str, Any], *,
                 preprocess: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                 evaluate: bool = True) -> Job:
        """Preprocess a raw dataset, train on it and evaluate, in one job."""
        spec = {"name": model} if isinstance(model, str) else model
        return self.submit("pipeline", {"dataset": dataset,
                                        "preprocess": {"label": label, **(preprocess or {})},
                                        "train": {"model": spec, **(train or {})}, "evaluate": evaluate})

    def predict(self, model: str, *, instances: list[Any] | None = None, dataset: str | None = None,
                version: int | str | None = None) -> Job:
        """Predictions for raw rows (in the result) or a dataset (a predictions.parquet artifact)."""
        params: dict[str, Any] = {"model": model}
        if instances is not None:
            params["instances"] = instances
        if dataset is not None:
            params["dataset"] = dataset
        if version is not None:
            params["version"] = version
        return self.submit("predict", params)

    def job(self, job_id: str) -> Job:
        """A job by its id or a unique prefix of it."""
        return Job(self, self._call("GET", f"/v1/jobs/{self.resolve(job_id)}"))

    def resolve(self, job_id: str) -> str:
        """The full id of a job given by a unique prefix (a full id is returned as it is)."""
        if len(job_id) == 32:
            return job_id
        items = self._call("GET", "/v1/jobs", params={"prefix": job_id.lower(), "limit": 5})["items"]
        if len(items) == 1:
            return str(items[0]["id"])
        if not items:
            raise ApiError(404, {"title": "Not found", "detail": f"no job id starts with {job_id!r}"})
        ids = ", ".join(i["id"] for i in items)
        raise ApiError(409, {"title": "Ambiguous id", "detail": f"{job_id!r} starts several job ids: {ids}"})

    def jobs(self, state: str | None = None, type: str | None = None,
             limit: int = 20) -> list[dict[str, Any]]:
        """Job records, newest first."""
        params = {k: v for k, v in {"state": state, "type": type, "limit": limit}.items() if v}
        return self._call("GET", "/v1/jobs", params=params)["items"]  # type: ignore[no-any-return]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event of a job so far."""
        return self._call("GET", f"/v1/jobs/{job_id}/events", params={"follow": 0})["items"]  # type: ignore[no-any-return]

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """A job's events as they happen (Server-Sent Events) until it ends; keepalives as such."""
        response = self._send("GET", f"/v1/jobs/{job_id}/events", True, stream=True, timeout=(5, 60))
        with response:
            for raw in response.iter_lines(decode_unicode=True):
                line = raw if isinstance(raw, str) else raw.decode()
                if line.startswith("data: "):
                    event = json.loads(line[len("data: "):])
                    if event:
                        yield event
                elif line.startswith(": keepalive"):
                    yield {"type": "keepalive"}

    def download(self, job_id: str, name: str, path: str | Path | None = None) -> Path:
        """Save a job's artifact to `path` (default: the artifact's name in the current folder)."""
        target = Path(path or name.rsplit("/", 1)[-1])
        response = self._send("GET", f"/v1/jobs/{job_id}/artifacts/{name}", True, stream=True)
        with response, target.open("wb") as fh:
            for block in response.iter_content(1 << 16):
                fh.write(block)
        return target

    # models -------------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """The tenant's models with their latest and production versions."""
        return self._call("GET", "/v1/models")["items"]  # type: ignore[no-any-return]

    def model(self, name: str) -> dict[str, Any]:
        """One model: versions (with metrics), aliases and their history."""
        return self._call("GET", f"/v1/models/{name}")  # type: ignore[no-any-return]

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point an alias (such as production) at a version."""
        return self._call("POST", f"/v1/models/{name}/aliases/{alias}", json={"version": version})  # type: ignore[no-any-return]
