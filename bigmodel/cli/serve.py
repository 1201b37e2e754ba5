"""Commands that run the system: `up` (everything), `api`, `worker`."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import click
import redis

from bigmodel.cli.quiet import drop_tensorflow_noise
from bigmodel.config import KERAS_BACKENDS, Settings
from bigmodel.connections import redis_client
from bigmodel.network import is_loopback


def _settings(redis_url: str | None = None, store: str | None = None) -> Settings:
    settings = Settings.from_env()
    changes = {k: v for k, v in {"redis_url": redis_url, "store_url": store}.items() if v}
    return settings.with_overrides(**changes) if changes else settings


def redis_answers(settings: Settings) -> bool:
    """Whether a Redis server answers at the settings' URL."""
    try:
        return bool(redis_client(settings, timeout=1).ping())
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


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (checked before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# What `up` keeps quiet unless -v: TensorFlow's C++ log lines, Celery's banner and root warning,
# gunicorn's start-up and access lines.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--cpu-workers", type=int, default=None,
              help="CPU pool processes (default: one per core; 0: no CPU pool)")
@click.option("--infer-workers", type=int, default=1, show_default=True, help="serving processes (0: none)")
@click.option("--gpu-workers", default="auto", show_default=True, help="'auto', or how many GPUs to use")
@click.option("--redis-url", default=None, help="default: BIGMODEL_REDIS_URL")
@click.option("--store", default=None, help="default: BIGMODEL_STORE_URL")
@click.option("-v", "--verbose", is_flag=True, help="show TensorFlow, Celery and gunicorn logs too")
def up(host: str, port: int, cpu_workers: int | None, infer_workers: int, gpu_workers: str,
       redis_url: str | None, store: str | None, verbose: bool) -> None:
    """Run the API and the worker pools in the foreground; Ctrl-C stops them all."""
    from bigmodel.threads import plan as plan_threads
    from workers.pools import detect_gpus, supervise

    settings = _settings(redis_url, store)
    _refuse_open_bind(host, settings)
    if not port_free(host, port):  # before anything starts: a second `up` must not half-join the first
        raise click.ClickException(f"port {port} on {host} is in use (another `bigmodel up`?): stop it, or "
                                   f"pick another port: `bigmodel up --port {port + 1}` / "
                                   f'`make run ARGS="--port {port + 1}"`')
    quiet = [] if verbose else ["--loglevel", "WARNING"]
    env = {"BIGMODEL_REDIS_URL": settings.redis_url, "BIGMODEL_STORE_URL": settings.store_url,
           **({} if verbose else QUIET_ENV)}
    gpus = detect_gpus(settings) if gpu_workers == "auto" else tuple(str(i) for i in range(int(gpu_workers)))
    cpu_processes = (os.cpu_count() or 1) if cpu_workers is None else cpu_workers
    # Every pool shares this machine: split its cores over all their processes, not pool by pool.
    share = plan_threads(max(1, cpu_processes + infer_workers + len(gpus)), override=settings.threads)
    env["BIGMODEL_THREADS"] = str(share.intra)
    commands: list[tuple[list[str], dict[str, str]]] = []
    redis_note = "already running"
    if not redis_answers(settings):
        cmd = redis_command(settings.redis_url, Path("var/redis"))
        if cmd is None:
            raise click.ClickException(f"no Redis answers at {settings.redis_url_redacted} and none can be "
                                       "started here (install redis-server or set BIGMODEL_REDIS_URL)")
        redis_note = "started here, data in var/redis, stopped with the rest"
        commands.append((cmd + [q.lower() for q in quiet], {}))  # first started, last stopped
    me = [sys.executable, "-m", "bigmodel.cli"]
    commands.append(([*me, "api", "--host", host, "--port", str(port), *(["--quiet"] if quiet else [])], env))
    pools = []
    if cpu_workers != 0:
        sized = ["--concurrency", str(cpu_workers)] if cpu_workers else []
        commands.append(([*me, "worker", "--pool", "cpu", *quiet, *sized], env))
        pools.append(f"cpu ({cpu_workers or os.cpu_count()} processes)")
    if gpus:
        commands.append(([*me, "worker", "--pool", "gpu", *quiet], {**env, "BIGMODEL_GPUS": ",".join(gpus)}))
        pools.append(f"gpu ({len(gpus)} GPU{'s' if len(gpus) > 1 else ''})")
    elif gpu_workers == "auto":
        pools.append("no gpu pool (no GPU found)")
    if infer_workers > 0:
        serving = [*me, "worker", "--pool", "infer", "--concurrency", str(infer_workers), *quiet]
        commands.append((serving, env))
        pools.append(f"infer ({infer_workers} serving process{'es' if infer_workers > 1 else ''})")
    if cpu_workers == 0 and not gpus:
        pools.insert(0, "none: jobs wait until a worker joins")
    click.echo("\n".join((
        "bigmodel up",
        f"  API     http://{host}:{port}  (the dashboard is at /, the API's description at /openapi.json)",
        f"  Redis   {settings.redis_url_redacted} ({redis_note})",
        f"  store   {store_location(settings.store_url)}",
        f"  pools   {', '.join(pools)}",
        "  Ctrl-C stops everything" + ("" if verbose else "; -v shows every piece's logs"))))
    # Pools stop first and get their hand-over time; then the API; then the Redis we started.
    sys.exit(supervise(commands, stop_timeout=settings.handover_seconds + 15))


