"""The CLI verbs against the running stack: progress and one summary line, exit codes, short ids, tables,
JSON for scripts, and a wait that Ctrl-C ends without touching the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.services import free_port

pytestmark = pytest.mark.integration


def cli(url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BIGMODEL_API_URL": url}
    return subprocess.run([sys.executable, "-m", "bigmodel.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_submit_wait_prints_progress_and_one_summary_line(stack) -> None:
    out = cli(stack.url, "submit", "ping", "-p", "steps=3", "-p", "sleep=0.6", "-p", "tag=cli", "--wait")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("succeeded in ") and "answered by" in lines[0]
    assert "step 1/3" in out.stderr and "step 3/3" in out.stderr  # progress, on stderr


def test_a_failing_job_exits_non_zero_with_its_error(stack) -> None:
    out = cli(stack.url, "submit", "ping", "--params", '{"fail": "deliberate"}', "--wait")
    assert out.returncode == 1
    assert out.stdout.strip().startswith("failed in ") and "invalid_input: deliberate" in out.stdout


def test_short_ids_json_and_tables(stack) -> None:
    job_id = cli(stack.url, "submit", "ping", "-q").stdout.strip()
    assert len(job_id) == 32
    waited = cli(stack.url, "wait", job_id[:8], "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "succeeded"
    status = json.loads(cli(stack.url, "status", job_id[:10], "--json").stdout)
    assert status["id"] == job_id and status["usage"]["wall_seconds"] >= 0
    human = cli(stack.url, "status", job_id[:6]).stdout
    assert job_id in human and "succeeded in" in human and "peak RSS" in human
    table = cli(stack.url, "jobs", "--type", "ping").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "TYPE", "STATE"] and any(job_id[:12] in line for line in table)
    listed = json.loads(cli(stack.url, "jobs", "--json", "--limit", "3").stdout)
    assert isinstance(listed, list) and len(listed) <= 3
    refused = cli(stack.url, "cancel", job_id[:8])
    assert refused.returncode == 1 and "409" in refused.stderr and "already succeeded" in refused.stderr
    unknown = cli(stack.url, "status", "ffffffffff")
    assert unknown.returncode == 1 and "no job id starts with" in unknown.stderr


def test_datasets_models_and_bad_params(stack, tmp_path) -> None:
    csv = tmp_path / "tiny.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    dataset_id = cli(stack.url, "upload", str(csv), "-q").stdout.strip()
    assert len(dataset_id) == 64
    table = cli(stack.url, "datasets").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "KIND"] and any(dataset_id in line for line in table)
    assert json.loads(cli(stack.url, "datasets", dataset_id, "--json").stdout)["rows"] == 2
    models = cli(stack.url, "models")
    assert models.returncode == 0 and ("NAME" in models.stdout or "no models yet" in models.stdout)
    bad = cli(stack.url, "submit", "ping", "--params", "[1]")
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    missing = cli(stack.url, "submit", "pipeline", "--params", "@nowhere.json")
    assert missing.returncode == 2 and "cannot read nowhere.json" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unreachable_api_says_where_it_looked_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = cli(url, "jobs")
    assert out.returncode == 1
    assert url in out.stderr and "make run" in out.stderr and "Traceback" not in out.stderr


def test_ctrl_c_during_a_wait_leaves_the_job_running(stack) -> None:
    job = requests.post(f"{stack.url}/v1/jobs", json={"type": "ping", "params": {"sleep": 20, "steps": 20}},
                        timeout=10).json()
    env = {**os.environ, "BIGMODEL_API_URL": stack.url}
    waiting = subprocess.Popen([sys.executable, "-m", "bigmodel.cli", "wait", job["id"][:12]], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while requests.get(f"{stack.url}/v1/jobs/{job['id']}", timeout=5).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2)  # the CLI is inside its wait by now
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 130
        assert "goes on" in err and f"bigmodel wait {job['id'][:12]}" in err
        assert requests.get(f"{stack.url}/v1/jobs/{job['id']}", timeout=5).json()["state"] == "running"
    finally:
        waiting.kill()
        requests.post(f"{stack.url}/v1/jobs/{job['id']}/cancel", timeout=5)
