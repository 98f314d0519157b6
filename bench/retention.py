"""An organisation's own retention, shortened (privacy.md): the purge that follows it on an
organisation of 3,000 calls a working day, the two months up to yesterday (PostgreSQL keeps
recent days in a partition each, older ones by month), keeping the last week. On PostgreSQL
and SQLite, each run on a fresh copy of the database:

- the purge: the seconds of its transaction, which removes the calls before the cutoff from
  the three tables and gives the calls that stay a new `seq` where theirs was below;
- the organisation's ingest meanwhile: a new call, whole, is posted every 20 ms to the same
  async store, as the server has it, and the longest any of them took while the purge ran is
  what a switch posting that organisation's events waited (PostgreSQL: its row in `orgs`,
  which both write; SQLite: the one writer, every organisation's).

`--against DIR` measures the checkout at DIR the same way, turn about (e.g. `git worktree add
/tmp/old HEAD~1`). PostgreSQL at SAMTAL_BENCH_POSTGRES_URL, as bench/postgres.py.

    python bench/retention.py [--repeat N] [--days N] [--against DIR] [--only ENGINE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from _common import OUT, report, simulated
from _server import samtal, source_env

ADMIN = os.environ.get("SAMTAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEEP_DAYS = 7

#: Run in a process of the checkout measured, as the server has it: one store behind the async
#: store, the purge on a writer (with what it calls between its transactions, where the
#: checkout has that), and a new call's batch (a call whole, so that it has a record and a
#: `seq`) posted every 20 ms meanwhile. Prints one JSON line.
RUN = r"""
import asyncio, inspect, json, sys, time
from datetime import date, datetime, timedelta, timezone
from functools import partial
from samtal.clock import system_clock
from samtal.events import decode_batch
from samtal.store import AsyncStore, Store, open_store

url, last_day, keep = sys.argv[1], date.fromisoformat(sys.argv[2]), int(sys.argv[3])
cut = datetime.combine(last_day - timedelta(days=keep - 1), datetime.min.time(), timezone.utc)
before = int(cut.timestamp()) * 10**6
store = open_store(url)
shared = AsyncStore(store)
batches = []

async def post(done):
    n = 0
    at = (cut + timedelta(days=keep - 1, hours=12)).isoformat()
    while not done.is_set():
        n += 1
        call = {"org": "org-1", "call": f"bench-{n}", "at": at}
        lines = [json.dumps({**call, "id": f"bench-{n}.0", "type": "started", "party": "caller",
                             "number": "+46701", "dialed": "622"}).encode(),
                 json.dumps({**call, "id": f"bench-{n}.1", "type": "ended"}).encode()]
        began = time.perf_counter()
        await shared.ingest(decode_batch(lines).events, now=system_clock())
        batches.append((began, time.perf_counter()))
        await asyncio.sleep(0.02)

async def main():
    done = asyncio.Event()
    posting = asyncio.ensure_future(post(done))
    await asyncio.sleep(0.3)
    between = {}
    if "between" in inspect.signature(Store.purge).parameters:
        between = {"between": shared.store_waiting}
    began = time.perf_counter()
    purged = await shared.write(partial(Store.purge, org="org-1", before=before, **between))
    ended = time.perf_counter()
    await asyncio.sleep(0.1)
    done.set()
    await posting
    return purged, began, ended

purged, began, ended = asyncio.run(main())
shared.close()
store.close()
waits = [end - start for start, end in batches if start < ended and end > began]
print(json.dumps({"purged": purged, "seconds": ended - began, "longest": max(waits, default=0)}))
"""


@contextmanager
def postgres_base(events: Path) -> Iterator[str]:
    """A database holding `events` of org-1, as a template; its name. Dropped afterwards."""
    name = "samtal_bench_retention_base"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            load(urlsplit(ADMIN)._replace(path=f"/{name}").geturl(), events)
            yield name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load(db: str, events: Path) -> None:
    samtal("org", "add", "org-1", db=db)
    subprocess.run(
        [sys.executable, "-m", "samtal", "import", str(events), "--db", db],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def postgres_run(base: str, last_day: str, source: Path | None) -> dict[str, float]:
    name = "samtal_bench_retention_run"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{base}"')
        try:
            return measured(urlsplit(ADMIN)._replace(path=f"/{name}").geturl(), last_day, source)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_run(base: Path, last_day: str, source: Path | None) -> dict[str, float]:
    copy = OUT / "retention-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base, copy)
    return measured(f"sqlite:///{copy}", last_day, source)


def measured(db: str, last_day: str, source: Path | None) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, db, last_day, str(KEEP_DAYS)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **source_env(source)},
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--against", type=Path, help="another checkout, measured the same way")
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    args = parser.parse_args()
    start = date.today() - timedelta(days=args.days)
    events = simulated(
        f"retention-{start}-{args.days}d.ndjson",
        *("--orgs", "1", "--days", str(args.days), "--seed", "8", "--start", start.isoformat()),
        *("--calls-per-day", "3000"),
    )
    last_day = (start + timedelta(days=args.days - 1)).isoformat()
    sources: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.against is not None:
        sources.append((str(args.against), args.against))
    engines = [args.only] if args.only else ["postgres", "sqlite"]
    for engine in engines:
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in sources}
        if engine == "postgres":
            with postgres_base(events) as base:
                for _ in range(args.repeat):  # turn about: the machine's noise falls on both
                    for label, source in sources:
                        runs[label].append(postgres_run(base, last_day, source))
        else:
            base_file = OUT / f"retention-{start}-{args.days}d.db"
            if not base_file.exists():
                load(f"sqlite:///{base_file}", events)
            for _ in range(args.repeat):
                for label, source in sources:
                    runs[label].append(sqlite_run(base_file, last_day, source))
        rows: list[tuple[str, float, str]] = []
        medians = {}
        for label, _ in sources:
            seconds = statistics.median(r["seconds"] for r in runs[label])
            longest = statistics.median(r["longest"] for r in runs[label])
            medians[label] = (seconds, longest)
            rows += [
                (f"{label}: calls purged", runs[label][0]["purged"], "calls"),
                (f"{label}: the purge, median", seconds * 1000, "ms"),
                (f"{label}: longest ingest meanwhile, median", longest * 1000, "ms"),
            ]
        if args.against is not None:
            (now, now_wait), (then, then_wait) = medians.values()
            rows += [
                ("the purge, this / other", now / then, "x"),
                ("longest ingest, this / other", now_wait / max(then_wait, 1e-9), "x"),
            ]
        report(
            f"Retention shortened to {KEEP_DAYS} days, {engine}, {args.days} days of 3,000 "
            f"calls a working day, {args.repeat} runs",
            rows,
        )


if __name__ == "__main__":
    main()
