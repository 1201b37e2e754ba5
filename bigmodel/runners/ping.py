"""The diagnostic ping job: echoes its params, optionally sleeping in steps or failing."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from bigmodel.errors import InvalidRequest
from bigmodel.jobs.context import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    """Sleep `sleep` seconds in `steps` steps (checking for cancel); return the params, fail or crash."""
    params = ctx.params
    if params.get("children"):
        return _fan_out(ctx, params["children"])
    steps = int(params.get("steps", 1))
    pause = float(params.get("sleep", 0.0)) / steps
    for step in range(1, steps + 1):
        ctx.check_cancelled(min_interval=0)
        if pause:
            time.sleep(pause)
        ctx.progress("step", step, steps)
    if params.get("crash"):  # a poison job: its process dies every time (recovery is bounded)
        os.kill(os.getpid(), signal.SIGKILL)
    if params.get("fail"):
        raise InvalidRequest(str(params["fail"]))
    if params.get("artifact"):
        ctx.add_artifact("ping.txt", str(params["artifact"]).encode())
    return {"echo": params, "worker": ctx.worker, "host": socket.gethostname(), "pid": os.getpid()}


def _fan_out(ctx: JobContext, children: list[dict[str, Any]]) -> dict[str, Any]:
    # The fan-out's own diagnostic: ping children, then a summary of how they ended.
    if ctx.children is None:
        ctx.fan_out([{"type": "ping", "params": c} for c in children])
    return {"children": [{"id": c["id"], "state": c["state"], "result": c["result"]} for c in ctx.children],
            "worker": ctx.worker}
