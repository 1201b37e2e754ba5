"""The README's tour runs as written against the stack: the shell tour (CLI and curl) and the Python one,
from a clean folder that has only the project's .venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
VENV = Path(sys.prefix)


def tour(language: str) -> list[str]:
    """The README's code blocks fenced as '```<language> tour', in order."""
    return [body for lang, body in re.findall(r"```(\w+) tour\n(.*?)```", README.read_text(), re.S)
            if lang == language]


@pytest.fixture
def clean_folder(tmp_path: Path) -> Path:
    if not (VENV / "bin" / "bigmodel").exists():
        pytest.skip(f"tests run outside the project's .venv ({VENV} has no bin/bigmodel)")
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


def run(stack, folder: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "BIGMODEL_API_URL": stack.url}
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=420)


def test_the_shell_tour_runs_as_written(stack, clean_folder: Path) -> None:
    if not (shutil.which("bash") and shutil.which("curl")):
        pytest.skip("the tour needs bash and curl")
    if "infer" not in stack.wait_ready(("cpu",)).get("pools", {}):  # `make run` starts one serving process
        stack.spawn("worker", "--pool", "infer", "--loglevel", "WARNING", log="infer.log")
        stack.wait_ready(("cpu", "infer"))
    blocks = tour("sh")
    assert len(blocks) == 2
    out = run(stack, clean_folder, ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"^succeeded in [\d.]+ s: model tour v\d+, test_accuracy", out.stdout, re.M)
    assert '"label": "yes"' in out.stdout and '"label": "no"' in out.stdout  # status --json of the answer
    assert (clean_folder / "predictions.parquet").stat().st_size > 0
    assert "tour: production -> v1" in out.stdout
    assert re.search(r'^bigmodel_jobs_total\{state="succeeded",type="pipeline"\} \d', out.stdout, re.M)
    online = re.search(r'^\{"predictions": ?\[\[([\d.e-]+)\], ?\[([\d.e-]+)\]\]', out.stdout, re.M)
    assert online and float(online.group(1)) > 0.5 > float(online.group(2)), out.stdout[-2000:]


def test_the_python_client_runs_the_readme_tour(stack, clean_folder: Path) -> None:
    (code,) = tour("python")
    out = run(stack, clean_folder, [sys.executable, "-c", code])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"^succeeded in [\d.]+ s: model tour-py v1, test_accuracy", out.stdout, re.M)
    assert "['yes', 'no']" in out.stdout and "500 rows scored" in out.stdout
