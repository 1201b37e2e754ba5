"""Chaos: workers SIGKILLed at random (a whole worker, or one of its pool processes) while mixed jobs run.

Given three worker nodes and a few dozen jobs (ping, preprocess, short train, predict), a loop kills
a random worker every few seconds and starts a replacement, for a bounded time (BIGMODEL_CHAOS_SECONDS:
a short slice in `make test`, minutes under `make chaos`). Then every job has succeeded exactly once:
one final state, one model version per train job, one set of artifacts per job, nothing stuck.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests.integration.recovery import (
    Nodes,
    final_states,
    node_of,
    recovery_stack,
    requeues,
    submit,
    version_folders,
    wait_job,
)
from tests.services import RedisServer

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("BIGMODEL_CHAOS_SECONDS", "8"))
SCALE = int(os.environ.get("BIGMODEL_CHAOS_SCALE", "1"))  # multiplies the number of jobs in a wave
WAVE = 40.0  # seconds between waves of jobs


def children_of(pid: int) -> list[int]:
    """The pool processes of a worker's main process (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def dataset(url: str, seed: int, n: int = 400) -> str:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"a": rng.normal(size=n) + 3 * y, "b": rng.normal(size=n), "label": y})
    answer = requests.post(f"{url}/v1/datasets", files={"file": (f"c{seed}.csv", frame.to_csv(index=False))},
                           timeout=60)
    return answer.json()["id"]  # type: ignore[no-any-return]


def test_random_kills_lose_nothing_and_run_nothing_twice(tmp_path: Path) -> None:
    if not RedisServer.available():
        pytest.skip("needs a redis-server binary")
    server, stack = recovery_stack(tmp_path, BIGMODEL_MAX_ATTEMPTS="50")
    nodes = Nodes(stack)
    rng = random.Random(int(os.environ.get("BIGMODEL_CHAOS_SEED", "7")))
    try:
        stack.wait_ready(pools=())
        live = [nodes.start(f"w{i}", wait=False).split("@")[0] for i in range(3)]
        nodes.ensure(*live)
        # Given a raw dataset, its processed form and a trained model to predict with (before any kill)
        raw = dataset(stack.url, 0)
        pre = wait_job(stack, submit(stack, {"type": "preprocess",
                                             "params": {"dataset": raw, "label": "label"}}))
        processed = pre["result"]["dataset"]
        base = wait_job(stack, submit(stack, {"type": "train", "params": {
            "dataset": processed, "model": {"name": "base", "hidden": [8]}, "epochs": 2}}))
        assert base["state"] == "succeeded", base["error"]
        extra_raw = [dataset(stack.url, seed) for seed in range(1, 1 + 2 * SCALE)]
        # When a few dozen mixed jobs run while workers are killed at random (a new wave of them
        # every WAVE seconds, so that a long run keeps its workers busy to the end)

        def wave(n: int) -> dict[str, dict]:
            bodies: list[dict] = []
            for i in range(12 * SCALE):
                bodies.append({"type": "ping", "params": {"sleep": rng.choice([0, 1, 3]), "steps": 3,
                                                          "artifact": f"p{i}" if i % 2 else None, "n": i}})
            for _ in range(SCALE):  # parents that fan out: their children run while workers die
                bodies.append({"type": "ping", "params": {"children": [
                    {"sleep": rng.choice([0, 1]), "steps": 2, "n": k} for k in range(3)]}})
            for i, source in enumerate([raw, *extra_raw]):
                bodies.append({"type": "preprocess", "params": {"dataset": source, "label": "label",
                                                                "seed": i + 100 * n}})
            for i in range(3 * SCALE):
                model = {"name": f"chaos{n}-{i}", "hidden": [16]}
                bodies.append({"type": "train", "params": {"dataset": processed, "epochs": 4, "batch_size": 8,
                                                           "model": model}})
            for _ in range(4 * SCALE):
                bodies.append({"type": "predict", "params": {"model": "base", "dataset": raw}})
            rng.shuffle(bodies)
            return {submit(stack, body): body for body in bodies}

        ids = wave(0)
        waves, next_wave = 1, time.monotonic() + WAVE
        kills: Counter[str] = Counter()
        until = time.monotonic() + SECONDS
        serial = len(live)
        while time.monotonic() < until:
            time.sleep(rng.uniform(3, 6))
            if time.monotonic() > next_wave:
                ids.update(wave(waves))
                waves, next_wave = waves + 1, time.monotonic() + WAVE
            # Mostly a worker that runs a job (killing idle ones proves little), sometimes any worker.
            page = requests.get(f"{stack.url}/v1/jobs", params={"state": "running", "limit": 100}, timeout=10)
            running = [r["worker"] for r in page.json()["items"] if node_of(r["worker"]) in live]
            busy = rng.choice(running) if running and rng.random() < 0.75 else None
            victim = node_of(busy) if busy else rng.choice(live)
            pool = [int(busy.rsplit("#", 1)[1])] if busy else children_of(nodes.procs[victim].pid)
            if pool and rng.random() < 0.5:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(pool), signal.SIGKILL)  # one pool process; Celery starts another
                kills["pool process"] += 1
                continue
            nodes.kill(victim)  # the whole worker: its machine died
            kills["whole worker"] += 1
            live.remove(victim)
            live.append(nodes.start(f"w{serial}", wait=False).split("@")[0])
            serial += 1
        # Then, the killing over, every job ends succeeded, once, with one set of effects
        records = {job: wait_job(stack, job, timeout=600) for job in ids}
        store = tmp_path / "store" / "tenants" / "default"
        summary = Counter(f"{r['type']}:{r['state']}" for r in records.values())
        redeliveries = sum(r["attempts"] - 1 for r in records.values())
        reasons = Counter(q["reason"] for job in ids for q in requeues(stack, job))
        print(f"\njobs ({waves} waves): {dict(summary)}\nkills: {dict(kills)}\n"
              f"redeliveries (extra attempts): {redeliveries}, requeues by reason: {dict(reasons)}, "
              f"most attempts of a job: {max(r['attempts'] for r in records.values())}")
        for job, record in records.items():
            assert record["state"] == "succeeded", (record["type"], record["error"])
            assert final_states(stack, job) == ["succeeded"]
            folders = sorted(p.name for p in (store / "jobs" / job).iterdir() if p.is_dir())
            committed = {f"attempt-{a['attempt']}" for a in record["artifacts"]}
            assert folders == sorted(committed), (job, folders)  # one set of artifacts: the committed one
            if record["type"] == "train":
                name = ids[job]["params"]["model"]["name"]
                [version] = version_folders(tmp_path / "store", name)
                meta = json.loads((version / "meta.json").read_text())
                assert meta["job"] == job and meta["version"] == record["result"]["version"] == 1
            if record["children"]:  # every child ended succeeded, and the parent saw each once
                assert [c["state"] for c in record["result"]["children"]] == ["succeeded"] * 3
                assert [final_states(stack, c) for c in record["children"]] == [["succeeded"]] * 3
            if record["type"] == "predict":
                assert [a["name"] for a in record["artifacts"]] == ["predictions.parquet"]
        assert [p.name for p in version_folders(tmp_path / "store", "base")] == ["1"]
    finally:
        nodes.stop_all()
        stack.stop()
        server.stop()
