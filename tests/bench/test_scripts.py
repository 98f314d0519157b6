"""The benchmarks in bench/ are run by hand (`./dev bench`), never by CI: this keeps each of them
at least starting, so that a change to what they import shows here rather than on the day
someone measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))


def test_the_benchmarks_are_found() -> None:
    assert {"ingest.py", "live.py", "postgres.py", "tenants.py"} <= set(SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_starts_and_says_what_it_takes(script: str) -> None:
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")
