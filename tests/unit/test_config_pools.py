"""Settings, secret redaction and worker pool plans (no services)."""

from __future__ import annotations

import os

import pytest

from bigmodel.config import Settings, redact_url
from bigmodel.errors import ConfigError
from workers.pools import celery_argv, cpu_plan, gpu_plan


def test_defaults_and_overrides_from_env() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.store_url == "./var/store"
    s = Settings.from_env({"BIGMODEL_TOKENS": "acme:t1,beta:t2", "BIGMODEL_GPUS": "0,1"})
    assert s.tokens == {"t1": "acme", "t2": "beta"} and s.gpus == ("0", "1")
    assert s.visibility_timeout > s.task_time_limit
    with pytest.raises(ConfigError):
        Settings.from_env({"BIGMODEL_LEASE_SECONDS": "x"})


def test_password_never_shown() -> None:
    redacted = redact_url("redis://user:s3cret@redis.example:6380/1")
    assert "s3cret" not in redacted and redacted == "redis://user:***@redis.example:6380/1"
    assert "s3cret" not in Settings(redis_url="redis://:s3cret@h:1/0").redis_url_redacted


def test_gpu_pool_is_one_pinned_process_per_device() -> None:
    plans = gpu_plan(("0", "3"), None, None)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "3"]
    assert all(p.concurrency == 1 and p.queues == ("gpu",) for p in plans)
    assert plans[0].name.startswith("gpu0@") and plans[1].name.startswith("gpu3@")
    assert gpu_plan(("0",), "g", None)[0].name.startswith("g0@")
    assert cpu_plan(None, None, None).name.startswith(f"cpu-{os.getpid()}@")
    assert gpu_plan((), None, None) == []


def test_gpus_per_process_groups_devices_and_picks_the_queue_for_the_size() -> None:
    plans = gpu_plan(("0", "1", "2", "3", "4"), None, None, per_process=2)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0,1", "2,3", "4"]
    assert [p.queues for p in plans] == [("gpu2",), ("gpu2",), ("gpu",)]
    assert plans[1].name.startswith("gpu2-3@") and all(p.concurrency == 1 for p in plans)
    assert all(p.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for p in plans)


def test_cpu_pool_argv_prefork_and_autoscale() -> None:
    argv = celery_argv(cpu_plan(3, "c", ("cpu", "infer")))
    assert argv[argv.index("-P") + 1] == "prefork" and argv[argv.index("-c") + 1] == "3"
    assert argv[argv.index("-Q") + 1] == "cpu,infer"
    assert "--autoscale=4,1" in celery_argv(cpu_plan(None, None, None, "4,1"))


def test_gpu_pool_without_gpu_exits_2_with_a_reason() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "BIGMODEL_GPUS": ""}
    out = subprocess.run([sys.executable, "-m", "bigmodel.cli", "worker", "--pool", "gpu"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no GPU found" in out.stderr
