"""A small Python client of the HTTP API (used by the CLI; usable from notebooks)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from bigmodel.config import Settings
from bigmodel.errors import BigModelError


class ApiError(BigModelError):
    """The API answered with a problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "error"
        errors = problem.get("errors") or []
        if errors:
            detail += "; " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.problem = problem


class Client:
    """Talks to BIGMODEL_API_URL with BIGMODEL_TOKEN."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        settings = Settings.from_env() if url is None else None
        self.url = (url or (settings.api_url if settings else "")).rstrip("/")
        self.token = token if token is not None else (settings.token if settings else None)
        self.timeout = timeout
        self.http = requests.Session()
        if self.token:
            self.http.headers["Authorization"] = f"Bearer {self.token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.http.request(method, self.url + path, **kwargs)
        except requests.ConnectionError:
            raise ApiError(0, {"detail": f"cannot reach the API at {self.url}"}) from None
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise ApiError(response.status_code, problem)
        return response.json() if response.content else None

    def upload(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """Upload a CSV or Parquet file."""
        p = Path(path)
        with p.open("rb") as fh:
            data = {"name": name} if name else {}
            return self._call("POST", "/v1/datasets", files={"file": (p.name, fh)}, data=data,  # type: ignore[no-any-return]
                              timeout=max(self.timeout, 300))

    def submit(self, type: str, params: dict[str, Any], priority: int = 5, gpu: int = 0,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"type": type, "params": params, "priority": priority, "resources": {"gpu": gpu}}
        return self._call("POST", "/v1/jobs", json=body, headers=headers)  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        """A job record."""
        return self._call("GET", f"/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def jobs(self, state: str | None = None, type: str | None = None, limit: int = 20) -> dict[str, Any]:
        """A page of jobs, newest first."""
        params = {k: v for k, v in {"state": state, "type": type, "limit": limit}.items() if v}
        return self._call("GET", "/v1/jobs", params=params)  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job."""
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event so far."""
        return self._call("GET", f"/v1/jobs/{job_id}/events", params={"follow": 0})["items"]  # type: ignore[no-any-return]

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Stream events (SSE) until the job ends."""
        with self.http.get(f"{self.url}/v1/jobs/{job_id}/events", stream=True, timeout=(5, 120)) as resp:
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, resp.json())
            for line in resp.iter_lines(decode_unicode=True):
                if line and line.startswith("data: "):
                    event = json.loads(line[len("data: "):])
                    if event:
                        yield event

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Poll until the job is finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record["state"] in ("succeeded", "failed", "cancelled"):
                return record
            if deadline is not None and time.monotonic() > deadline:
                return record
            time.sleep(poll)

    def artifact(self, job_id: str, name: str) -> bytes:
        """An artifact's bytes."""
        response = self.http.get(f"{self.url}/v1/jobs/{job_id}/artifacts/{name}", timeout=self.timeout)
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json())
        return response.content

    def models(self) -> dict[str, Any]:
        """The tenant's models."""
        return self._call("GET", "/v1/models")  # type: ignore[no-any-return]

    def model(self, name: str) -> dict[str, Any]:
        """One model with its versions and aliases."""
        return self._call("GET", f"/v1/models/{name}")  # type: ignore[no-any-return]

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Move an alias to a version."""
        return self._call("POST", f"/v1/models/{name}/aliases/{alias}", json={"version": version})  # type: ignore[no-any-return]
