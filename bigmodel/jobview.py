"""How a job reads to a person: a one-line summary of its outcome and a live progress bar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

FINISHED = ("succeeded", "failed", "cancelled")
MAIN_METRICS = ("accuracy", "r2", "mae", "f1_macro", "loss")


def short_id(job_id: str) -> str:
    """The first 12 characters: what tables show and what every verb accepts back."""
    return job_id[:12]


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one RFC 3339 time to another, or None when either is missing."""
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main_metric(metrics: dict[str, Any] | None, prefix: str = "") -> str:
    """'accuracy 0.97' (or r2, mae... whichever the task has), or ''."""
    for name in MAIN_METRICS:
        value = (metrics or {}).get(name)
        if isinstance(value, int | float):
            return f"{prefix}{name} {value:.4g}"
    return ""


def _outcome(job_type: str, result: dict[str, Any]) -> str:
    if job_type == "pipeline":
        train, ev = result.get("train") or {}, result.get("evaluate") or {}
        return ", ".join(p for p in (_outcome("train", train).split(",")[0],
                                     main_metric(ev.get("metrics"), "test_")) if p)
    if job_type == "train":
        return ", ".join(p for p in (f"model {result.get('model')} v{result.get('version')}",
                                     main_metric(result.get("metrics"), "val_")) if p)
    if job_type == "preprocess":
        rows = result.get("rows") or {}
        split = " / ".join(f"{n} {k}" for k, n in rows.items())
        return f"dataset {result.get('dataset')} ({split} rows)"
    if job_type in ("evaluate", "predict"):
        parts = [f"{result.get('model')} v{result.get('version')}"]
        if job_type == "evaluate":
            parts.append(main_metric(result.get("metrics")))
        elif result.get("predictions") is not None:
            parts.append(f"{len(result['predictions'])} predictions in the result")
        if result.get("artifact"):
            parts.append(f"{result['artifact']} ({result.get('rows')} rows)")
        speed = result.get("rows_per_second") or (result.get("metrics") or {}).get("rows_per_second")
        if speed:
            parts.append(f"{speed:,.0f} rows/s")
        return ", ".join(p for p in parts if p)
    if job_type == "ping":
        return f"answered by {result.get('worker')}"
    return ""


def summary(record: dict[str, Any]) -> str:
    """One line: 'succeeded in 6.1 s: model blobs v3, test_accuracy 0.97' or 'failed in ...: error'."""
    state = record["state"]
    took = (record.get("usage") or {}).get("wall_seconds")
    if took is None:
        took = seconds_between(record.get("started_at") or record.get("created_at"),
                               record.get("finished_at"))
    line = state if took is None else f"{state} in {took:.1f} s"
    if state == "succeeded":
        detail = _outcome(record["type"], record.get("result") or {})
    elif state in ("failed", "cancelled"):
        error = record.get("error") or {}
        detail = f"{error.get('type', state)}: {error.get('message', '')}".strip(": ")
    else:
        detail = (record.get("waiting") or {}).get("message") or ""
    return f"{line}: {detail}" if detail else line


class ProgressBar:
    """A live bar on stderr fed with a job's events; in a pipe, one plain line per step instead."""

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.label = short_id(job_id)
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                                 console=self.console, transient=True, disable=not self.live)
        self.task = self.progress.add_task(f"{self.label} queued", total=100)

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def _show(self, description: str, percent: float) -> None:
        self.progress.update(self.task, completed=percent, description=description)
        if not self.live:
            self.console.print(f"{description} {percent:.0f}%" if percent else description)

    def update(self, events: Iterable[dict[str, Any]]) -> None:
        """Show what these events say (progress, a stage starting, a state change)."""
        for event in events:
            data = event.get("data") or {}
            kind = event.get("type")
            if kind == "progress":
                metrics = " ".join(f"{k} {v:.4g}" for k, v in (data.get("metrics") or {}).items()
                                   if isinstance(v, int | float))
                where = data.get("stage") or ""
                if data.get("current") is not None and data.get("total"):
                    where += f" {data['current']}/{data['total']}"
                self._show(f"{self.label} {where} {metrics}".rstrip(), data.get("percent") or 0)
            elif kind == "log" and str(data.get("message", "")).endswith(" started"):
                # A pipeline stage starting: the label follows it before its first progress event.
                stage = str(data["message"]).removesuffix(" started").removeprefix("stage ")
                self._show(f"{self.label} {stage}", 0)
            elif kind == "state" and data.get("state") in ("running", "queued"):
                self._show(f"{self.label} {data['state']}", 0)
