"""Ingest: events/s of `samtal import` and of POST /events (batches of 1,000) for ~1.5 million
simulated events, next to a bare `executemany` of the same lines into one SQLite table.

Target (issue 3): `samtal import` >= 0.25x the bare insert. Issue 17: >= 0.5x of a decode of
each line and a keyed insert of (org, id, call, line), in the same run.

`--shaped`: also a floor with samtal's shape (`shaped_insert`: its tables, keys and indexes,
rows made with no logic), one run, and the import's ratio to it: what the record workflow
costs beyond what samtal stores.

`--ceiling`: also the store's part of the import alone (`_alone.py`: the batches decoded
beforehand, then stored one after another in a process where nothing else runs), one run, and
its ratio to the keyed floor: the most the import can reach against that floor with what it
stores today.

    python bench/ingest.py [--repeat N] [--ceiling] [--shaped]
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from _common import report, simulated
from _server import ServerProcess, samtal
from samtal.ingest import IMPORT_BATCH_ONE_WRITER
from samtal.store.sqlite import PAGE_SIZE, WAL_CHECKPOINT_BYTES
from samtal.times import parse_instant

ORGS = 4
BATCH = IMPORT_BATCH_ONE_WRITER  # lines per transaction, as `samtal import` into SQLite does


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


#: The bytes of a record's JSON and CSV row: the averages of the simulated records as samtal
#: stores them (this file's, and postgres.py's two months: 224.9 bytes of JSON). The shaped
#: floors store blobs of these sizes.
JSON_BYTES, CSV_BYTES = 225, 129


def org_numbers() -> Callable[[str], int]:
    """Each organisation's name to a number of its own (1, 2, ... in the order they come), for
    a floor whose keys number them (`shape.py`)."""
    numbers: dict[str, int] = {}
    return lambda name: numbers.setdefault(name, len(numbers) + 1)


def shaped_insert(
    lines: list[bytes], folder: Path, drop: tuple[str, ...] = (), *, numbered: bool = False
) -> float:
    """A floor with samtal's shape: samtal's own schema (its tables, keys and indexes, made
    by `samtal org add`), each line decoded (orjson, and its `at` by samtal's parser), its
    event's row in `events`, and for each call of a batch a row in `calls` and one in
    `records` with blobs of a record's usual size (its numbers: the first event's, the number
    dialed, and who answered first). The rows are made with no logic (no record
    worked out, no look-up of what is stored), in statements of the sizes samtal uses: what
    samtal's stored shape costs SQLite by itself, without the record workflow. `drop`: indexes
    dropped first (`shape.py`); `numbered`: each table's `org` a number, not the name (the
    tables made again, empty, as samtal makes them but for that column's type; `shape.py`)."""
    fresh_db(folder, "shaped.db")
    db = connect(folder / "shaped.db")
    for index in drop:
        db.execute(f"DROP INDEX {index}")
    if numbered:
        tables = ("events", "calls", "records")
        made = db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?) AND sql IS NOT NULL "
            "ORDER BY type DESC",  # the tables, then their indexes
            tables,
        ).fetchall()
        for table in tables:
            db.execute(f"DROP TABLE {table}")
        for (sql,) in made:
            db.execute(re.sub(r"\borg TEXT\b", "org INTEGER", sql))
    org_of = org_numbers() if numbered else None
    db.execute("PRAGMA cache_size = -65536")  # the writer's, as samtal sets it
    events_sql = "INSERT OR IGNORE INTO events VALUES " + ", ".join(["(" + "?, " * 11 + "?)"] * 100)
    calls_sql = (
        "INSERT OR REPLACE INTO calls (org, call, age, record_ms, open, last_seen, version, seq, "
        "changed, started, ended, settled) VALUES " + ", ".join(["(" + "?, " * 11 + "?)"] * 100)
    )
    records_sql = (
        "INSERT OR REPLACE INTO records (org, start_ms, call, start, change_seq, json, version, "
        "csv, outcome, caller_no, receiving_no, callee_no, duration, answered_after) "
        "VALUES (" + "?, " * 13 + "?)"
    )
    json_blob, csv_blob = b"j" * JSON_BYTES, b"c" * CSV_BYTES
    seq = 0
    began = time.perf_counter()
    for start in range(0, len(lines), BATCH):
        rows: list[object] = []
        calls: dict[tuple[str, str], list[object]] = {}
        for line in lines[start : start + BATCH]:
            e = orjson.loads(line)
            if org_of is not None:
                e["org"] = org_of(e["org"])
            instant = parse_instant(e["at"])
            key = (e["org"], e["call"])
            rows += (e["org"], e["id"], e["call"], instant, e.get("seq"), e["type"],
                     e.get("party"), e.get("number"), e.get("kind"), e.get("dialed"),
                     e.get("target"), e["at"])  # fmt: skip
            call = calls.get(key)
            if call is None:
                call = calls[key] = [instant, instant, e.get("number"), e.get("dialed"), None]
            else:
                call[1] = instant
            if e["type"] == "answered" and call[4] is None:
                call[4] = e.get("number")  # the callee: who answered first
        call_rows: list[object] = []
        record_rows = []
        for (org, call), (first, last, number, dialed, callee) in calls.items():
            seq += 1
            call_rows += (org, call, first, first // 1000, 0, last, 1, seq, last, 1, 1, 0)
            record_rows.append(
                (org, first // 1000, call, first, seq, json_blob, 1, csv_blob, "answered",
                 number, dialed, callee, last - first, None)
            )  # fmt: skip
        db.execute("BEGIN IMMEDIATE")
        _insert(db, events_sql, rows, 12)
        _insert(db, calls_sql, call_rows, 12)
        db.executemany(records_sql, record_rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    return elapsed


def _insert(db: sqlite3.Connection, sql: str, values: list[object], width: int) -> None:
    """`values` (rows of `width` flattened) by `sql`'s hundred rows a statement, the rest one
    row at a time."""
    whole = len(values) - len(values) % (100 * width)
    for at in range(0, whole, 100 * width):
        db.execute(sql, values[at : at + 100 * width])
    one = sql[: sql.index("VALUES")] + "VALUES (" + "?, " * (width - 1) + "?)"
    db.executemany(one, [values[at : at + width] for at in range(whole, len(values), width)])


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


def import_events() -> Path:
    """The simulated events the import benchmarks load, made once (bench/out/)."""
    return simulated(
        "ingest-1.5m.ndjson",
        *("--orgs", str(ORGS), "--days", "5", "--seed", "2", "--start", "2017-01-09"),
        *("--calls-per-day", "10000", "--duplicates", "0.01", "--disorder", "0.01"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ceiling", action="store_true", help="the store's part alone too")
    parser.add_argument(
        "--shaped", action="store_true", help="a floor with samtal's tables and indexes too"
    )
    args = parser.parse_args()
    path = import_events()
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
        shaped_s = shaped_insert(lines, folder) if args.shaped else None
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
    shaped = (
        []
        if shaped_s is None
        else [
            ("samtal's tables, rows with no logic (one run)", events / shaped_s, "events/s"),
            ("ratio shaped / keyed", keyed_s / shaped_s, "x"),
            ("ratio import / shaped", shaped_s / import_s, "x"),
        ]
    )
    report(
        f"ingest: {events:,} events, {ORGS} organisations, median of {args.repeat}",
        [
            (f"bare executemany of the lines ({BATCH:,} a commit)", events / bare_s, "events/s"),
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
            *shaped,
        ],
    )


if __name__ == "__main__":
    main()
