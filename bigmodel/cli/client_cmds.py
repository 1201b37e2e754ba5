"""Verbs that talk to a running API: upload, datasets, submit, status, wait, jobs, cancel, logs, download,
models. Each takes --api-url and --token (from the environment by default) and --json for scripts."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bigmodel import sweeps
from bigmodel.cli import output as out
from bigmodel.client import ApiError, Client, Job
from bigmodel.config import DEFAULT_API_URL
from bigmodel.jobview import short_id, summary

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C


class Ctx:
    """What every client verb gets: a client and whether to print JSON."""

    def __init__(self, api_url: str, token: str | None, as_json: bool) -> None:
        self.client = Client(api_url, token or "")
        self.as_json = as_json


def client_command(func: Callable[..., None]) -> click.Command:
    """A click command with --api-url, --token and --json, whose API errors end in one clear line."""

    @click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
    @click.option("--token", envvar="BIGMODEL_TOKEN", show_envvar=True, default=None,
                  help="bearer token of your tenant")
    @click.option("--api-url", envvar="BIGMODEL_API_URL", show_envvar=True, default=DEFAULT_API_URL,
                  show_default=True, help="where the API listens")
    @functools.wraps(func)
    def wrapper(api_url: str, token: str | None, as_json: bool, **kwargs: Any) -> None:
        try:
            func(Ctx(api_url, token, as_json), **kwargs)
        except ApiError as exc:
            raise click.ClickException(str(exc)) from None

    command = click.command()(wrapper)
    # The shared options after the verb's own in --help (decorators put them first).
    command.params = command.params[3:] + command.params[2::-1]
    return command


def _params(text: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc.strerror}",
                                     param_hint="--params") from None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(params, dict):
        raise click.BadParameter("params must be a JSON object", param_hint="--params")
    for pair in pairs:  # -p train.epochs=5: a dotted path, a JSON value (or else a string)
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-p")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{part!r} is not an object in the params", param_hint="-p")
        node[last] = value
    return params


def _finish(ctx: Ctx, job: Job, progress: bool, timeout: float | None = None) -> None:
    """Wait for a job, print how it ended and exit 0 only if it succeeded; Ctrl-C leaves it running."""
    try:
        job.wait(progress=progress and not ctx.as_json, timeout=timeout, raise_on_failure=False)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; job {short_id(job.id)} goes on. Follow it again with "
                   f"`bigmodel wait {short_id(job.id)}` or `bigmodel logs {short_id(job.id)} -f`", err=True)
        sys.exit(INTERRUPTED)
    if ctx.as_json:
        out.emit_json(job.record)
    else:
        click.echo(job.summary())
    if job.state != "succeeded":
        sys.exit(1)


@client_command
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="a name for the dataset (default: the file's)")
@click.option("-q", "--quiet", is_flag=True, help="print only the dataset id")
def upload(ctx: Ctx, file: str, name: str | None, quiet: bool) -> None:
    """Upload a CSV or Parquet file as a dataset."""
    record = ctx.client.upload(file, name)
    if ctx.as_json:
        out.emit_json(record)
    elif quiet:
        click.echo(record["id"])
    else:
        click.echo(f"dataset {record['id']}: {record['name']}, {record['rows']} rows, "
                   f"{len(record['columns'])} columns ({out.size(record.get('size_bytes'))})")


@client_command
@click.argument("dataset_id", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
def datasets(ctx: Ctx, dataset_id: str | None, limit: int) -> None:
    """List datasets, or show one dataset's columns."""
    if dataset_id:
        record = ctx.client.dataset(dataset_id)
        if ctx.as_json:
            return out.emit_json(record)
        out.fields([("dataset", record["id"]), ("name", record.get("name")), ("kind", record.get("kind")),
                    ("rows", record.get("rows")), ("splits", record.get("splits")),
                    ("source", record.get("source")), ("created", record.get("created_at"))])
        return out.table(("COLUMN", "DTYPE"), [(c["name"], c["dtype"]) for c in record.get("columns", [])])
    items = ctx.client.datasets(limit)
    if ctx.as_json:
        return out.emit_json(items)
    out.table(("ID", "NAME", "KIND", "ROWS", "COLUMNS", "SIZE", "AGE"),
              [(d["id"], d.get("name"), d.get("kind", "raw"), d.get("rows"), len(d.get("columns", [])),
                out.size(d.get("size_bytes")), out.age(d.get("created_at"))) for d in items],
              empty="no datasets yet: `bigmodel upload FILE.csv`")


