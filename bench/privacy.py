"""Privacy (privacy.md) in an organisation of 2,000 calls a day, two months of them, on SQLite:

- what a pseudonymizing token's read costs: every record of the period as JSON, in-process,
  with and without pseudonyms (ratio);
- what erasing a number costs: the scan that finds the number's calls (a read: a snapshot,
  which holds up no writer) and the transaction that erases them (the one moment writers of
  the organisation wait), for a frequent caller and for the busiest person, whose number is
  in the most calls. Each erasure runs on a fresh copy of the database.

    python bench/privacy.py [--repeat N] [--days N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from _common import OUT, report, simulated
from _server import samtal
from samtal.clock import system_clock
from samtal.store import open_store

START = "2017-01-02"


def build(days: int) -> tuple[Path, Counter[str], Counter[str]]:
    """The database of `days` days of org-1, made once, and how many calls each caller's and
    each person's number is in."""
    events = simulated(
        f"erasure-{days}d.ndjson",
        *("--orgs", "1", "--days", str(days), "--seed", "6", "--start", START),
        *("--calls-per-day", "2000"),
    )
    path = OUT / f"erasure-{days}d.db"
    if not path.exists():
        samtal("org", "add", "org-1", db=f"sqlite:///{path}")
        subprocess.run(
            [sys.executable, "-m", "samtal", "import", str(events), "--db", f"sqlite:///{path}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    callers: Counter[str] = Counter()
    people: dict[str, set[str]] = {}
    with events.open("rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            if event["type"] == "started" and event.get("number"):
                callers[event["number"]] += 1
            if event.get("party") == "user" and event.get("number"):
                people.setdefault(event["number"], set()).add(event["call"])
    return path, callers, Counter({number: len(calls) for number, calls in people.items()})


def erase_once(source: Path, number: str) -> tuple[float, float, int]:
    """On a fresh copy: seconds to find the number's calls, seconds of the erasing
    transaction, calls erased."""
    copy = OUT / "erasure-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, copy)
    store = open_store(f"sqlite:///{copy}")
    try:
        began = time.perf_counter()
        calls = store.calls_with_number("org-1", number)
        found = time.perf_counter()
        done = store.erase("org-1", by="bench", now=system_clock(), calls=calls, number=number)
        erased = time.perf_counter()
    finally:
        store.close()
    return found - began, erased - found, done.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    path, callers, people = build(args.days)
    store = open_store(f"sqlite:///{path}")  # upgrades an older file once, before timing
    read = {}
    for masked in (False, True):
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            count = sum(
                len(page)
                for page in store.records(
                    org="org-1", start=0, end=2**62, detailed=True, pseudonymize=masked
                )
            )
            times.append(time.perf_counter() - began)
        read[masked] = statistics.median(times)
    store.close()
    rows = [
        (f"every record ({count:,}), detailed JSON, median", read[False] * 1000, "ms"),
        ("the same with pseudonyms, median", read[True] * 1000, "ms"),
        ("pseudonyms / plain", read[True] / read[False], "x"),
    ]
    for label, number in [
        ("a caller", callers.most_common(1)[0][0]),
        ("the busiest person", people.most_common(1)[0][0]),
    ]:
        runs = [erase_once(path, number) for _ in range(args.repeat)]
        scan = statistics.median(r[0] for r in runs)
        write = statistics.median(r[1] for r in runs)
        rows += [
            (f"{label}: calls erased", runs[0][2], "calls"),
            (f"{label}: finding them (a read), median", scan * 1000, "ms"),
            (f"{label}: erasing them (the write), median", write * 1000, "ms"),
        ]
    report(f"Privacy, SQLite, {args.days} days of 2,000 calls a day", rows)


if __name__ == "__main__":
    main()
