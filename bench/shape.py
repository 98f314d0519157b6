"""What samtal's indexes, and the names that lead its keys, cost ingest: the floors with
samtal's stored shape (`ingest.py --shaped` on SQLite, `postgres.py --shaped` on PostgreSQL:
samtal's schema, rows made with no logic) run whole, then without each table's secondary
indexes in turn, without the two that find a number's calls (callerNo, calleeNo), and
without all of them, next to the keyed floor (decode each line and store it keyed by (org,
id)); and whole with `org` a number in each of the three tables instead of the
organisation's name (the same number in every row of an organisation, as the name is): every
key of call data leads with the name, as text, which a B-tree compares as text, and which on
PostgreSQL leaves the columns after it at no fixed place in an index entry. Each round takes
every variant once, starting one further along each round; the figures are medians over the
rounds.

For each variant: its events/s, what it saves as a share of the whole shape's time (the median
of the rounds' shares), and its ratio to the keyed floor. The tables' primary keys stay; on
SQLite the events' secondary index is the unique one that makes an event's id its key
(events.md), priced to show what that key costs. Single indexes are not priced one by one:
on this shared machine one variant's time swung by a third between rounds (in wall time and
in CPU time alike), more than most single indexes cost. What each index serves is in
bench/README.md ("Seventeenth session").

    python bench/shape.py [--rounds N] [--only sqlite|postgres] [--org-only]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

from _common import report
from _server import samtal
from ingest import fresh_db, import_events, keyed_insert, shaped_insert
from postgres import database, keyed_copy, shaped_copy
from query import two_months

#: The tables whose indexes ingest writes.
TABLES = ("events", "calls", "records")
#: The variant with each table's `org` a number of the organisation's, not its name.
NUMBERED = "with org a number, not the name"


def sqlite_indexes(folder: Path) -> list[tuple[str, str]]:
    """The secondary indexes of samtal's SQLite schema on `TABLES`: (table, index)."""
    fresh_db(folder, "schema.db")
    db = sqlite3.connect(folder / "schema.db")
    rows = db.execute(
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN {TABLES} ORDER BY tbl_name, name"
    ).fetchall()
    db.close()
    (folder / "schema.db").unlink()
    return rows


def postgres_indexes() -> list[tuple[str, str]]:
    """The secondary indexes of samtal's PostgreSQL schema on `TABLES` (the partitioned
    tables' own, which their partitions' follow), not those behind a constraint: (table,
    index)."""
    with database("samtal_bench_shape_schema") as db:
        samtal("org", "add", "org-1", db=db)
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = ANY(%s) AND indexname NOT IN (SELECT conname FROM pg_constraint) "
                "ORDER BY tablename, indexname",
                (list(TABLES),),
            ).fetchall()
    return rows


def groups(indexes: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """The variants: each table's secondary indexes, the two that find a number's calls, and
    all of them, by a label that names them."""
    found: dict[str, tuple[str, ...]] = {}
    for table in TABLES:
        names = tuple(name for t, name in indexes if t == table)
        if names:
            found[f"{table}: {', '.join(names)}"] = names
    numbers = tuple(name for _, name in indexes if "caller" in name or "callee" in name)
    found[f"a number's calls: {', '.join(numbers)}"] = numbers
    found["every secondary index"] = tuple(name for _, name in indexes)
    return {f"without {label}": names for label, names in found.items()}


def variants_of(
    keyed: Callable[[], float],
    shaped: Callable[..., Callable[[], float]],
    indexes: Callable[[], list[tuple[str, str]]],
    *,
    org_only: bool,
) -> dict[str, Callable[[], float]]:
    """The variants to run: the keyed floor, the whole shape, the shape with numbered
    organisations, and (unless `org_only`) the shape without each group of `indexes()`."""
    found = {"keyed": keyed, "whole": shaped(()), NUMBERED: shaped((), numbered=True)}
    if not org_only:
        found |= {label: shaped(drop) for label, drop in groups(indexes()).items()}
    return found


def rounds(variants: dict[str, Callable[[], float]], count: int) -> dict[str, list[float]]:
    """Each variant's seconds in each of `count` rounds, each round starting one further along."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(count):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(variants[name]())
            print(f"  round {r + 1}: {name} {times[name][-1]:.2f} s", flush=True)
    return times


def price_list(title: str, events: int, times: dict[str, list[float]]) -> None:
    """Report each variant against the whole shape and the keyed floor."""
    keyed = statistics.median(times.pop("keyed"))
    whole = times.pop("whole")
    whole_s = statistics.median(whole)
    rows = [
        ("keyed floor", events / keyed, "events/s"),
        ("samtal's whole shape", events / whole_s, "events/s"),
        ("  ratio to the keyed floor", keyed / whole_s, "x"),
    ]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        saved = statistics.median(1 - s / w for s, w in zip(seconds, whole, strict=True))
        rows += [
            (name, events / median, "events/s"),
            ("  saves, of the whole shape's time", saved * 100, "%"),
            ("  ratio to the keyed floor", keyed / median, "x"),
        ]
    report(title, rows)


def price_sqlite(count: int, *, org_only: bool) -> None:
    path = import_events()
    lines = path.read_bytes().splitlines(keepends=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def shaped(drop: tuple[str, ...], *, numbered: bool = False) -> Callable[[], float]:
            def run() -> float:
                seconds = shaped_insert(lines, folder, drop, numbered=numbered)
                for file in folder.glob("shaped.db*"):
                    file.unlink()
                return seconds

            return run

        def keyed() -> float:
            seconds = keyed_insert(lines, folder / "keyed.db")
            for file in folder.glob("keyed.db*"):
                file.unlink()
            return seconds

        variants = variants_of(keyed, shaped, lambda: sqlite_indexes(folder), org_only=org_only)
        times = rounds(variants, count)
    price_list(f"SQLite, {len(lines):,} events, medians of {count} rounds", len(lines), times)


def price_postgres(count: int, *, org_only: bool) -> None:
    path = two_months()
    events = path.read_bytes().count(b"\n")
    with database("samtal_bench_shape_keyed") as db:

        def keyed() -> float:
            return keyed_copy(db, path)

        def shaped(drop: tuple[str, ...], *, numbered: bool = False) -> Callable[[], float]:
            return lambda: shaped_copy(path, drop, numbered=numbered)

        variants = variants_of(keyed, shaped, postgres_indexes, org_only=org_only)
        times = rounds(variants, count)
    price_list(f"PostgreSQL, {events:,} events, medians of {count} rounds", events, times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--org-only",
        action="store_true",
        help="the keyed floor, the whole shape and the shape with numbered organisations alone",
    )
    args = parser.parse_args()
    if args.only != "postgres":
        price_sqlite(args.rounds, org_only=args.org_only)
    if args.only != "sqlite":
        price_postgres(args.rounds, org_only=args.org_only)


if __name__ == "__main__":
    main()
