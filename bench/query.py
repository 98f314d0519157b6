"""Query: records/s of GET /cdr/historik for one organisation's two months (~250k records),
next to a bare indexed SQLite scan of the same seven columns encoded with orjson in-process;
the server's peak memory while it streams; and one response group's records of the two months
(a few percent of them) next to the whole period, in the same run.

Targets (issue 3): >= 0.5x the bare scan, server peak RSS <= 200 MB. Issue 14: one group's
records cost at most 0.2x the whole period.

    python bench/query.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from _common import OUT, report, simulated
from _server import ServerProcess, samtal

FROM, TO = "2017-01-02", "2017-03-02"
COLUMNS = ("callerNo", "start", "receivingNo", "received", "calleeNo", "calleeAnswered", "stop")


def two_months() -> Path:
    """The simulated events of org-1's two months from FROM, made once (bench/out/)."""
    return simulated(
        "query-60d.ndjson",
        *("--orgs", "1", "--days", "60", "--seed", "3", "--start", FROM),
        *("--calls-per-day", "6000"),
    )


def build() -> tuple[str, Path]:
    """The samtal database of two months of org-1 and the bare table beside it, made once."""
    db_path = OUT / "query.db"
    bare_path = OUT / "query-bare.db"
    db = f"sqlite:///{db_path}"
    if not bare_path.exists():
        for stale in OUT.glob("query*.db*"):
            stale.unlink()
        events = two_months()
        samtal("org", "add", "org-1", db=db)
        subprocess.run(
            [sys.executable, "-m", "samtal", "import", str(events), "--db", db],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        source = sqlite3.connect(db_path)
        bare = sqlite3.connect(bare_path)
        bare.execute(
            f"CREATE TABLE records (org TEXT, start_ms INTEGER, call TEXT, "
            f"{', '.join(f'{c} TEXT' for c in COLUMNS)})"
        )
        bare.executemany(
            f"INSERT INTO records VALUES (?, ?, ?, {', '.join('?' * len(COLUMNS))})",
            (
                (org, start_ms, call, *orjson.loads(json).values())
                for org, start_ms, call, json in source.execute(
                    "SELECT org, start_ms, call, json FROM records"
                )
            ),
        )
        bare.execute("CREATE INDEX records_by_start ON records (org, start_ms, call)")
        bare.commit()
        bare.close()
        source.close()
    return db, bare_path


def bare_scan(path: Path) -> tuple[float, int]:
    """The floor: an indexed scan of the seven columns, each row a dict, encoded by orjson."""
    db = sqlite3.connect(path)
    began = time.perf_counter()
    rows = db.execute(
        f"SELECT {', '.join(COLUMNS)} FROM records WHERE org = 'org-1' ORDER BY start_ms, call"
    )
    body = orjson.dumps([dict(zip(COLUMNS, row, strict=True)) for row in rows])
    elapsed = time.perf_counter() - began
    count = body.count(b'"callerNo"')
    db.close()
    return elapsed, count


def served(client: httpx.Client, format: str = "json", **filters: str) -> tuple[float, int, float]:
    """Seconds for the whole response, its records, and seconds to its first byte."""
    began = time.perf_counter()
    first = None
    parts = []
    params = {"from": FROM, "to": TO, "format": format, **filters}
    with client.stream("GET", "/cdr/historik", params=params) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None:
                first = time.perf_counter() - began
            parts.append(chunk)
    elapsed = time.perf_counter() - began
    body = b"".join(parts)
    records = body.count(b'"callerNo"') if format != "csv" else body.count(b"\r\n") - 1
    return elapsed, records, first or 0.0


def a_small_group(bare_path: Path) -> str:
    """The response group with the fewest records among those with at least 2% of them."""
    with sqlite3.connect(bare_path) as bare:
        counts = bare.execute(
            'SELECT "receivingNo", count(*) FROM records WHERE "receivingNo" IS NOT NULL '
            'GROUP BY "receivingNo"'
        ).fetchall()
        total = bare.execute("SELECT count(*) FROM records").fetchone()[0]
    return str(min((n, group) for group, n in counts if n >= 0.02 * total)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db, bare_path = build()
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    with (
        ServerProcess(db) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client,
    ):
        idle_rss = server.peak_rss_mb()
        pairs = []
        formats: dict[str, list[float]] = {"ndjson": [], "csv": []}
        group = a_small_group(bare_path)
        grouped: list[tuple[float, int, float]] = []
        for _ in range(args.repeat):
            pairs.append((bare_scan(bare_path), served(client)))
            for name, times in formats.items():
                times.append(served(client, name)[0])
            grouped.append(served(client, receivingNo=group))
        peak_rss = server.peak_rss_mb()
    (_, records), _ = pairs[0]
    assert all(p[1][1] == records for p in pairs), "samtal and the bare scan disagree on count"
    bare_med = statistics.median(b[0] for b, _ in pairs)
    served_med = statistics.median(s[0] for _, s in pairs)
    report(
        f"query: org-1 from {FROM} to {TO}, {records:,} records, median of {args.repeat}",
        [
            ("bare indexed scan + orjson, in-process", records / bare_med, "records/s"),
            ("GET /cdr/historik over loopback (whole body)", records / served_med, "records/s"),
            (
                "ratio GET / bare (target >= 0.5)",
                statistics.median(b[0] / s[0] for b, s in pairs),
                "x",
            ),
            ("time to first byte (median)", statistics.median(s[2] for _, s in pairs) * 1000, "ms"),
            *(
                (
                    f"{name} over loopback; ratio to json (target >= 0.8)",
                    statistics.median(s[0] for _, s in pairs) / statistics.median(times),
                    "x",
                )
                for name, times in formats.items()
            ),
            (
                f"receivingNo={group}: {grouped[0][1]:,} records; time / whole period "
                "(target <= 0.2)",
                statistics.median(g[0] / s[0] for g, (_, s) in zip(grouped, pairs, strict=True)),
                "x",
            ),
            ("server peak RSS before the queries", idle_rss, "MB"),
            ("server peak RSS after streaming (target <= 200)", peak_rss, "MB"),
        ],
    )


if __name__ == "__main__":
    main()
