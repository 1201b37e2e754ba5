"""The CLI verbs talk HTTP to a running API (the stack)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BIGMODEL_API_URL": stack.url}
    return subprocess.run([sys.executable, "-m", "bigmodel.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_submit_wait_status_jobs_cancel(stack, tmp_path) -> None:
    out = cli(stack, "submit", "ping", "--params", '{"steps": 2, "tag": "cli"}', "--wait")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout[out.stdout.index("{"):])
    assert record["state"] == "succeeded" and record["result"]["echo"]["tag"] == "cli"
    status = json.loads(cli(stack, "status", record["id"]).stdout)
    assert status["id"] == record["id"]
    assert record["id"] in cli(stack, "jobs", "--type", "ping").stdout
    refused = cli(stack, "cancel", record["id"])
    assert refused.returncode != 0 and "409" in refused.stderr
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    uploaded = json.loads(cli(stack, "upload", str(csv)).stdout)
    assert uploaded["rows"] == 2
    bad = cli(stack, "submit", "ping", "--params", "[1]")
    assert bad.returncode != 0 and "JSON object" in bad.stderr
