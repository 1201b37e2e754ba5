"""What the client verbs print: short tables with headers for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from bigmodel.jobview import main_metric, short_id


def console() -> Console:
    """A console for stdout: the terminal's width, or wide enough not to cut columns in a pipe."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def emit_json(value: Any) -> None:
    """Print a value as JSON (the --json output of every verb)."""
    click.echo(json.dumps(value, indent=2))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "nothing yet") -> None:
    """Print rows under their headers (or a line saying there is nothing)."""
    if not rows:
        click.echo(empty)
        return
    out = Table(*headers, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console().print(out)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print 'name  value' lines for the values that are set."""
    out = Table(box=None, show_header=False, pad_edge=False)
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for name, value in pairs:
        if value not in (None, "", [], {}):
            out.add_row(name, str(value))
    console().print(out)


def size(n: int | float | None) -> str:
    """Bytes for people: 512 B, 1.2 MB."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def age(when: str | None) -> str:
    """How long ago an RFC 3339 time was: 12s, 5m, 3h, 2d."""
    if not when:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(when)).total_seconds()
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def percent(record: dict[str, Any]) -> str:
    """The job's progress as '40%' (blank before any)."""
    value = (record.get("progress") or {}).get("percent")
    return "" if value is None else f"{value:.0f}%"


def usage_line(usage: dict[str, Any] | None) -> str:
    """'wall 6.1 s, CPU 9.8 s, peak RSS 412.0 MB, 1.2 MB written' from a job's usage."""
    if not usage:
        return ""
    parts = [f"wall {usage['wall_seconds']:.1f} s", f"CPU {usage['cpu_seconds']:.1f} s",
             f"peak RSS {size(usage.get('peak_rss_bytes'))}"]
    if usage.get("peak_gpu_bytes") is not None:
        parts.append(f"peak GPU memory {size(usage['peak_gpu_bytes'])}")
    parts.append(f"{size(usage.get('store_bytes_written'))} written to the store")
    return ", ".join(parts)


def job_row(job: dict[str, Any]) -> list[Any]:
    """One line of the jobs table."""
    error = job.get("error") or {}
    waiting = (job.get("waiting") or {}).get("message")
    note = f"{error.get('type')}: {error.get('message')}" if error else waiting
    return [short_id(job["id"]), job["type"], job["state"], job["queue"], percent(job),
            age(job.get("created_at")), job.get("worker") or "", (note or "")[:80]]


JOB_HEADERS = ("ID", "TYPE", "STATE", "QUEUE", "PROGRESS", "AGE", "WORKER", "ERROR / WAITING")


def version_row(version: dict[str, Any], aliases: dict[str, int]) -> list[Any]:
    """One line of a model's versions table."""
    names = ", ".join(sorted(a for a, v in aliases.items() if v == version["version"]))
    return [version["version"], main_metric(version.get("metrics")), names,
            short_id(version.get("job") or ""), age(version.get("created_at"))]


def trial_headers(metric: str) -> tuple[str, ...]:
    """The columns of a sweep's trials table (the metric it ranks by is one)."""
    return ("TRIAL", "STATE", "PARAMS", metric.upper(), "MODEL", "JOB", "ERROR")


def trial_row(trial: dict[str, Any], metric: str, best: int | None) -> list[Any]:
    """One line of a sweep's trials table; the best trial's number is starred."""
    value = (trial.get("metrics") or {}).get(metric)
    error = trial.get("error") or {}
    return [f"{trial['index']}{' *' if trial['index'] == best else ''}", trial.get("state"),
            " ".join(f"{k}={json.dumps(v)}" for k, v in (trial.get("overrides") or {}).items()),
            "" if value is None else f"{value:.4g}",
            f"{trial['model']} v{trial['version']}" if trial.get("version") is not None else "",
            short_id(trial.get("job") or ""),
            (f"{error.get('type')}: {error.get('message')}" if error else "")[:80]]
