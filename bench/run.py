"""Run the benchmarks in bench/ and write bench/results/latest.json and latest.md.

    python -m bench.run [--quick] [--only queue,inference] [--out DIR]

Each benchmark module has `run(quick: bool) -> list[Figure]` and starts (and stops) its own private
Redis, workers and API. --quick is a small smoke run (used by a test so the benchmarks cannot rot).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.harness import RESULTS, Figure, write

BENCHMARKS = ("queue", "api", "preprocess", "training", "quality", "inference", "scaling")


def available() -> list[str]:
    """The benchmarks whose modules exist."""
    here = Path(__file__).parent
    return [name for name in BENCHMARKS if (here / f"{name}.py").exists()]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; exit 1 if one of them crashed (a missed target is not a crash)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmarks run")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available())}")
    figures: list[Figure] = []
    notes: dict[str, str] = {}
    crashed = False
    for name in names:
        start = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            got = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:
            crashed = True
            notes[name] = "crashed: " + traceback.format_exc(limit=3).splitlines()[-1]
            traceback.print_exc()
            continue
        for f in got:
            print(f"   {f.name}: {f.value:.4g} {f.unit}" + (f" ratio {f.ratio:.3g}" if f.ratio else "")
                  + ("" if f.met is None else (" met" if f.met else " MISSED")), flush=True)
        figures.extend(got)
        notes.setdefault(name, f"ran in {time.monotonic() - start:.0f} s")
    write(figures, args.out, notes)
    print(f"results in {args.out}/latest.json and latest.md")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