def store_location(url: str) -> str:
    """Where the store is, as a person would look for it (an absolute folder for a local path)."""
    return url if "://" in url else str(Path(url).resolve())


def _refuse_open_bind(host: str, settings: Settings) -> None:
    if not is_loopback(host) and not settings.auth_enabled:
        click.echo(f"refusing to bind {host} without tokens: set BIGMODEL_TOKENS or BIGMODEL_TOKENS_FILE, "
                   "or bind 127.0.0.1", err=True)
        sys.exit(2)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "http_workers", default=2, show_default=True, type=int)
@click.option("--threads", default=64, show_default=True, type=int,
              help="threads per process: each long poll (?wait=) or event stream holds one while it waits")
@click.option("--quiet", is_flag=True, help="log only warnings (no access log)")
def api(host: str, port: int, http_workers: int, threads: int, quiet: bool) -> None:
    """Run the HTTP API under gunicorn."""
    _refuse_open_bind(host, Settings.from_env())
    argv = [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", f"{host}:{port}",
            "--worker-class", "gthread", "--workers", str(http_workers), "--threads", str(threads),
            "--timeout", "120", "--graceful-timeout", "10"]
    argv += ["--log-level", "warning"] if quiet else ["--access-logfile", "-"]
    os.execv(sys.executable, argv)


@click.command()
@click.option("--pool", type=click.Choice(["cpu", "gpu", "infer"]), default="cpu", show_default=True)
@click.option("--concurrency", type=int, default=None,
              help="processes (cpu pool: default one per core; infer pool: default 1)")
@click.option("--autoscale", default=None, help="MAX,MIN processes (cpu pool)")
@click.option("--name", default=None, help="node name (default: cpu@host / gpuN@host / infer@host)")
@click.option("--queues", default=None, help="comma-separated queues (default: the pool's)")
@click.option("--warm", default=None, help="infer pool: models to load at start (tenant/name,...)")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--gpus-per-process", type=click.IntRange(min=1), default=None,
              help="GPUs each gpu-pool process gets (default: BIGMODEL_GPUS_PER_PROCESS or 1)")
@click.option("--backend", type=click.Choice(KERAS_BACKENDS), default=None,
              help="Keras backend (default: BIGMODEL_KERAS_BACKEND or tensorflow)")
@click.option("--device", default=None, hidden=True)
def worker(pool: str, concurrency: int | None, autoscale: str | None, name: str | None,
           queues: str | None, warm: str | None, loglevel: str, gpus_per_process: int | None,
           backend: str | None, device: str | None) -> None:
    """Run a worker pool: prefork on CPU, one pinned process per GPU (or group), or serving processes."""
    from workers.pools import (
        NO_GPU_EXIT,
        cpu_plan,
        detect_gpus,
        gpu_plan,
        infer_plan,
        node_name,
        run_serving,
        run_worker,
        supervise,
        use_backend,
    )

    settings = Settings.from_env()
    if backend:
        settings = settings.with_overrides(keras_backend=backend)
    use_backend(settings.keras_backend)  # before anything imports keras: prefork and pool children inherit it
    if loglevel.upper() not in ("DEBUG", "INFO"):
        drop_tensorflow_noise()
    qs = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None
    if pool == "infer" or (qs and "infer" in qs):
        if pool != "infer" or (qs and qs != ("infer",)):
            raise click.UsageError("the infer queue is served by `bigmodel worker --pool infer` alone")
        if warm:
            settings = settings.with_overrides(infer_warm=tuple(w for w in warm.split(",") if w))
        sys.exit(run_serving(infer_plan(concurrency, name, settings.threads), settings, loglevel))
    if pool == "cpu":
        run_worker(cpu_plan(concurrency, name, qs, autoscale, settings.threads), "cpu", settings, loglevel)
        return
    devices = tuple(device.split(",")) if device is not None else detect_gpus(settings)
    if not devices:
        click.echo(f"no GPU found ({settings.keras_backend} sees none and BIGMODEL_GPUS is unset): "
                   "not starting a gpu pool",
                   err=True)
        sys.exit(NO_GPU_EXIT)
    if device is not None:  # one child of the pool, given its devices
        plan = gpu_plan(devices, name, qs, per_process=len(devices), threads=settings.threads)[0]
        run_worker(replace(plan, name=node_name(name, "gpu0")), "gpu", settings, loglevel)
        return
    plans = gpu_plan(devices, name, qs, gpus_per_process or settings.gpus_per_process, settings.threads)
    me = [sys.executable, "-m", "bigmodel.cli", "worker", "--pool", "gpu", "--loglevel", loglevel]
    commands = []
    for plan in plans:
        argv = [*me, "--device", plan.env["CUDA_VISIBLE_DEVICES"], "--name", plan.name]
        commands.append((argv + (["--queues", queues] if queues else []), plan.env))
    sys.exit(supervise(commands, stop_timeout=settings.handover_seconds + 10, together=True))


COMMANDS = (up, api, worker)
