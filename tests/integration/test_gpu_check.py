"""bench/gpu_check.sh with no GPU, its shell hygiene, and its driver end to end on injected devices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "bench" / "gpu_check.sh", ROOT / "bench" / "gpu_wheels.sh"]


def test_without_a_gpu_the_check_says_so_and_exits_0(tmp_path: Path) -> None:
    # A PATH with the basic tools and no nvidia-smi: the machine has no NVIDIA driver
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "grep", "dirname", "head", "tr"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    out = subprocess.run([str(SCRIPTS[0]), "--wheels", str(tmp_path)], capture_output=True, text=True,
                         env={"PATH": str(bin_dir)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no NVIDIA GPU here" in out.stdout and "TensorFlow" not in out.stdout  # stopped at once


def test_the_scripts_parse_their_arguments_and_pass_shellcheck() -> None:
    for script in SCRIPTS:
        bad = subprocess.run([str(script), "--no-such-flag"], capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "unknown argument" in bad.stderr
        assert "--" in subprocess.run([str(script), "--help"], capture_output=True, text=True,
                                      timeout=30).stdout
    wheels = subprocess.run([str(SCRIPTS[1])], capture_output=True, text=True, timeout=30)
    assert wheels.returncode == 2 and "--python-version is required" in wheels.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout


def test_the_check_trains_and_predicts_on_both_pools_and_prints_the_ratio(tmp_path: Path) -> None:
    # The GPU pool on an injected device runs on the CPU here; the queue path is the one a GPU takes
    env = {**os.environ, "BIGMODEL_GPUS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train (examples/s)" in out.stdout and "predict (rows/s)" in out.stdout
    assert "gpu worker: gpu0@" in out.stdout and "training on" in out.stdout
    assert (tmp_path / "latest.json").exists()