@client_command
@click.argument("type")
@click.option("--params", "params_text", default="{}", help="the job's params: JSON, or @file.json")
@click.option("-p", "pairs", multiple=True, metavar="KEY=VALUE",
              help="set one param (dotted keys, JSON values): -p train.epochs=5")
@click.option("--priority", default=5, show_default=True, type=click.IntRange(0, 9), help="9 runs first")
@click.option("--gpu", default=0, type=click.IntRange(0, 8), help="GPUs the job needs")
@click.option("--idempotency-key", default=None, help="the same key returns the first job")
@click.option("--wait", "wait_", is_flag=True, help="wait with a progress bar; exit 0 only on success")
@click.option("-q", "--quiet", is_flag=True, help="print only the job id")
def submit(ctx: Ctx, type: str, params_text: str, pairs: tuple[str, ...], priority: int, gpu: int,
           idempotency_key: str | None, wait_: bool, quiet: bool) -> None:
    """Submit a job of TYPE: preprocess, train, evaluate, predict, pipeline or ping."""
    job = ctx.client.submit(type, _params(params_text, pairs), priority=priority, gpu=gpu,
                            idempotency_key=idempotency_key)
    if quiet and not ctx.as_json:
        click.echo(job.id)
    elif not wait_:
        if ctx.as_json:
            return out.emit_json(job.record)
        waiting = (job.record.get("waiting") or {}).get("message")
        line = f"{type} job {job.id} {job.state} on {job.record['queue']}"
        click.echo(f"{line}: {waiting}" if waiting else line)
    if wait_:
        _finish(ctx, job, progress=not quiet)


@client_command
@click.argument("job_id")
def status(ctx: Ctx, job_id: str) -> None:
    """Show a job: state, progress, where it runs or why it waits, what it used, what it made."""
    record = ctx.client.job(job_id).record
    if ctx.as_json:
        return out.emit_json(record)
    progress = record.get("progress") or {}
    metrics = " ".join(f"{k} {v:.4g}" for k, v in (progress.get("metrics") or {}).items()
                       if isinstance(v, int | float))
    out.fields([
        ("job", record["id"]), ("type", record["type"]), ("state", summary(record)),
        ("queue", f"{record['queue']} (priority {record['priority']})"),
        ("worker", record.get("worker")), ("attempts", record.get("attempts") or None),
        ("progress", f"{out.percent(record)} {progress.get('stage') or ''} {metrics}".strip()),
        ("created", record.get("created_at")), ("started", record.get("started_at")),
        ("finished", record.get("finished_at")), ("usage", out.usage_line(record.get("usage"))),
        ("artifacts", ", ".join(f"{a['name']} ({out.size(a.get('size_bytes'))})"
                                for a in record.get("artifacts") or [])),
    ])
    if record["type"] == "sweep":
        _trials(ctx, record)


def _trials(ctx: Ctx, record: dict[str, Any]) -> None:
    """A sweep's trials: from its result once finished, from its children's records while they run."""
    result = record.get("result") or {}
    trials = result.get("trials")
    if trials is None and record.get("children"):
        children = [ctx.client.job(child).record for child in record["children"]]
        trials = [sweeps.trial(i, overrides, child) for i, (overrides, child)
                  in enumerate(zip(sweeps.trials_of(record["params"]), children, strict=False))]
    if not trials:
        return
    metric = result.get("metric") or record["params"].get("metric") or sweeps.default_metric(trials)
    best = (result.get("best") or {}).get("index")
    click.echo()
    out.table(out.trial_headers(metric), [out.trial_row(t, metric, best) for t in trials])


@client_command
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="give up waiting after this many seconds")
def wait(ctx: Ctx, job_id: str, timeout: float | None) -> None:
    """Wait for a job with a progress bar; exit 0 only if it succeeded."""
    _finish(ctx, ctx.client.job(job_id), progress=True, timeout=timeout)


