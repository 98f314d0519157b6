"""Shared helpers of the benchmarks: simulated input files, timing, and reporting."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).parent / "out"
# The simulated traffic lies in 2017: every command a benchmark runs keeps it (events before the
# retention window are rejected otherwise, as events.md says).
os.environ.setdefault("SAMTAL_RETENTION_DAYS", "0")


def simulated(name: str, *args: str) -> Path:
    """A simulated NDJSON file under bench/out/, made once and reused."""
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [sys.executable, "-m", "samtal", "simulate", *args, "--out", str(tmp)], check=True
        )
        tmp.rename(path)
    return path


def median_seconds(run: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """The median wall time of `repeat` runs, and every run's time."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


def report(title: str, rows: list[tuple[str, float, str]]) -> None:
    """Print a small table: what, figure, unit."""
    print(f"\n{title}")
    for what, figure, unit in rows:
        print(f"  {what:<44} {figure:>14,.2f} {unit}")
