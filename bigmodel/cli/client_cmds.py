"""Commands that talk to a running API: upload, submit, status, wait, jobs, cancel, logs, models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bigmodel.client import ApiError, Client

FINAL = ("succeeded", "failed", "cancelled")


def _client() -> Client:
    return Client()


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _run(call: Any) -> Any:
    try:
        return call()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None


def _params(text: str) -> dict[str, Any]:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise click.BadParameter("params must be a JSON object")
    return value


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None)
def upload(file: str, name: str | None) -> None:
    """Upload a CSV or Parquet dataset; prints its record."""
    _print(_run(lambda: _client().upload(file, name)))


@click.command()
@click.argument("type")
@click.option("--params", "params_text", default="{}", help="JSON, or @file.json")
@click.option("--priority", default=5, type=click.IntRange(0, 9))
@click.option("--gpu", default=0, type=int)
@click.option("--idempotency-key", default=None)
@click.option("--wait", "wait_", is_flag=True, help="wait for the job to finish")
def submit(type: str, params_text: str, priority: int, gpu: int, idempotency_key: str | None,
           wait_: bool) -> None:
    """Submit a job of TYPE (preprocess, train, evaluate, predict, pipeline, ping)."""
    client = _client()
    record = _run(lambda: client.submit(type, _params(params_text), priority, gpu, idempotency_key))
    if wait_:
        record = _follow(client, record["id"])
        _print(record)
        sys.exit(0 if record["state"] == "succeeded" else 1)
    _print(record)


@click.command()
@click.argument("job_id")
def status(job_id: str) -> None:
    """Print a job's record."""
    _print(_run(lambda: _client().job(job_id)))


def _follow(client: Client, job_id: str) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(job_id[:12], total=100)
        try:
            for event in client.follow(job_id):
                data = event.get("data") or {}
                if event.get("type") == "progress":
                    metrics = " ".join(f"{k}={v:.4g}" for k, v in (data.get("metrics") or {}).items()
                                       if isinstance(v, int | float))
                    bar.update(task, completed=data.get("percent") or 0,
                               description=f"{job_id[:12]} {data.get('stage', '')} {metrics}".strip())
                elif event.get("type") == "state" and data.get("state") in FINAL:
                    break
        except ApiError:
            pass  # fall back to polling below
        record = _run(lambda: client.wait(job_id))
        if record["state"] == "succeeded":
            bar.update(task, completed=100)
    return record  # type: ignore[no-any-return]


@click.command()
@click.argument("job_id")
def wait(job_id: str) -> None:
    """Wait for a job with a progress bar; exit 0 if it succeeded."""
    record = _follow(_client(), job_id)
    _print(record)
    sys.exit(0 if record["state"] == "succeeded" else 1)


@click.command()
@click.option("--state", default=None)
@click.option("--type", "type_", default=None)
@click.option("--limit", default=20, type=int)
def jobs(state: str | None, type_: str | None, limit: int) -> None:
    """List jobs, newest first."""
    page = _run(lambda: _client().jobs(state, type_, limit))
    for job in page["items"]:
        pct = (job.get("progress") or {}).get("percent")
        click.echo(f"{job['id']}  {job['type']:<10} {job['state']:<10} "
                   f"{'' if pct is None else f'{pct:5.1f}%'}  {job['created_at']}")


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job."""
    _print(_run(lambda: _client().cancel(job_id)))


@click.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="stream until the job ends")
def logs(job_id: str, follow: bool) -> None:
    """Print a job's events (progress, logs, state changes)."""
    client = _client()
    events = client.follow(job_id) if follow else _run(lambda: client.events(job_id))
    for event in events:
        click.echo(f"{event.get('ts', '')} {event.get('type', ''):<8} {json.dumps(event.get('data'))}")


@click.command()
@click.argument("name", required=False)
@click.option("--alias", default=None, help="move this alias (with --version)")
@click.option("--version", "version", type=int, default=None)
def models(name: str | None, alias: str | None, version: int | None) -> None:
    """List models, show one, or move an alias: `bigmodel models NAME --alias production --version 3`."""
    client = _client()
    if name and alias:
        if version is None:
            raise click.UsageError("--alias needs --version")
        _print(_run(lambda: client.set_alias(name, alias, version)))
    elif name:
        _print(_run(lambda: client.model(name)))
    else:
        _print(_run(client.models))


COMMANDS = (upload, submit, status, wait, jobs, cancel, logs, models)