@client_command
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--type", "type_", default=None, help="only jobs of this type")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
def jobs(ctx: Ctx, state: str | None, type_: str | None, limit: int) -> None:
    """List jobs, newest first."""
    items = ctx.client.jobs(state, type_, limit)
    if ctx.as_json:
        return out.emit_json(items)
    out.table(out.JOB_HEADERS, [out.job_row(j) for j in items],
              empty="no jobs yet: `bigmodel submit ping --wait` checks that a pool answers")


@client_command
@click.argument("job_id")
def cancel(ctx: Ctx, job_id: str) -> None:
    """Cancel a job: a queued job never starts, a running one stops at its next checkpoint."""
    job = ctx.client.job(job_id).cancel()
    if ctx.as_json:
        return out.emit_json(job.record)
    if job.state == "cancelled":
        click.echo(f"job {short_id(job.id)} cancelled before it started")
    else:
        click.echo(f"job {short_id(job.id)} asked to stop; it stops at its next checkpoint "
                   f"(`bigmodel wait {short_id(job.id)}` to see it end)")


def _event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    kind = event.get("type", "")
    if kind == "progress":
        metrics = " ".join(f"{k}={v:.4g}" for k, v in (data.get("metrics") or {}).items()
                           if isinstance(v, int | float))
        text = f"{data.get('stage', '')} {data.get('current')}/{data.get('total')} {metrics}".strip()
    elif kind == "log":
        text = str(data.get("message", ""))
    else:
        text = " ".join(f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in data.items())
    return f"{event.get('ts', '')}  {kind:<8} {text}"


@client_command
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="keep printing until the job ends")
def logs(ctx: Ctx, job_id: str, follow: bool) -> None:
    """Print a job's events: state changes, progress and log lines."""
    full = ctx.client.resolve(job_id)
    events = ctx.client.follow(full) if follow else iter(ctx.client.events(full))
    try:
        for event in events:
            if event.get("type") == "keepalive":
                continue
            click.echo(json.dumps(event) if ctx.as_json else _event_line(event))
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)


@client_command
@click.argument("job_id")
@click.argument("name")
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False), default=None,
              help="where to save it (default: NAME here)")
def download(ctx: Ctx, job_id: str, name: str, path: str | None) -> None:
    """Save an artifact of a job, e.g. predictions.parquet."""
    saved = ctx.client.download(ctx.client.resolve(job_id), name, path)
    click.echo(json.dumps({"path": str(saved)}) if ctx.as_json else f"saved {saved}")


@client_command
@click.argument("name", required=False)
@click.option("--alias", default=None, help="move this alias (such as production) to --version")
@click.option("--version", "version", type=int, default=None)
def models(ctx: Ctx, name: str | None, alias: str | None, version: int | None) -> None:
    """List models, show one's versions, or move an alias: `models blobs --alias production --version 3`."""
    client = ctx.client
    if alias:
        if not name or version is None:
            raise click.UsageError("--alias needs a model NAME and --version")
        moved = client.set_alias(name, alias, version)
        if ctx.as_json:
            return out.emit_json(moved)
        return click.echo(f"{name}: {alias} -> v{version} (was {moved['entry']['from'] or 'unset'})")
    if name:
        model = client.model(name)
        if ctx.as_json:
            return out.emit_json(model)
        return out.table(("VERSION", "METRIC", "ALIASES", "JOB", "AGE"),
                         [out.version_row(v, model["aliases"]) for v in reversed(model["versions"])])
    items = client.models()
    if ctx.as_json:
        return out.emit_json(items)
    out.table(("NAME", "LATEST", "PRODUCTION", "ALIASES"),
              [(m["name"], m.get("latest"), m.get("production"),
                ", ".join(f"{a}={v}" for a, v in sorted(m.get("aliases", {}).items()) if a != "latest"))
               for m in items], empty="no models yet: a train or pipeline job makes one")


COMMANDS = (upload, datasets, submit, status, wait, jobs, cancel, logs, download, models)

