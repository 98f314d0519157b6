"""Why a batch of many organisations costs SQLite more per event than a batch of one: what one
batch's commit writes, tree by tree, once each organisation holds a history.

tenants.py measures the cost; this shows where it comes from. SQLite's write-ahead log holds
whole pages: a commit writes every page its batch changed, in every B-tree (a table, or an
index) the batch touched. Every key of call data leads with the organisation, so a batch of
1,000 organisations changes at least a page of each tree for each organisation once their
histories outgrow a page, where a batch of one organisation's calls changes a few pages at the
end of each tree. PostgreSQL's log holds the changed rows instead (and a page's image only the
first time it changes after a checkpoint), and writes the pages themselves later, in the
background: its commit costs by the row.

Builds the history in process (`Store.ingest`, no HTTP), `--rounds` rounds of tenants.py's
single and mixed batches (so each of the 1,000 organisations holds `--rounds` calls), then
stores `--measure` more of each kind, alternating, and reads for each what its commit wrote:
on SQLite the pages in the WAL, by the tree they belong to (`dbstat`); on PostgreSQL
(`--postgres`, the database of postgres.py) the bytes of WAL.

    python bench/pages.py [--rounds N] [--measure M] [--postgres | --only ENGINE]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import struct
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg

from _common import report
from postgres import database
from samtal.events import decode_batch
from samtal.store import Store, open_store
from tenants import ORGS, batch

#: The store's clock: an hour after the traffic, a second further for every batch.
START = 1_483_524_000_000_000
KINDS = ("single", "mixed")
#: For each kind of batch, each measured batch's seconds and what its commit wrote.
Seen = dict[str, list[tuple[float, dict[str, float]]]]


def wal_pages(path: Path) -> list[int]:
    """The page number of each frame in a SQLite WAL file (its format: a 32-byte header, then
    frames of a 24-byte header, which begins with the page number, and a page)."""
    data = path.read_bytes()
    if len(data) < 32:
        return []
    page = struct.unpack(">I", data[8:12])[0]
    frame = 24 + page
    return [
        struct.unpack(">I", data[at : at + 4])[0] for at in range(32, len(data) - frame + 1, frame)
    ]


class Sqlite:
    """A fresh SQLite database, and what each commit wrote to its WAL."""

    def __init__(self, folder: str) -> None:
        self.path = Path(folder) / "pages.db"
        self.url = f"sqlite:///{self.path}"
        self.monitor: sqlite3.Connection | None = None

    def before(self) -> None:
        """An empty WAL: every frame in it after the batch is the batch's commit. (Should that
        commit take the WAL past samtal's checkpoint size, SQLite's own checkpoint copies the
        frames into the database and leaves them in the file until the next transaction starts
        it again.)"""
        if self.monitor is None:
            self.monitor = sqlite3.connect(self.path, isolation_level=None)
        self.monitor.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def after(self) -> dict[str, float]:
        assert self.monitor is not None
        pages = set(wal_pages(Path(f"{self.path}-wal")))
        trees = dict(self.monitor.execute("SELECT pageno, name FROM dbstat"))
        counted = Counter(trees.get(page, "(free)") for page in pages)
        size = self.monitor.execute("PRAGMA page_size").fetchone()[0]
        return {"pages": len(pages), "MB": len(pages) * size / 1e6, **counted}


class Postgres:
    """A fresh PostgreSQL database, and the WAL each commit wrote."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.monitor = psycopg.connect(url, autocommit=True)
        self.lsn = ""

    def _now(self) -> str:
        row = self.monitor.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def before(self) -> None:
        self.lsn = self._now()

    def after(self) -> dict[str, float]:
        row = self.monitor.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (self._now(), self.lsn)
        ).fetchone()
        assert row is not None
        return {"MB": float(row[0]) / 1e6}


def measured(store: Store, engine: Sqlite | Postgres, rounds: int, measure: int) -> Seen:
    """The milliseconds and what the commit wrote, of `measure` batches of each kind stored
    after `rounds` rounds of both."""
    clock = START
    store.add_orgs([(f"org-{n}", "Europe/Stockholm") for n in range(ORGS)], now=clock)

    def store_batch(kind: str, round_: int) -> float:
        nonlocal clock
        clock += 1_000_000
        events = decode_batch(batch(kind, round_, 1000)).events
        began = time.perf_counter()
        store.ingest(events, now=clock)
        return time.perf_counter() - began

    for round_ in range(rounds):
        for kind in KINDS:
            store_batch(kind, round_)
    seen: Seen = {kind: [] for kind in KINDS}
    for round_ in range(rounds, rounds + measure):
        for kind in KINDS:
            engine.before()
            seconds = store_batch(kind, round_)
            seen[kind].append((seconds, engine.after()))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="calls each organisation holds")
    parser.add_argument("--measure", type=int, default=5, help="batches of each kind measured")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL too")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="this engine alone")
    args = parser.parse_args()
    engines = [args.only] if args.only else ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    for name in engines:
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                sqlite = Sqlite(folder)
                seen = run(sqlite, sqlite.url, args)
        else:
            with database(f"samtal_bench_pages_{uuid.uuid4().hex[:6]}") as url:
                postgres = Postgres(url)
                try:
                    seen = run(postgres, url, args)
                finally:
                    postgres.monitor.close()
        show(name, seen, args)


def show(name: str, seen: Seen, args: argparse.Namespace) -> None:
    """The medians of each kind, their ratios, and on SQLite the pages of each tree."""
    ms = {kind: statistics.median(s for s, _ in seen[kind]) * 1000 for kind in KINDS}
    wrote = {
        kind: {
            key: statistics.median(w.get(key, 0) for _, w in seen[kind])
            for key in {key for _, w in seen[kind] for key in w}
        }
        for kind in KINDS
    }
    single, mixed = wrote["single"], wrote["mixed"]
    rows = [
        ("a batch of 1 organisation", ms["single"], "ms"),
        (f"a batch of {ORGS:,} organisations", ms["mixed"], "ms"),
        ("time, mixed / single", ms["mixed"] / ms["single"], "x"),
        ("its commit wrote, 1 organisation", single["MB"], "MB"),
        (f"its commit wrote, {ORGS:,} organisations", mixed["MB"], "MB"),
        ("bytes, mixed / single", mixed["MB"] / single["MB"], "x"),
    ]
    if name == "sqlite":
        rows += [
            ("pages, 1 organisation", single["pages"], "pages"),
            (f"pages, {ORGS:,} organisations", mixed["pages"], "pages"),
        ]
    report(
        f"pages on {name}: batches of 3,000 events after {args.rounds} rounds "
        f"(each organisation holds {args.rounds} calls), medians of {args.measure}",
        rows,
    )
    if name == "sqlite":
        print("  pages by tree (1 organisation, 1,000):")
        for tree in sorted(set(mixed) - {"pages", "MB"}, key=lambda tree: -mixed[tree]):
            print(f"    {tree:<36} {single.get(tree, 0):>8,.0f} {mixed[tree]:>8,.0f}")


def run(engine: Sqlite | Postgres, url: str, args: argparse.Namespace) -> Seen:
    store = open_store(url)
    try:
        return measured(store, engine, args.rounds, args.measure)
    finally:
        store.close()


if __name__ == "__main__":
    main()
