"""The deployment files, checked without a Docker engine: compose services, the Dockerfile, the packaging."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from bigmodel.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if str(s.get("image", "")).startswith("bigmodel:")}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def settings_variables() -> set[str]:
    """Every BIGMODEL_* variable that Settings reads (the one place that reads the environment)."""
    return set(re.findall(r'"(BIGMODEL_[A-Z0-9_]+)"', (ROOT / "bigmodel" / "config.py").read_text()))


def check_argv(group: click.Group, argv: list[str], where: str) -> None:
    """argv names a real subcommand of `group`, and every option it passes exists with a valid value."""
    command = group.commands.get(argv[0])
    assert command is not None, f"{where}: `bigmodel {argv[0]}` is not a command"
    params = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    args = iter(argv[1:])
    for arg in args:
        name, _, inline = arg.partition("=")
        assert name in params, f"{where}: `bigmodel {argv[0]}` has no option {name}"
        param = params[name]
        if getattr(param, "is_flag", False):
            continue
        value = inline or next(args)
        param.type.convert(value, param, None)  # raises BadParameter for a value the CLI would refuse


def test_every_service_is_there_with_a_healthcheck() -> None:
    assert {"redis", "minio", "minio-bucket", "api", "worker-cpu", "worker-gpu", "worker-infer",
            "flower"} <= set(SERVICES)
    for name, service in SERVICES.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_our_services_run_real_entry_points() -> None:
    stages = re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "Dockerfile").read_text(), re.M)
    for name, service in OURS.items():
        target = service["build"]["target"]
        assert target in stages and service["image"] == f"bigmodel:{target}"
        if name == "worker-infer" and "infer" not in cli.commands["worker"].params[0].type.choices:
            continue  # the infer pool arrives with the online-serving work; checked once it is there
        check_argv(cli, service["command"], name)
        test = service["healthcheck"]["test"]
        if test[1:4] == ["python", "-m", "workers.healthcheck"]:
            module = importlib.import_module("workers.healthcheck")
            with pytest.raises(SystemExit) as bad:
                module.main(["--no-such-option"])
            assert bad.value.code == 2
            assert test[4:6] == ["--pool", service["command"][2]]  # it checks the pool the service runs
    assert re.search(r'^ENTRYPOINT \["bigmodel"\]', (ROOT / "Dockerfile").read_text(), re.M)


def test_the_worker_infer_service_names_a_real_pool() -> None:
    choices = cli.commands["worker"].params[0].type.choices
    if "infer" not in choices:
        pytest.skip("`bigmodel worker --pool infer` lands with the online-serving branch")
    check_argv(cli, SERVICES["worker-infer"]["command"], "worker-infer")


def test_every_variable_the_code_needs_is_set_and_every_one_set_is_read() -> None:
    known = settings_variables()
    for name, service in OURS.items():
        env = service["environment"]
        needed = {"BIGMODEL_REDIS_URL", "BIGMODEL_STORE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY"} | ({"BIGMODEL_TOKENS"} if name == "api" else set())
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        unknown = {k for k in env if k.startswith("BIGMODEL_")} - known
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
    # Every ${VAR} the compose file needs is documented in .env.example
    example = (ROOT / ".env.example").read_text()
    needed_vars = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    assert needed_vars and all(re.search(rf"^{v}=", example, re.M) for v in needed_vars
                               if v != "BIGMODEL_GPUS_PER_PROCESS")


def test_the_store_is_minio_and_its_bucket_is_made_first() -> None:
    bucket_cmd = " ".join(SERVICES["minio-bucket"]["entrypoint"])
    for service in OURS.values():
        env = service["environment"]
        store = urlsplit(env["BIGMODEL_STORE_URL"])
        assert store.scheme == "s3" and f"mb --ignore-existing store/{store.netloc}" in bucket_cmd
        assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "minio"
        assert env["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD")
        assert service["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert urlsplit(INTERPOLATION.sub("pw", env["BIGMODEL_REDIS_URL"])).hostname == "redis"


def test_redis_keeps_an_append_only_file_behind_a_password_from_the_environment() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and '--requirepass "$$REDIS_PASSWORD"' in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")  # no default password
    for name, service in OURS.items():
        assert "${REDIS_PASSWORD:?" in service["environment"]["BIGMODEL_REDIS_URL"], name
    assert "${REDIS_PASSWORD:?" in SERVICES["flower"]["environment"]["CELERY_BROKER_URL"]


def test_cpu_workers_scale_and_gpu_workers_reserve_nvidia_devices() -> None:
    cpu = SERVICES["worker-cpu"]
    assert "container_name" not in cpu and "ports" not in cpu
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["build"]["target"] == "gpu" and gpu["command"][:3] == ["worker", "--pool", "gpu"]


def test_each_image_installs_exactly_one_tensorflow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("tensorflow")]
    extras = project["optional-dependencies"]
    assert all(d.startswith("tensorflow-cpu") or d.startswith("tensorflow>") for d in extras["cpu"])
    assert extras["gpu"] == [d for d in extras["gpu"] if d.startswith("tensorflow[and-cuda]")]
    stages = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)
    installs = {s.split()[2]: re.findall(r'pip install "\.\[([a-z,]+)\]"', s) for s in stages
                if " AS " in s.split("\n")[0]}
    assert installs["cpu"] == ["cpu"] and installs["gpu"] == ["gpu"]
    assert "[cpu,dev]" in (ROOT / "Makefile").read_text()


def test_the_keda_scaler_watches_every_priority_list_of_the_cpu_queue() -> None:
    from bigmodel.jobs.presence import queue_keys

    docs = list(yaml.safe_load_all((ROOT / "docs" / "keda" / "worker-cpu-scaledobject.yaml").read_text()))
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"]
    assert sorted(lists) == sorted(queue_keys("cpu"))  # kombu's priority lists, as the workers read them
    assert all(t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"])
