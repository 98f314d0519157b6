"""Stats: GET /cdr/stats for two months of a 2,000-calls-a-day organisation with
`interval=hour`, next to streaming the same records as JSON from GET /cdr/historik, in the
same run and the same server; and the same figures over a copy with `samtal stats`.

Target (issue 15): the figures in at most the time it takes to stream the records (ratio <= 1).

    python bench/stats.py [--repeat N] [--db postgresql://…/an_empty_database]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import httpx

from _common import OUT, report, simulated
from _server import ServerProcess, samtal

FROM, TO = "2017-01-02", "2017-03-02"


def build(db: str | None) -> str:
    """The samtal database of two months of org-1, made once (on SQLite, or in the empty
    database at `db`)."""
    path = OUT / "stats.db"
    fresh = db is not None or not path.exists()
    db = db or f"sqlite:///{path}"
    if fresh:
        events = simulated(
            "stats-60d.ndjson",
            *("--orgs", "1", "--days", "60", "--seed", "4", "--start", FROM),
            *("--calls-per-day", "2000"),
        )
        samtal("org", "add", "org-1", db=db)
        subprocess.run(
            [sys.executable, "-m", "samtal", "import", str(events), "--db", db],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return db


def timed(client: httpx.Client, path: str, **params: str) -> tuple[float, bytes]:
    """Seconds for the whole response, and its body."""
    began = time.perf_counter()
    with client.stream("GET", path, params={"from": FROM, "to": TO, **params}) as response:
        response.raise_for_status()
        body = b"".join(response.iter_raw())
    return time.perf_counter() - began, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--db", help="An empty database to load and measure (default: bench/out/stats.db)"
    )
    args = parser.parse_args()
    db = build(args.db)
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    copy = OUT / "stats-copy.db"
    copy.unlink(missing_ok=True)
    pairs: list[tuple[float, float]] = []
    with (
        ServerProcess(db) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client,
    ):
        for _ in range(args.repeat):
            streamed, body = timed(client, "/cdr/historik")
            counted, figures = timed(client, "/cdr/stats", interval="hour")
            pairs.append((streamed, counted))
        records = body.count(b'"callerNo"')
        intervals = figures.count(b'"start"')
        subprocess.run(
            [sys.executable, "-m", "samtal", "sync", "--from", server.url,
             "--into", f"sqlite:///{copy}"],
            check=True, capture_output=True, env={**os.environ, "SAMTAL_TOKEN": token},
        )  # fmt: skip
    command = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "samtal", "stats", "--db", f"sqlite:///{copy}",
             "--from", FROM, "--to", TO, "--interval", "hour", "--format", "json"],
            check=True, capture_output=True,
        )  # fmt: skip
        command.append(time.perf_counter() - began)
    streamed = statistics.median(p[0] for p in pairs)
    counted = statistics.median(p[1] for p in pairs)
    report(
        f"stats: org-1 from {FROM} to {TO}, {records:,} records, {intervals:,} hours, "
        f"median of {args.repeat}, on {db.split(':')[0]}",
        [
            ("GET /cdr/historik, the records as JSON", streamed * 1000, "ms"),
            ("GET /cdr/stats?interval=hour", counted * 1000, "ms"),
            ("ratio stats / historik (target <= 1)",
             statistics.median(c / s for s, c in pairs), "x"),
            ("samtal stats --interval hour on a copy (a process)",
             statistics.median(command) * 1000, "ms"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
