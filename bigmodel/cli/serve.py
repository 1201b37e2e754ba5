"""Commands that run the system: `up` (everything), `api`, `worker`."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import click
import redis

from bigmodel.config import Settings

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings(redis_url: str | None = None, store: str | None = None) -> Settings:
    settings = Settings.from_env()
    changes = {k: v for k, v in {"redis_url": redis_url, "store_url": store}.items() if v}
    return settings.with_overrides(**changes) if changes else settings


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at the URL."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def redis_command(url: str, data_dir: Path) -> list[str] | None:
    """The command that starts a local redis-server for this URL, or None when we should not."""
    parts = urlsplit(url)
    binary = shutil.which("redis-server")
    if binary is None or not is_loopback(parts.hostname or "") or parts.password:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    # The settings the failure model needs: every accepted job on disk within a second, never evicted.
    return [binary, "--port", str(parts.port or 6379), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
            "--save", ""]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--cpu-workers", type=int, default=None, help="CPU pool processes (default: one per core)")
@click.option("--gpu-workers", default="auto", show_default=True, help="'auto', or how many GPUs to use")
@click.option("--redis-url", default=None, help="default: BIGMODEL_REDIS_URL")
@click.option("--store", default=None, help="default: BIGMODEL_STORE_URL")
def up(host: str, port: int, cpu_workers: int | None, gpu_workers: str, redis_url: str | None,
       store: str | None) -> None:
    """Run the API and the worker pools in the foreground; Ctrl-C stops them all."""
    from workers.pools import detect_gpus, supervise

    settings = _settings(redis_url, store)
    _refuse_open_bind(host, settings)
    env = {"BIGMODEL_REDIS_URL": settings.redis_url, "BIGMODEL_STORE_URL": settings.store_url}
    commands: list[tuple[list[str], dict[str, str]]] = []
    if not redis_answers(settings.redis_url):
        cmd = redis_command(settings.redis_url, Path("var/redis"))
        if cmd is None:
            raise click.ClickException(f"no Redis answers at {settings.redis_url_redacted} and none can be "
                                       "started here (install redis-server or set BIGMODEL_REDIS_URL)")
        click.echo(f"no Redis at {settings.redis_url_redacted}: starting redis-server (data in var/redis)")
        commands.append((cmd, {}))  # first started, last stopped
    me = [sys.executable, "-m", "bigmodel.cli"]
    commands.append(([*me, "api", "--host", host, "--port", str(port)], env))
    cpu = [*me, "worker", "--pool", "cpu"] + (["--concurrency", str(cpu_workers)] if cpu_workers else [])
    commands.append((cpu, env))
    gpus = detect_gpus(settings) if gpu_workers == "auto" else tuple(str(i) for i in range(int(gpu_workers)))
    if gpus:
        commands.append(([*me, "worker", "--pool", "gpu"], {**env, "BIGMODEL_GPUS": ",".join(gpus)}))
    click.echo(f"bigmodel: API on http://{host}:{port}, cpu pool" + (f", gpu pool on {len(gpus)} GPU(s)"
                                                                    if gpus else " (no GPU found)"))
    # Pools stop first and get their hand-over time; then the API; then the Redis we started.
    sys.exit(supervise(commands, stop_timeout=settings.handover_seconds + 15))


def _refuse_open_bind(host: str, settings: Settings) -> None:
    if not is_loopback(host) and not settings.auth_enabled:
        click.echo(f"refusing to bind {host} without tokens: set BIGMODEL_TOKENS or BIGMODEL_TOKENS_FILE, "
                   "or bind 127.0.0.1", err=True)
        sys.exit(2)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "http_workers", default=2, show_default=True, type=int)
@click.option("--threads", default=16, show_default=True, type=int)
def api(host: str, port: int, http_workers: int, threads: int) -> None:
    """Run the HTTP API under gunicorn."""
    _refuse_open_bind(host, Settings.from_env())
    argv = [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", f"{host}:{port}",
            "--worker-class", "gthread", "--workers", str(http_workers), "--threads", str(threads),
            "--timeout", "120", "--graceful-timeout", "10", "--access-logfile", "-"]
    os.execv(sys.executable, argv)


@click.command()
@click.option("--pool", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--concurrency", type=int, default=None, help="processes (cpu pool; default: one per core)")
@click.option("--autoscale", default=None, help="MAX,MIN processes (cpu pool)")
@click.option("--name", default=None, help="node name (default: cpu@host / gpuN@host)")
@click.option("--queues", default=None, help="comma-separated queues (default: the pool's)")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--device", default=None, hidden=True)
def worker(pool: str, concurrency: int | None, autoscale: str | None, name: str | None,
           queues: str | None, loglevel: str, device: str | None) -> None:
    """Run a worker pool: prefork on CPU, or one pinned process per GPU."""
    from workers.pools import (
        NO_GPU_EXIT,
        cpu_plan,
        detect_gpus,
        gpu_plan,
        node_name,
        run_worker,
        supervise,
    )

    settings = Settings.from_env()
    qs = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None
    if pool == "cpu":
        run_worker(cpu_plan(concurrency, name, qs, autoscale), "cpu", settings, loglevel)
        return
    devices = (device,) if device is not None else detect_gpus(settings)
    if not devices:
        click.echo("no GPU found (TensorFlow sees none and BIGMODEL_GPUS is unset): not starting a gpu pool",
                   err=True)
        sys.exit(NO_GPU_EXIT)
    plans = gpu_plan(devices, name, qs)
    if device is not None:
        run_worker(replace(plans[0], name=node_name(name, "gpu0")), "gpu", settings, loglevel)
        return
    me = [sys.executable, "-m", "bigmodel.cli", "worker", "--pool", "gpu", "--loglevel", loglevel]
    commands = []
    for i, plan in enumerate(plans):
        argv = [*me, "--device", devices[i], "--name", plan.name] + (["--queues", queues] if queues else [])
        commands.append((argv, plan.env))
    sys.exit(supervise(commands, stop_timeout=settings.handover_seconds + 10, together=True))


COMMANDS = (up, api, worker)
