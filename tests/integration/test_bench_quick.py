"""`make bench-quick` in miniature: every benchmark runs at tiny sizes and writes a valid latest.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import available

pytestmark = pytest.mark.integration

FIELDS = {"name", "unit", "baseline", "value", "ratio", "target", "met"}


def test_quick_benchmarks_write_valid_results(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    figures = json.loads((tmp_path / "latest.json").read_text())
    assert isinstance(figures, list)
    assert all(FIELDS <= set(f) for f in figures)
    assert all(isinstance(f["value"], int | float) for f in figures)
    names = {f["name"].split(".")[0] for f in figures}
    assert names >= set(available()), f"a benchmark produced no figure: {set(available()) - names}"
    assert "| figure |" in (tmp_path / "latest.md").read_text()
