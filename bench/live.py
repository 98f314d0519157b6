"""Ingest of a live stream: what a switch sends as its calls go on, cut into small batches, so
that most events belong to calls already under way (first seen in an earlier batch).

The other ingest benchmarks load whole calls: an import's batches of 20,000 lines (50,000 into
SQLite), tenants.py's batches of complete calls. A switch posting every second or two sends a
call's `started`, its `answered` and its `ended` in different batches, minutes apart; the store
reads back each call's stored events and writes its row again. This measures that path: a
simulated day of `--orgs` organisations (100,000 calls in all) in time order, its first
`--lines` lines in batches of `--batch`, stored one batch after another in process
(`samtal.ingest.ingest`: no HTTP, decoded beforehand), on SQLite and on PostgreSQL (the server
of postgres.py). Lines/s and ms a batch, medians of `--repeat`. With `--against DIR` (another
checkout), the two alternate, run by run.

    python bench/live.py [--orgs N] [--batch N] [--lines N] [--repeat N] [--against DIR]
                         [--only ENGINE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from _common import report, simulated
from _server import source_env
from postgres import database

ENGINES = ("sqlite", "postgres")
#: Calls a day across the organisations, however many they are.
CALLS = 100_000


def stream(orgs: int) -> Path:
    """A day of `orgs` organisations' calls, 100,000 in all, in time order (about 720k lines)."""
    return simulated(
        f"live-{orgs}x1d.ndjson",
        *("--orgs", str(orgs), "--days", "1", "--seed", "5", "--start", "2017-01-11"),
        *("--calls-per-day", str(CALLS // orgs)),
    )


def under_way(path: Path, lines: int, batch: int) -> float:
    """The share of the lines whose call was first seen in an earlier batch."""
    seen: set[tuple[str, str]] = set()
    later = 0
    with path.open("rb") as source:
        chunk: list[tuple[str, str]] = []
        for n, line in enumerate(source):
            if n == lines:
                break
            event = orjson.loads(line)
            key = (event["org"], event["call"])
            later += key in seen
            chunk.append(key)
            if len(chunk) == batch:
                seen.update(chunk)
                chunk.clear()
    return later / lines


def worker(url: str, path: Path, lines: int, batch: int) -> None:
    """Store the stream's first `lines` lines in batches of `batch` (this process's samtal);
    print the seconds the store took, and the median and 99th percentile of a batch's, as
    JSON."""
    from samtal.events import decode_batch
    from samtal.ingest import ingest
    from samtal.store import open_store

    with path.open("rb") as source:
        head = [line for _, line in zip(range(lines), source, strict=False)]
    batches = [
        decode_batch(head[at : at + batch], first_line=at + 1) for at in range(0, lines, batch)
    ]
    now = int(time.time() * 1e6)
    store = open_store(url)
    try:
        accepted = 0
        each: list[float] = []
        for decoded in batches:
            began = time.perf_counter()
            accepted += ingest(store, decoded, now=now).accepted
            each.append(time.perf_counter() - began)
    finally:
        store.close()
    each.sort()
    print(
        json.dumps(
            {
                "seconds": sum(each),
                "accepted": accepted,
                "p50": each[len(each) // 2],
                "p99": each[min(len(each) - 1, len(each) * 99 // 100)],
            }
        )
    )


def run(engine: str, path: Path, args: argparse.Namespace, source: Path | None) -> dict[str, float]:
    """One run of `worker` on a fresh database of `engine`, by the samtal of `source`."""
    env = {**os.environ, **source_env(source), "SAMTAL_RETENTION_DAYS": "0"}
    orgs = "".join(f"org-{n}\n" for n in range(1, args.orgs + 1))

    def measured(url: str) -> dict[str, float]:
        subprocess.run(
            [sys.executable, "-m", "samtal", "org", "add", "--from", "-", "--db", url],
            input=orgs.encode(),
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        done = subprocess.run(
            [sys.executable, __file__, "--worker", url, str(path), str(args.lines),
             str(args.batch)],
            check=True,
            env=env,
            capture_output=True,
        )  # fmt: skip
        return dict(json.loads(done.stdout))

    if engine == "postgres":
        with database("samtal_bench_live") as url:
            return measured(url)
    with tempfile.TemporaryDirectory() as folder:
        return measured(f"sqlite:///{folder}/live.db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="lines a batch")
    parser.add_argument("--lines", type=int, default=60_000, help="lines of the stream stored")
    parser.add_argument("--orgs", type=int, default=50, help="organisations in the stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--only", choices=ENGINES)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, path, lines, batch = args.worker
        worker(url, Path(path), int(lines), int(batch))
        return
    path = stream(args.orgs)
    share = under_way(path, args.lines, args.batch)
    print(
        f"{args.lines:,} lines of {args.orgs:,} organisations in batches of {args.batch}: "
        f"{share:.0%} of them of calls first seen in an earlier batch"
    )
    sources: dict[str, Path | None] = {"this checkout": None}
    if args.against:
        sources[f"against {args.against}"] = args.against
    for engine in ENGINES if args.only is None else (args.only,):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
        for _ in range(args.repeat):
            for name, source in sources.items():  # alternating, so that noise falls on both
                runs[name].append(run(engine, path, args, source))
        rows: list[tuple[str, float, str]] = []
        medians = {name: statistics.median(r["seconds"] for r in got) for name, got in runs.items()}
        for name, median in medians.items():
            rows.append((f"{name}", args.lines / median, "lines/s"))
            rows.append((f"{name}, a batch", median * 1000 / -(-args.lines // args.batch), "ms"))
            for at in ("p50", "p99"):
                figure = statistics.median(r[at] for r in runs[name]) * 1000
                rows.append((f"{name}, a batch, {at}", figure, "ms"))
            print(f"  {engine} {name}: " + ", ".join(f"{r['seconds']:.2f} s" for r in runs[name]))
        if args.against:
            mine, other = medians.values()
            rows.append(("time against the other checkout", mine / other, "x"))
        report(f"live stream on {engine}, batches of {args.batch}, median of {args.repeat}", rows)


if __name__ == "__main__":
    main()
