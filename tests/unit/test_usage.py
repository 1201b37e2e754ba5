"""A job's usage: its own peak memory (not the process's largest so far), CPU time and store writes."""

from __future__ import annotations

import time
from pathlib import Path

from bigmodel.jobs.usage import Meter, rate
from bigmodel.store import Store

MB = 1024 * 1024


def test_peak_memory_is_the_jobs_own_and_writes_are_counted(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    big = Meter(store)
    block = bytearray(300 * MB)  # touched: resident, not just reserved
    for i in range(0, len(block), 4096):
        block[i] = 1
    store.tenant("t").write_bytes("a/b.bin", b"x" * 1000)
    first = big.stop()
    del block
    small = Meter(store)
    store.write_bytes("c.bin", b"y" * 10)
    second = small.stop()
    assert first["store_bytes_written"] == 1000 and second["store_bytes_written"] == 10  # views share a tally
    assert first["peak_rss_bytes"] >= 300 * MB
    if "peak_rss_scope" not in first:  # the kernel let us reset the mark: the next job starts afresh
        assert second["peak_rss_bytes"] < first["peak_rss_bytes"] - 200 * MB


def test_cpu_and_wall_time() -> None:
    meter = Meter(Store("memory://usage"))
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    used = meter.stop()
    assert used["cpu_seconds"] >= 0.2 and used["wall_seconds"] >= used["cpu_seconds"] * 0.5
    assert rate(1000, 0.5) == 2000.0 and rate(10, 0) == 0.0


def test_gpu_peak_is_read_only_where_tensorflow_already_runs_on_a_gpu(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    store = Store(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert "peak_gpu_bytes" not in Meter(store).stop()  # measuring never imports TensorFlow
    resets: list[str] = []
    experimental = types.SimpleNamespace(reset_memory_stats=resets.append,
                                         get_memory_info=lambda device: {"current": 5, "peak": 3 * MB})
    config = types.SimpleNamespace(list_logical_devices=lambda kind: ["GPU:0"], experimental=experimental)
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))
    meter = Meter(store)
    assert resets == ["GPU:0"]  # the peak is the job's own
    assert meter.stop()["peak_gpu_bytes"] == 3 * MB
