"""Scale on PostgreSQL: p50 and p99 of one organisation's one-day query when the database holds
that organisation alone for 30 days, and then 10 organisations for 92 days each.

Target (issue 7): flat within 20%. Uses SAMTAL_BENCH_POSTGRES_URL like bench/postgres.py.

    python bench/scale.py [--rate R] [--seconds S] [--calls-per-day N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import httpx

from _common import report, simulated
from _server import ServerProcess, samtal
from latency import open_loop
from postgres import database, imported

DAY = "2017-01-11"  # a Wednesday, in both data sets


async def measure(url: str, token: str, rate: float, seconds: float) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        sample = await client.get("/cdr/historik", params={"from": DAY, "to": DAY})
        await open_loop(client, rate, 2)
        times = sorted(await open_loop(client, rate, seconds))
    return (
        statistics.median(times) * 1000,
        times[int(len(times) * 0.99) - 1] * 1000,
        sample.content.count(b'"callerNo"'),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--calls-per-day", default="500")
    args = parser.parse_args()
    rows = []
    figures = []
    for orgs, days, start in (("1", "30", "2016-12-28"), ("10", "92", "2016-11-01")):
        events = simulated(
            f"scale-{orgs}x{days}.ndjson",
            *("--orgs", orgs, "--days", days, "--seed", "9", "--start", start),
            *("--calls-per-day", args.calls_per_day),
        )
        with database("samtal_bench_scale") as db:
            for n in range(2, int(orgs) + 1):
                samtal("org", "add", f"org-{n}", db=db)
            imported(db, events)  # adds org-1
            token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
            with ServerProcess(db) as server:
                p50, p99, records = asyncio.run(measure(server.url, token, args.rate, args.seconds))
        figures.append((p50, p99))
        rows += [
            (f"{orgs} org(s) x {days} days: p50 ({records:,} records)", p50, "ms"),
            (f"{orgs} org(s) x {days} days: p99", p99, "ms"),
        ]
    (small50, small99), (large50, large99) = figures
    rows += [
        ("p50 large / small (target within 1.2)", large50 / small50, "x"),
        ("p99 large / small (target within 1.2)", large99 / small99, "x"),
    ]
    report(f"scale: org-1's {DAY} at {args.rate:g} requests/s for {args.seconds:g} s", rows)


if __name__ == "__main__":
    main()
