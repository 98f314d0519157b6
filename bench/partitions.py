"""PostgreSQL with calls on thousands of distinct days (a backfill, a switch with a broken
clock; retention off): a one-day query of another organisation, with 10 days stored, with
2,500 distinct far days (which share a partition per month), and with 2,500 partitions of a
day each (made as if each day were near), median of 30 queries each.

Target (issue 13): the same cost whatever is stored beside it (it was 4 ms with 10 days and
2.2 s with 3,000).

    python bench/partitions.py [--days N] [--queries Q]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

import psycopg

from _common import report
from postgres import database
from samtal.events import decode_batch
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store

DAY_US = 86_400_000_000
QUERY_DAY = date(2017, 1, 4)
#: 2017-03-01: "today" for the stores below, so that the queried day is near.
TODAY = 1_488_326_400_000_000


def one_call(org: str, day: int) -> list[bytes]:
    """One short call of `org`, `day` days after 1970-01-01."""
    at = date.fromordinal(day + date(1970, 1, 1).toordinal()).isoformat()
    common = f'"org":"{org}","call":"d{day}"'
    return [
        f'{{"id":"d{day}-0",{common},"at":"{at}T10:00:00Z","type":"started","party":"caller",'
        f'"number":"+4670","dialed":"622"}}'.encode(),
        f'{{"id":"d{day}-1",{common},"at":"{at}T10:01:00Z","type":"ended"}}'.encode(),
    ]


def timed(url: str, days: int, per_day_partitions: bool, queries: int) -> tuple[float, int]:
    """Median seconds of the one-day query of org-1, with `days` distinct days of org-2's
    calls stored beside it; and the number of partitions of `events`."""
    store = open_store(url)
    for org in ("org-1", "org-2"):
        store.add_org(org, "Europe/Stockholm", now=TODAY)
    traffic = TrafficSettings(orgs=1, days=1, seed=1, start=QUERY_DAY, calls_per_day=2000)
    store.ingest(decode_batch(list(event_lines(traffic))).events, now=TODAY)
    first = QUERY_DAY.toordinal() - date(1970, 1, 1).toordinal() - 3000
    for n in range(days):
        day = first + n
        events = decode_batch(one_call("org-2", day)).events
        # A near "now" makes a partition of its own for the day (what every day had before).
        now = day * DAY_US if per_day_partitions else TODAY
        store.ingest(events, now=now)
    start = (QUERY_DAY.toordinal() - date(1970, 1, 1).toordinal()) * DAY_US - 3_600_000_000
    end = start + DAY_US
    seconds = []
    for _ in range(queries):
        began = time.perf_counter()
        count = sum(len(page) for page in store.records(org="org-1", start=start, end=end))
        seconds.append(time.perf_counter() - began)
    assert count > 1000, count
    store.close()
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ).fetchone()
    assert row is not None
    return statistics.median(seconds), int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for label, days, per_day in (
        ("10 days stored", 10, False),
        (f"{args.days:,} distinct far days (a partition per month)", args.days, False),
        (f"{args.days:,} days, a partition each", args.days, True),
    ):
        with database("samtal_bench_partitions") as url:
            seconds, partitions = timed(url, days, per_day, args.queries)
        rows.append((f"{label} ({partitions:,} partitions)", seconds * 1000, "ms"))
    base = rows[0][1]
    rows += [("ratio, far days / 10 days", rows[1][1] / base, "x")]
    rows += [("ratio, a partition per day / 10 days", rows[2][1] / base, "x")]
    report(f"postgres partitions: one day of org-1 (2,000 calls), median of {args.queries}", rows)


if __name__ == "__main__":
    main()
