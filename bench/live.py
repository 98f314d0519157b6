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

`--history DAYS` first stores that many earlier days of the same organisations (`--history-calls`
a working day in all), untimed, once for each checkout; each run starts from a copy. A store
that holds months is what an operator runs, and what a plan over every day's partition costs
only shows there (the thirty-ninth session: a month on PostgreSQL).

    python bench/live.py [--orgs N] [--batch N] [--lines N] [--repeat N] [--against DIR]
                         [--only ENGINE] [--history DAYS] [--history-calls N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg

from _common import report, simulated
from _server import source_env
from postgres import database

ENGINES = ("sqlite", "postgres")
#: Calls a day across the organisations, however many they are.
CALLS = 100_000
#: The stream's day.
DAY = date(2017, 1, 11)


def stream(orgs: int) -> Path:
    """A day of `orgs` organisations' calls, 100,000 in all, in time order (about 720k lines)."""
    return simulated(
        f"live-{orgs}x1d.ndjson",
        *("--orgs", str(orgs), "--days", "1", "--seed", "5", "--start", DAY.isoformat()),
        *("--calls-per-day", str(CALLS // orgs)),
    )


def earlier(orgs: int, days: int, calls: int) -> Path:
    """The `days` before the stream's day of the same organisations, `calls` a working day."""
    return simulated(
        f"live-{orgs}x{days}d-{calls}-before.ndjson",
        *("--orgs", str(orgs), "--days", str(days), "--seed", "6"),
        *("--start", (DAY - timedelta(days=days)).isoformat()),
        *("--calls-per-day", str(max(1, calls // orgs))),
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


def _env(source: Path | None) -> dict[str, str]:
    return {**os.environ, **source_env(source), "SAMTAL_RETENTION_DAYS": "0"}


def prepared(
    engine: str, n: int, args: argparse.Namespace, source: Path | None, stack: ExitStack
) -> str:
    """A store of `engine` holding the organisations and, with `--history`, their earlier days,
    made once by the samtal of `source` (the `n`th); each run starts from a copy of it."""
    if engine == "postgres":
        url = stack.enter_context(database(f"samtal_bench_live_base_{n}"))
    else:
        url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/live.db"
    env = _env(source)
    orgs = "".join(f"org-{n}\n" for n in range(1, args.orgs + 1))
    samtal = [sys.executable, "-m", "samtal"]
    subprocess.run(
        [*samtal, "org", "add", "--from", "-", "--db", url],
        input=orgs.encode(), check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if args.history:
        history = earlier(args.orgs, args.history, args.history_calls)
        began = time.perf_counter()
        subprocess.run(
            [*samtal, "import", str(history), "--db", url],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        if engine == "postgres":  # the statistics autovacuum gathers soon after, in service
            with psycopg.connect(url, autocommit=True) as db:
                db.execute("ANALYZE")
        print(
            f"  {engine}: {args.history} earlier days stored by checkout {n} "
            f"in {time.perf_counter() - began:.1f} s"
        )
    return url


@contextmanager
def copy_of(base: str) -> Iterator[str]:
    """A new store with what `base` holds: a PostgreSQL database made from it as a template, or
    a copy of the SQLite file."""
    if base.startswith("postgresql"):
        with database("samtal_bench_live", template=urlsplit(base).path.lstrip("/")) as url:
            yield url
        return
    original = Path(base.removeprefix("sqlite:///"))
    with tempfile.TemporaryDirectory() as folder:
        for file in original.parent.glob(original.name + "*"):  # the WAL, if one was left
            shutil.copy(file, Path(folder) / file.name)
        yield f"sqlite:///{folder}/{original.name}"


def run(base: str, path: Path, args: argparse.Namespace, source: Path | None) -> dict[str, float]:
    """One run of `worker` on a copy of the store `base`, by the samtal of `source`."""
    with copy_of(base) as url:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", url, str(path), str(args.lines),
             str(args.batch)],
            check=True,
            env=_env(source),
            capture_output=True,
        )  # fmt: skip
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="lines a batch")
    parser.add_argument("--lines", type=int, default=60_000, help="lines of the stream stored")
    parser.add_argument("--orgs", type=int, default=50, help="organisations in the stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--only", choices=ENGINES)
    parser.add_argument("--history", type=int, default=0, help="earlier days held beforehand")
    parser.add_argument("--history-calls", type=int, default=20_000, help="their calls a day")
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
        with ExitStack() as stack:
            bases = {
                name: prepared(engine, n, args, source, stack)
                for n, (name, source) in enumerate(sources.items())
            }
            for _ in range(args.repeat):
                for name, source in sources.items():  # alternating, so that noise falls on both
                    runs[name].append(run(bases[name], path, args, source))
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
        held = f", {args.history} earlier days held" if args.history else ""
        report(
            f"live stream on {engine}, batches of {args.batch}{held}, median of {args.repeat}",
            rows,
        )


if __name__ == "__main__":
    main()
