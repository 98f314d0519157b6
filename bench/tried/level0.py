"""What SQLite's many-organisation batch would cost with a first level in front of its trees:
a floor for a design that is not built (bench/README.md, "Twentieth session").

Every key of call data leads with the organisation, so that a period's read is one range
scan; so a batch of 1,000 organisations' calls writes a leaf of every tree for each of them
(`pages.py`). An LSM's answer: commit each batch into a small database of the same schema
(level 0), whose trees are small, and every K batches move its rows into the big one in one
transaction, which then writes each organisation's leaves once for K batches.

Both start from the same history, `--rounds` rounds of tenants.py's batches (pages.py's
clock and batches), stored in process (`Store.ingest`, no HTTP):

- today: `--cycles` x K batches of each kind stored into the big database;
- level 0: the same batches stored into a small database (the store's whole logic, on a store
  that holds only the level's rows), and every K batches its events, calls and records
  copied into the big one (`INSERT ... SELECT`, one transaction) and deleted from the small.

A batch's cost on level 0 is its own time plus its share of the copy. Left out, so that this
is the least such a design could cost: what a read, the feed, erasure and retention would
pay to look in both databases, and a call whose events span a copy (tenants.py's calls are
new in every batch).

    python bench/tried/level0.py [--rounds N] [--every K] [--cycles C]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import report
from pages import KINDS, START
from samtal.events import decode_batch
from samtal.store import Store, open_store
from samtal.store.sqlite import PAGE_SIZE, WAL_CHECKPOINT_BYTES
from tenants import ORGS, batch

TABLES = ("events", "calls", "records")
ORG_ROWS = [(f"org-{n}", "Europe/Stockholm") for n in range(ORGS)]


class Clock:
    """The store's clock, a second further for every batch."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def tick(self) -> int:
        self.now += 1_000_000
        return self.now


def stored(store: Store, clock: Clock, kind: str, round_: int) -> float:
    """Seconds to store one batch of `kind`."""
    events = decode_batch(batch(kind, round_, 1000)).events
    began = time.perf_counter()
    summary = store.ingest(events, now=clock.tick())
    seconds = time.perf_counter() - began
    assert summary.accepted == len(events), summary
    return seconds


def history(path: Path, clock: Clock, rounds: int) -> None:
    store = open_store(f"sqlite:///{path}")
    try:
        store.add_orgs(ORG_ROWS, now=clock.now)
        for round_ in range(rounds):
            for kind in KINDS:
                stored(store, clock, kind, round_)
    finally:
        store.close()


def runs(first: int, every: int, cycles: int) -> Iterator[tuple[str, range]]:
    """The measured batches: `cycles` times, `every` rounds of each kind in turn."""
    for cycle in range(cycles):
        for n, kind in enumerate(KINDS):
            start = first + (cycle * len(KINDS) + n) * every
            yield kind, range(start, start + every)


def today(path: Path, clock: Clock, rounds: int, every: int, cycles: int) -> dict[str, float]:
    """Seconds a batch of each kind, stored straight into the big database (medians)."""
    store = open_store(f"sqlite:///{path}")
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        for kind, rounds_ in runs(rounds, every, cycles):
            seconds[kind] += [stored(store, clock, kind, round_) for round_ in rounds_]
    finally:
        store.close()
    return {kind: statistics.median(s) for kind, s in seconds.items()}


def level0(
    path: Path, small: Path, clock: Clock, rounds: int, every: int, cycles: int
) -> dict[str, tuple[float, float]]:
    """For each kind: a batch's own seconds on level 0 (median), and the copy's seconds per
    batch (median over the cycles)."""
    store = open_store(f"sqlite:///{small}")
    big = sqlite3.connect(path, isolation_level=None)
    # As the store's writer does (store/sqlite.py): the copy gets no smaller cache, and no
    # more checkpoints, than a write of today's.
    big.execute("PRAGMA synchronous = FULL")
    big.execute("PRAGMA busy_timeout = 10000")
    big.execute("PRAGMA cache_size = -65536")
    big.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // PAGE_SIZE}")
    big.execute("ATTACH ? AS level0", (str(small),))
    own: dict[str, list[float]] = {kind: [] for kind in KINDS}
    copy: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        store.add_orgs(ORG_ROWS, now=clock.now)
        for kind, rounds_ in runs(rounds, every, cycles):
            own[kind] += [stored(store, clock, kind, round_) for round_ in rounds_]
            began = time.perf_counter()
            big.execute("BEGIN IMMEDIATE")
            for table in TABLES:
                big.execute(f"INSERT INTO main.{table} SELECT * FROM level0.{table}")
                big.execute(f"DELETE FROM level0.{table}")
            big.execute("COMMIT")
            copy[kind].append((time.perf_counter() - began) / every)
    finally:
        big.close()
        store.close()
    return {kind: (statistics.median(own[kind]), statistics.median(copy[kind])) for kind in KINDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="calls each organisation holds")
    parser.add_argument("--every", type=int, default=8, help="batches between two copies")
    parser.add_argument("--cycles", type=int, default=3, help="copies of each kind measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock()
        big = Path(folder) / "big.db"
        history(big, clock, args.rounds)
        twin = Path(folder) / "twin.db"
        with sqlite3.connect(big) as source, sqlite3.connect(twin) as target:
            source.backup(target)
        after = args.rounds
        straight = today(big, Clock(clock.now), after, args.every, args.cycles)
        small = Path(folder) / "level0.db"
        layered = level0(twin, small, Clock(clock.now), after, args.every, args.cycles)
    rows: list[tuple[str, float, str]] = []
    for kind in KINDS:
        own, copy = layered[kind]
        rows += [
            (f"{kind}: today, a batch", straight[kind] * 1000, "ms"),
            (f"{kind}: level 0, the batch itself", own * 1000, "ms"),
            (f"{kind}: level 0, its share of the copy", copy * 1000, "ms"),
        ]
    mixed, single = layered["mixed"], layered["single"]
    rows += [
        ("today, mixed / single", straight["mixed"] / straight["single"], "x"),
        ("level 0, mixed / single", sum(mixed) / sum(single), "x"),
        ("level 0 / today, mixed", sum(mixed) / straight["mixed"], "x"),
        ("level 0 / today, single", sum(single) / straight["single"], "x"),
    ]
    report(
        f"level 0 on sqlite: batches of 3,000 events after {args.rounds} rounds, "
        f"copied every {args.every}, {args.cycles} copies of each kind",
        rows,
    )


if __name__ == "__main__":
    main()
