"""PostgreSQL: `samtal import` events/s next to a bare binary COPY of the same raw lines;
POST /events into `samtal serve --workers 2` from concurrent clients; two months of one
organisation over HTTP next to a bare indexed scan + orjson in-process; and the one-day query's
latency with `samtal serve --workers 2` at 200 requests/s, open loop.

Targets (issue 7): import >= 0.25x the COPY; two months >= 1.0x the bare scan; p99 <= 50 ms.
Issue 12: import and POST at least 1.5x what the commit before it did: `--against DIR` runs
both of them for the checkout at DIR too (e.g. `git worktree add /tmp/old 3a5e52b`), turn about
in the same run, and prints the ratios.
Each run makes its databases afresh on the server at SAMTAL_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and drops them after.

    python bench/postgres.py [--repeat N] [--rate R] [--seconds S] [--against DIR]
                             [--only ingest|import] [--shaped]

`--shaped`: also a floor with samtal's shape (`shaped_copy`: its schema filled with rows made
with no logic), one run, and the import's ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg

from _common import report, simulated
from _server import ServerProcess, samtal, source_env
from ingest import CSV_BYTES, JSON_BYTES, org_numbers
from latency import DAY as LATENCY_DAY
from latency import open_loop
from query import COLUMNS, FROM, TO, served, two_months
from samtal.store import open_store
from samtal.times import parse_instant

#: Days since 1970-01-01 of a date: its ordinal less this.
EPOCH = date(1970, 1, 1).toordinal()

ADMIN = os.environ.get("SAMTAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def database(name: str, template: str | None = None) -> Iterator[str]:
    """A fresh database called `name` (a copy of the database `template`, if given); its URL.
    Dropped afterwards."""
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        try:
            yield urlsplit(ADMIN)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def imported(db: str, events: Path, source: Path | None = None) -> float:
    """Seconds `samtal import` (of `source`, default this checkout) takes to load `events` into
    a fresh database."""
    env = source_env(source)
    samtal("org", "add", "org-1", db=db, env=env)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "samtal", "import", str(events), "--db", db],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    return time.perf_counter() - began


#: Lines per POST and clients posting at once.
POST_BATCH, POST_CLIENTS = 1000, 4


def posted(db: str, lines: list[bytes], source: Path | None = None) -> float:
    """Seconds POST /events takes to store `lines` into a fresh database served by `samtal
    serve --workers 2` (of `source`), POST_CLIENTS clients posting batches of POST_BATCH."""
    env = source_env(source)
    for org in sorted({orjson.loads(line)["org"] for line in lines[:5000]}):
        samtal("org", "add", org, db=db, env=env)
    token = samtal("token", "create", "--ingest", db=db, env=env).splitlines()[-1]
    batches = [b"".join(lines[i : i + POST_BATCH]) for i in range(0, len(lines), POST_BATCH)]

    async def post_all(url: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
            queue = iter(batches)

            async def worker() -> None:
                for body in queue:
                    (await client.post("/events", content=body)).raise_for_status()

            await asyncio.gather(*(worker() for _ in range(POST_CLIENTS)))

    with ServerProcess(db, "--workers", "2", **env) as server:
        began = time.perf_counter()
        asyncio.run(post_all(server.url))
        return time.perf_counter() - began


def compare_ingest(args: argparse.Namespace, events: Path) -> None:
    """`samtal import` and POST /events of this checkout and of `--against`, turn about."""
    lines = events.read_bytes().splitlines(keepends=True)
    day = lines[: len(lines) // 6]  # about ten days: POST takes longer than import
    sources: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.against is not None:
        sources.insert(0, (f"against {args.against}", args.against))
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in sources}
    for n in range(args.repeat):
        for name, source in sources:
            with database(f"samtal_bench_imp{n}") as db:
                import_s = imported(db, events, source)
            with database(f"samtal_bench_post{n}") as db:
                post_s = posted(db, day, source)
            runs[name].append((import_s, post_s))
    rows = []
    for name, _ in sources:
        import_s = statistics.median(i for i, _ in runs[name])
        post_s = statistics.median(p for _, p in runs[name])
        rows += [
            (f"{name}: samtal import", len(lines) / import_s, "lines/s"),
            (f"{name}: POST /events, --workers 2", len(day) / post_s, "events/s"),
        ]
    if args.against is not None:
        old, new = (runs[name] for name, _ in sources)
        rows += [
            (
                "import: this / against (target >= 1.5)",
                statistics.median(o[0] / n[0] for o, n in zip(old, new, strict=True)),
                "x",
            ),
            (
                "POST: this / against (target >= 1.5)",
                statistics.median(o[1] / n[1] for o, n in zip(old, new, strict=True)),
                "x",
            ),
        ]
    report(
        f"postgres ingest: {len(lines):,} lines imported, {len(day):,} posted "
        f"({POST_CLIENTS} clients, batches of {POST_BATCH:,}), median of {args.repeat}",
        rows,
    )


def bare_copy(db: str, events: Path) -> tuple[float, int]:
    """The floor: a binary COPY of the raw lines into a one-column table, one transaction."""
    lines = events.read_bytes().splitlines()
    with psycopg.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_lines")
        conn.execute("CREATE TABLE bare_lines (line bytea NOT NULL)")
        conn.commit()
        began = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY bare_lines FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["bytea"])
            for line in lines:
                copy.write_row((line,))
        conn.commit()
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE bare_lines")
    return elapsed, len(lines)


def keyed_copy(db: str, events: Path) -> float:
    """Issue 17's floor: each line decoded (orjson), then a binary COPY of (org, id, call, line)
    into a table keyed by (org, id), one transaction."""
    lines = events.read_bytes().splitlines()
    with psycopg.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS keyed_lines")
        conn.execute(
            "CREATE TABLE keyed_lines (org text, id text, call text, line bytea, "
            "PRIMARY KEY (org, id))"
        )
        conn.commit()
        began = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY keyed_lines FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["text", "text", "text", "bytea"])
            for line in lines:
                event = orjson.loads(line)
                copy.write_row((event["org"], event["id"], event["call"], line))
        conn.commit()
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE keyed_lines")
    return elapsed


#: samtal's columns and their types for a binary COPY, as its schema has them (see
#: `shaped_copy`).
EVENT_COLUMNS = "org, day, id, call, instant, seq, type, party, number, kind, dialed, target, at"
EVENT_TYPES = ["text", "int4", "text", "text", "int8", "int8", *["text"] * 7]
CALL_COLUMNS = (
    "org, call, day, age, record_ms, open, last_seen, version, seq, changed, started, ended"
)
CALL_TYPES = ["text", "text", "int4", "int8", "int8", "bool", "int8", "int4", "int8", "int8",
              "bool", "bool"]  # fmt: skip
RECORD_COLUMNS = (
    "org, day, start_ms, call, start, change_seq, json, version, csv, outcome, caller_no, "
    "receiving_no, callee_no, duration, answered_after"
)
RECORD_TYPES = ["text", "int4", "int8", "text", "int8", "int8", "bytea", "int4", "bytea",
                *["text"] * 4, "int8", "int8"]  # fmt: skip
US_PER_DAY = 86_400_000_000


def shaped_copy(events: Path, drop: tuple[str, ...] = (), *, numbered: bool = False) -> float:
    """A floor with samtal's shape: samtal's own schema (its tables, partitions, keys and
    indexes, made by samtal) in a database of its own, each line decoded (orjson, and its `at`
    by samtal's parser), and one transaction of three binary COPYs: every event's row, then
    each call's row and its record's, with blobs of a record's usual size (its numbers: the
    first event's, the number dialed, and who answered first). The rows are made
    with no logic (no record worked out, nothing read back): what samtal's stored shape costs
    PostgreSQL by itself. One connection, as the keyed floor. `drop`: indexes dropped first
    (`shape.py`); `numbered`: each table's `org` a number, not the name (`shape.py`)."""
    lines = events.read_bytes().splitlines()
    json_blob, csv_blob = b"j" * JSON_BYTES, b"c" * CSV_BYTES
    with database("samtal_bench_shaped") as db:
        samtal("org", "add", "org-1", db=db)
        store = open_store(db)
        first, last = (date.fromisoformat(d).toordinal() - EPOCH for d in (FROM, TO))
        store.engine.prepare_days(set(range(first - 1, last + 2)), today=int(time.time()) // 86_400)
        store.close()
        with psycopg.connect(db, autocommit=True) as conn:
            for index in drop:
                conn.execute(f"DROP INDEX {index}")
            for table in ("events", "calls", "records") if numbered else ():
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN org TYPE integer USING 0")
        org_type = "int4" if numbered else "text"
        org_of = org_numbers() if numbered else None
        began = time.perf_counter()
        with psycopg.connect(db) as conn, conn.cursor() as cursor:
            calls: dict[tuple[str, str], list[Any]] = {}
            with cursor.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types((org_type, *EVENT_TYPES[1:]))
                for line in lines:
                    e = orjson.loads(line)
                    if org_of is not None:
                        e["org"] = org_of(e["org"])
                    instant = parse_instant(e["at"])
                    key = (e["org"], e["call"])
                    call = calls.get(key)
                    if call is None:
                        call = calls[key] = [instant // US_PER_DAY, instant, instant,
                                             e.get("number"), e.get("dialed"), None]  # fmt: skip
                    else:
                        call[2] = instant
                    if e["type"] == "answered" and call[5] is None:
                        call[5] = e.get("number")  # the callee: who answered first
                    copy.write_row(
                        (e["org"], call[0], e["id"], e["call"], instant, e.get("seq"), e["type"],
                         e.get("party"), e.get("number"), e.get("kind"), e.get("dialed"),
                         e.get("target"), e["at"])
                    )  # fmt: skip
            with cursor.copy(f"COPY calls ({CALL_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types((org_type, *CALL_TYPES[1:]))
                for seq, ((org, name), (day, start, end, *_)) in enumerate(calls.items(), 1):
                    copy.write_row(
                        (org, name, day, start, start // 1000, False, end, 1, seq, end, True, True)
                    )
            with cursor.copy(f"COPY records ({RECORD_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types((org_type, *RECORD_TYPES[1:]))
                for seq, ((org, name), (day, start, end, number, dialed, callee)) in enumerate(
                    calls.items(), 1
                ):
                    copy.write_row(
                        (org, day, start // 1000, name, start, seq, json_blob, 1, csv_blob,
                         "answered", number, dialed, callee, end - start, None)
                    )  # fmt: skip
            conn.commit()
        return time.perf_counter() - began


def build_bare_records(db: str) -> None:
    """The seven columns of org-1's records in a plain indexed table, for the bare scan."""
    fields = ", ".join(f"convert_from(json, 'UTF8')::jsonb ->> '{c}' AS \"{c}\"" for c in COLUMNS)
    with psycopg.connect(db) as conn:
        conn.execute(
            f"CREATE TABLE bare_records AS SELECT org, start_ms, call, {fields} FROM records "
            "WHERE org = 'org-1'"
        )
        conn.execute("CREATE INDEX bare_by_start ON bare_records (org, start_ms, call)")
        conn.execute("ANALYZE bare_records")


def bare_scan(db: str) -> tuple[float, int]:
    """An indexed scan of the seven columns, each row a dict, encoded by orjson, in-process."""
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    with psycopg.connect(db) as conn:
        began = time.perf_counter()
        rows = conn.execute(
            f"SELECT {columns} FROM bare_records WHERE org = 'org-1' ORDER BY start_ms, call"
        ).fetchall()
        body = orjson.dumps([dict(zip(COLUMNS, row, strict=True)) for row in rows])
        elapsed = time.perf_counter() - began
    return elapsed, body.count(b'"callerNo"')


async def latency(url: str, token: str, rate: float, seconds: float) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        await open_loop(c, rate, 2)  # warm up
        return sorted(await open_loop(c, rate, seconds))


def shaped(
    wanted: bool, events: Path, lines: int, keyed_seconds: float, import_seconds: float
) -> list[tuple[str, float, str]]:
    """The rows of `--shaped`: the floor with samtal's shape (one run), and the ratios."""
    if not wanted:
        return []
    seconds = shaped_copy(events)
    return [
        ("samtal's tables, rows with no logic (one run)", lines / seconds, "lines/s"),
        ("ratio shaped / keyed", keyed_seconds / seconds, "x"),
        ("ratio import / shaped", seconds / import_seconds, "x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--against", type=Path, help="another checkout to compare ingest with")
    parser.add_argument(
        "--only",
        choices=["ingest", "import"],
        help="run only this part (ingest: against another checkout; import: against the floors)",
    )
    parser.add_argument(
        "--shaped", action="store_true", help="a floor with samtal's tables and indexes too"
    )
    args = parser.parse_args()
    two_months_events = two_months()
    if args.only != "import":
        compare_ingest(args, two_months_events)
    if args.only == "ingest":
        return
    with database("samtal_bench") as db:
        import_seconds = imported(db, two_months_events)
        copies = [bare_copy(db, two_months_events) for _ in range(args.repeat)]
        lines = copies[0][1]
        copy_seconds = statistics.median(c[0] for c in copies)
        keyed_seconds = statistics.median(
            keyed_copy(db, two_months_events) for _ in range(args.repeat)
        )
        report(
            f"postgres import: {lines:,} lines (two months of org-1)",
            [
                ("bare binary COPY of the raw lines", lines / copy_seconds, "lines/s"),
                ("samtal import (whole command)", lines / import_seconds, "lines/s"),
                ("ratio import / COPY (target >= 0.25)", copy_seconds / import_seconds, "x"),
                ("decode + keyed binary COPY (issue 17's floor)", lines / keyed_seconds, "lines/s"),
                ("ratio import / keyed (target >= 0.5)", keyed_seconds / import_seconds, "x"),
                *shaped(args.shaped, two_months_events, lines, keyed_seconds, import_seconds),
            ],
        )
        if args.only == "import":
            return
        build_bare_records(db)
        token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
        with (
            ServerProcess(db) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
            ) as client,
        ):
            pairs = [(bare_scan(db), served(client)) for _ in range(args.repeat)]
    (_, records), _ = pairs[0]
    assert all(s[1] == records for _, s in pairs), "samtal and the bare scan disagree"
    report(
        f"postgres query: org-1 from {FROM} to {TO}, {records:,} records, median of {args.repeat}",
        [
            (
                "bare indexed scan + orjson, in-process",
                records / statistics.median(b[0] for b, _ in pairs),
                "records/s",
            ),
            (
                "GET /cdr/historik over loopback",
                records / statistics.median(s[0] for _, s in pairs),
                "records/s",
            ),
            (
                "ratio GET / bare (target >= 1.0)",
                statistics.median(b[0] / s[0] for b, s in pairs),
                "x",
            ),
            ("time to first byte (median)", statistics.median(s[2] for _, s in pairs) * 1000, "ms"),
        ],
    )

    week = simulated(
        "latency-7d.ndjson",
        *("--orgs", "1", "--days", "7", "--seed", "4", "--start", "2017-01-09"),
        *("--calls-per-day", "2000"),
    )
    with database("samtal_bench_latency") as db:
        imported(db, week)
        token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
        with ServerProcess(db, "--workers", "2") as server:
            times = asyncio.run(latency(server.url, token, args.rate, args.seconds))
    report(
        f"postgres latency: one day ({LATENCY_DAY}) with --workers 2 at {args.rate:g} requests/s "
        f"for {args.seconds:g} s, open loop",
        [
            ("p50", statistics.median(times) * 1000, "ms"),
            ("p99 (target <= 50)", times[int(len(times) * 0.99) - 1] * 1000, "ms"),
            ("max", times[-1] * 1000, "ms"),
        ],
    )


if __name__ == "__main__":
    main()
