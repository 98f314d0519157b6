"""Disk: bytes per call on each engine, per table and its indexes, for two months of a
2,000-calls-a-day organisation (the database of bench/stats.py), next to the raw NDJSON the
switch sent for the same calls.

What a call costs to keep is what an operator sizes disks by (issue 17: events, calls,
records, indexes, both engines). On SQLite the figures are the pages of each b-tree (`dbstat`),
free pages excluded; on PostgreSQL the heap (with TOAST) and the indexes of every partition,
after a VACUUM so that dead rows of the import's upserts do not count.

    python bench/disk.py [--postgres postgresql://…/an_admin_database]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg

from _common import report
from stats import build

TABLES = ("events", "calls", "records")
ADMIN = os.environ.get("SAMTAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def sqlite_sizes(path: str) -> dict[str, tuple[int, int]]:
    """(table bytes, index bytes) of each of TABLES, from SQLite's `dbstat`."""
    db = sqlite3.connect(path)
    indexes = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    sizes = {table: [0, 0] for table in TABLES}
    for name, used in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        owner = indexes.get(name, name)
        if owner in sizes:
            sizes[owner][name != owner] += used
    db.close()
    return {table: (data, index) for table, (data, index) in sizes.items()}


def postgres_sizes(url: str) -> dict[str, tuple[int, int]]:
    """(heap and TOAST bytes, index bytes) of each of TABLES, over all its partitions."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM")
        return {
            table: db.execute(
                "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)) FROM "
                "(SELECT relid FROM pg_partition_tree(%s::regclass) UNION SELECT %s::regclass) t",
                (table, table),
            ).fetchone()
            for table in TABLES
        }


def counted(url: str) -> int:
    """The number of calls with a record."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(urlsplit(url).path[1:])
        (n,) = db.execute("SELECT count(*) FROM records").fetchone()
        db.close()
        return int(n)
    with psycopg.connect(url) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def rows(sizes: dict[str, tuple[int, int]], calls: int) -> list[tuple[str, float, str]]:
    """The report's rows: each table and its indexes per call, then the total."""
    out = []
    for table, (data, index) in sizes.items():
        out += [
            (f"{table}", data / calls, "bytes/call"),
            (f"{table}: indexes", index / calls, "bytes/call"),
        ]
    total = sum(data + index for data, index in sizes.values())
    out.append(("all three with their indexes", total / calls, "bytes/call"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=ADMIN, help="an admin URL to make a database on")
    args = parser.parse_args()
    db = build(None)
    path = urlsplit(db).path[1:]
    calls = counted(db)
    events = os.path.join(os.path.dirname(path), "stats-60d.ndjson")
    raw = os.path.getsize(events)
    report(
        f"disk: {calls:,} calls of one organisation (two months, 2,000 a day)",
        [("the raw NDJSON the switch sent", raw / calls, "bytes/call")],
    )
    report("sqlite", rows(sqlite_sizes(path), calls))
    name = "samtal_bench_disk"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        url = urlsplit(args.postgres)._replace(path=f"/{name}").geturl()
        try:
            subprocess.run([sys.executable, "-m", "samtal", "org", "add", "org-1", "--db", url],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            subprocess.run(
                [sys.executable, "-m", "samtal", "import", events, "--db", url],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "SAMTAL_RETENTION_DAYS": "0"},
            )
            report("postgres", rows(postgres_sizes(url), counted(url)))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
