"""`make bench-quick` in miniature: every benchmark runs at tiny sizes and writes a valid latest.json."""

from __future__ import annotations

import json

import pytest

from bench.run import available
from tests import bench_quick

pytestmark = pytest.mark.integration

FIELDS = {"name", "unit", "baseline", "value", "ratio", "target", "met"}


@pytest.mark.after_all
def test_quick_benchmarks_write_valid_results(request: pytest.FixtureRequest) -> None:
    # Started when the run was collected (tests/bench_quick.py), so it ran beside the other tests.
    run = request.config.stash.get(bench_quick.KEY, None) or bench_quick.start()
    status, output = run.wait(timeout=540)
    assert status == 0, output
    figures = json.loads((run.out / "latest.json").read_text())
    assert isinstance(figures, list)
    assert all(FIELDS <= set(f) for f in figures)
    assert all(isinstance(f["value"], int | float) for f in figures)
    names = {f["name"].split(".")[0] for f in figures}
    assert names >= set(available()), f"a benchmark produced no figure: {set(available()) - names}"
    assert "| figure |" in (run.out / "latest.md").read_text()
