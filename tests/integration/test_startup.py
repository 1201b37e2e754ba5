"""`bigmodel up` tells the truth: which Redis (and that it started one), where the store is, what pools run;
a busy port stops it before anything starts; known TensorFlow noise stays off a quiet worker's stderr."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.services import RedisServer, free_port

pytestmark = pytest.mark.integration


def up(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bigmodel.cli", "up", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "BIGMODEL_GPUS": ""})


def children(pid: int) -> list[str]:
    """The command lines of a process's children (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append((stat.parent / "cmdline").read_text().replace("\0", " "))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_a_busy_port_stops_up_before_anything_starts(redis_server, tmp_path: Path) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    client = redis.Redis.from_url(url)
    client.flushdb()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = up("--port", str(port), "--redis-url", url, cwd=tmp_path)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in output and f"--port {port + 1}" in output
    assert client.keys("*") == []  # no worker joined, nothing was queued


@pytest.mark.skipif(not RedisServer.available(), reason="needs the redis-server binary")
def test_up_says_which_redis_it_started_and_where_the_store_is_and_stops_it_all(tmp_path: Path) -> None:
    redis_port, api_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    proc = up("--port", str(api_port), "--redis-url", url, "--store", "var/here", "--cpu-workers", "0",
              "--infer-workers", "0", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and ready is None:
            try:
                ready = requests.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).json()
            except requests.RequestException:
                time.sleep(0.3)
        assert ready is not None and ready["checks"]["redis"] == "ok"
        assert ready["pools"] == {}
        assert [c for c in children(proc.pid) if "bigmodel.cli worker" in c] == []  # 0 workers: no pool
        assert any("gunicorn" in c for c in children(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert f"Redis   {url} (started here, data in var/redis" in output
    assert f"store   {tmp_path / 'var' / 'here'}" in output
    assert "pools   none: jobs wait until a worker joins" in output
    assert "Traceback" not in output
    with pytest.raises(redis.exceptions.ConnectionError):  # the Redis it started stopped with it
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_tensorflow_start_up_lines_are_dropped_and_the_rest_kept() -> None:
    script = textwrap.dedent("""
        import os, subprocess, sys
        from bigmodel.cli.quiet import drop_tensorflow_noise
        pump = drop_tensorflow_noise()
        noise = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
                 b"I0000 00:00:1795983251.056468   14035 port.cc:153] oneDNN custom operations are on.\\n")
        os.write(2, noise + b"a real warning\\n")
        subprocess.run([sys.executable, "-c", "import os; os.write(2, %r + b'from a child\\\\n')" % noise])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.stderr.decode().splitlines() == ["a real warning", "from a child"]
