"""Ingest: events/s of `samtal import` and of POST /events (batches of 1,000) for ~1.5 million
simulated events, next to a bare `executemany` of the same lines into one SQLite table.

Target (issue 3): `samtal import` >= 0.25x the bare insert. Issue 17: >= 0.5x of a decode of
each line and a keyed insert of (org, id, call, line), in the same run.

`--ceiling`: also the store's part of the import alone (`_alone.py`: the batches decoded
beforehand, then stored one after another in a process where nothing else runs), one run, and
its ratio to the keyed floor: the most the import can reach against that floor with what it
stores today.

    python bench/ingest.py [--repeat N] [--ceiling]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from _common import report, simulated
from _server import ServerProcess, samtal
from samtal.store.sqlite import PAGE_SIZE, WAL_CHECKPOINT_BYTES

ORGS = 4
BATCH = 20_000  # lines per transaction, as `samtal import` does


def connect(path: Path) -> sqlite3.Connection:
    """A floor's database: the page size, journal, checkpoints and durability of samtal's."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // PAGE_SIZE}")
    db.execute("PRAGMA synchronous = FULL")
    return db


def bare_insert(lines: list[bytes], path: Path) -> float:
    """The floor: the raw lines into one table, same journal and durability as samtal."""
    db = connect(path)
    db.execute("CREATE TABLE lines (line BLOB NOT NULL)")
    began = time.perf_counter()
    for start in range(0, len(lines), BATCH):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO lines VALUES (?)", ((line,) for line in lines[start : start + BATCH])
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    return elapsed


def keyed_insert(lines: list[bytes], path: Path) -> float:
    """Issue 17's floor: each line decoded (orjson), then (org, id, call, line) into a table
    keyed by (org, id), a duplicate ignored: the least an idempotent store of events does."""
    db = connect(path)
    db.execute(
        "CREATE TABLE events (org TEXT, id TEXT, call TEXT, line BLOB, PRIMARY KEY (org, id)) "
        "WITHOUT ROWID"
    )
    began = time.perf_counter()
    for start in range(0, len(lines), BATCH):
        rows = []
        for line in lines[start : start + BATCH]:
            event = orjson.loads(line)
            rows.append((event["org"], event["id"], event["call"], line))
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    return elapsed


def fresh_db(folder: Path, name: str) -> str:
    db = f"sqlite:///{folder / name}"
    for n in range(1, ORGS + 1):
        samtal("org", "add", f"org-{n}", db=db)
    return db


def timed_import(path: Path, folder: Path, name: str) -> float:
    db = fresh_db(folder, name)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "samtal", "import", str(path), "--db", db],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def store_alone(path: Path, folder: Path) -> float:
    """Seconds the store's part of the import takes alone (`_alone.py`)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "_alone.py"), fresh_db(folder, "alone.db"),
         str(path)],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    return float(done.stdout)


def timed_post(lines: list[bytes], folder: Path) -> float:
    db = fresh_db(folder, "post.db")
    token = samtal("token", "create", "--ingest", db=db).splitlines()[-1]
    with (
        ServerProcess(db) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client,
    ):
        began = time.perf_counter()
        for start in range(0, len(lines), 1000):
            response = client.post("/events", content=b"".join(lines[start : start + 1000]))
            response.raise_for_status()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ceiling", action="store_true", help="the store's part alone too")
    args = parser.parse_args()
    path = simulated(
        "ingest-1.5m.ndjson",
        "--orgs",
        str(ORGS),
        "--days",
        "5",
        "--seed",
        "2",
        "--start",
        "2017-01-09",
        "--calls-per-day",
        "10000",
        "--duplicates",
        "0.01",
        "--disorder",
        "0.01",
    )
    lines = path.read_bytes().splitlines(keepends=True)
    events = len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = [
            (
                bare_insert(lines, folder / f"bare{n}.db"),
                timed_import(path, folder, f"import{n}.db"),
                keyed_insert(lines, folder / f"keyed{n}.db"),
            )
            for n in range(args.repeat)
        ]
        pairs = [(b, i) for b, i, _ in runs]
        post_s = timed_post(lines, folder)
        alone_s = store_alone(path, folder) if args.ceiling else None
    bare_s = statistics.median(b for b, _ in pairs)
    import_s = statistics.median(i for _, i in pairs)
    keyed_s = statistics.median(k for _, _, k in runs)
    ceiling = (
        []
        if alone_s is None
        else [
            ("the store's part alone (_alone.py, one run)", events / alone_s, "events/s"),
            ("ratio store alone / keyed (the import's ceiling)", keyed_s / alone_s, "x"),
        ]
    )
    report(
        f"ingest: {events:,} events, {ORGS} organisations, median of {args.repeat}",
        [
            ("bare executemany of the lines (20k per commit)", events / bare_s, "events/s"),
            ("samtal import (whole command)", events / import_s, "events/s"),
            (
                "ratio import / bare (target >= 0.25)",
                statistics.median(b / i for b, i in pairs),
                "x",
            ),
            ("decode + keyed executemany (issue 17's floor)", events / keyed_s, "events/s"),
            (
                "ratio import / keyed (target >= 0.5)",
                statistics.median(k / i for _, i, k in runs),
                "x",
            ),
            ("POST /events, batches of 1,000 (one run)", events / post_s, "events/s"),
            ("ratio POST / bare", bare_s / post_s, "x"),
            *ceiling,
        ],
    )


if __name__ == "__main__":
    main()
