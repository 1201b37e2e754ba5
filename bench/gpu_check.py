"""Train and serve through the queue on the GPU pool and on the CPU pool; print both throughputs.

    python -m bench.gpu_check [--quick] [--out DIR]

Run by bench/gpu_check.sh on a machine with an NVIDIA GPU (it prepares the environment first). It starts
a private redis-server (from PATH), the API, a one-process CPU pool and a GPU pool, then runs the same
train and predict jobs once with `resources.gpu: 0` and once with `resources.gpu: 1`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from bench.support import run_job, running_seconds
from tests.services import RedisServer, Stack

SIZES = {False: {"rows": 60_000, "features": 32, "epochs": 3, "hidden": [512, 512]},
         True: {"rows": 2_000, "features": 8, "epochs": 1, "hidden": [16]}}


def dataset_csv(rows: int, features: int, seed: int = 0) -> bytes:
    """A synthetic binary classification table (no download: nothing leaves the machine)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = (x @ rng.normal(size=features) + 0.5 * rng.normal(size=rows)) > 0
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)]).assign(label=np.where(y, "yes", "no"))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


def placement(url: str, job_id: str) -> str:
    """The 'training on ...' line the train job logged."""
    events = requests.get(f"{url}/v1/jobs/{job_id}/events", params={"follow": "0"}, timeout=30).json()
    messages = [str(e.get("data", {}).get("message", "")) for e in events.get("items", [])]
    return next((m for m in messages if m.startswith("training on")), "(no placement logged)")


def measure(url: str, quick: bool) -> dict[str, Any]:
    """Upload, preprocess once, then train and predict on each pool; returns the figures."""
    size = SIZES[quick]
    up = requests.post(f"{url}/v1/datasets", timeout=120,
                       files={"file": ("gpucheck.csv", dataset_csv(size["rows"], size["features"]))})
    up.raise_for_status()
    raw = up.json()["id"]
    prep = run_job(url, {"type": "preprocess", "params": {"dataset": raw, "label": "label"}})
    processed, train_rows = prep["result"]["dataset"], prep["result"]["rows"]["train"]
    out: dict[str, Any] = {"rows": size["rows"], "train_rows": train_rows, "epochs": size["epochs"]}
    for pool, gpus in (("cpu", 0), ("gpu", 1)):
        name = f"gpucheck-{pool}"
        train = run_job(url, {"type": "train", "resources": {"gpu": gpus}, "params": {
            "dataset": processed, "model": {"name": name, "hidden": size["hidden"]},
            "epochs": size["epochs"], "batch_size": 512}})
        predict = run_job(url, {"type": "predict", "resources": {"gpu": gpus},
                                "params": {"model": name, "dataset": raw}})
        out[pool] = {"train_examples_per_s": train_rows * size["epochs"] / max(running_seconds(train), 1e-6),
                     "predict_rows_per_s": size["rows"] / max(running_seconds(predict), 1e-6),
                     "worker": train["worker"], "placement": placement(url, train["id"])}
    return out


def report(figures: dict[str, Any]) -> str:
    """The side-by-side table."""
    lines = [f"{figures['rows']} rows, {figures['epochs']} epoch(s); the same jobs on each pool",
             f"{'':28}{'cpu pool':>14}{'gpu pool':>14}{'gpu/cpu':>10}"]
    for key, label in (("train_examples_per_s", "train (examples/s)"),
                       ("predict_rows_per_s", "predict (rows/s)")):
        cpu, gpu = figures["cpu"][key], figures["gpu"][key]
        lines.append(f"{label:28}{cpu:14.0f}{gpu:14.0f}{gpu / cpu:9.2f}x")
    lines += [f"gpu worker: {figures['gpu']['worker']}", f"gpu placement: {figures['gpu']['placement']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start the stack, measure, print, stop."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of the check itself)")
    parser.add_argument("--out", type=Path, default=Path("var/gpu-check"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        stack = Stack(redis_server, Path(tmp) / "store")
        try:
            stack.spawn("api", "--port", str(stack.port), log="api.log")
            stack.spawn("worker", "--pool", "cpu", "--concurrency", "1", "--loglevel", "WARNING",
                        log="cpu.log")
            stack.spawn("worker", "--pool", "gpu", "--loglevel", "WARNING", log="gpu.log")
            stack.wait_ready(("cpu", "gpu"), timeout=240)
            figures = measure(stack.url, args.quick)
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                tail = "".join(log.read_text().splitlines(True)[-20:])
                sys.stderr.write(f"--- {log.name} (last lines)\n{tail}")
            raise
        finally:
            stack.stop()
            redis_server.stop()
    print(report(figures))
    (args.out / "latest.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
