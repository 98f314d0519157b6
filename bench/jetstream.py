"""NATS JetStream: events/s through `samtal publish`, then through one and two `samtal consume`
workers into PostgreSQL, next to `samtal import` of the same file into PostgreSQL, in one run.

Target (issue 8): one consumer >= 0.5x import, one event a message (as a switch sends them).
Also measured: one consumer of the same events published `--pack N` (default 50) of an
organisation a message. Uses the NATS at SAMTAL_BENCH_NATS_URL (default nats://127.0.0.1:4222)
and the PostgreSQL of bench/postgres.py; makes and removes its own streams and databases.

    python bench/jetstream.py [--repeat N] [--pack N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import nats
import psycopg
from nats.js.errors import NotFoundError

from _common import report, simulated
from _server import samtal
from postgres import database, imported

BATCH = ["--batch", os.environ.get("BENCH_BATCH", "5000")]
NATS_URL = os.environ.get("SAMTAL_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def distinct_events(path: Path) -> int:
    return len({(e["org"], e["id"]) for e in map(json.loads, path.read_bytes().splitlines())})


def stored(db: str) -> int:
    """The events the database at `db` holds (SQLite or PostgreSQL), counted once."""
    if db.startswith("sqlite:"):
        with closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


def consumed(db: str, args: list[str], workers: int, expected: int) -> float:
    """Seconds for `workers` consumers to store every event of the stream into `db`: until they
    have acknowledged its every message (each once its batch is committed), asked of NATS every
    20 ms. (Counting the events in the database every 100 ms took a backend about 18 ms a count
    by the end, a share of the two cores the consumers share.) Then the events stored are
    checked."""
    for org in ("org-1", "org-2"):
        samtal("org", "add", org, db=db)
    stream, durable = _option(args, "--stream"), _option(args, "--durable")
    began = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "samtal", "consume", *args, "--db", db],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        seconds = asyncio.run(acknowledged(stream, durable, every=0.02))[-1][0] - began
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    assert stored(db) == expected, (stored(db), expected)
    return seconds


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


async def acknowledged(stream: str, durable: str, *, every: float) -> list[tuple[float, int]]:
    """When the consumer `durable` of `stream` had acknowledged more messages (each once its
    batch is committed), and how many, asked of NATS every `every` seconds until it has
    acknowledged every message in the stream. NATS answers from memory: counting the events
    in the database as often kept a backend counting on one of the two cores the consumers
    share (bench/README.md, twenty-second session)."""
    connection = await nats.connect(NATS_URL)
    js = connection.jetstream()
    commits: list[tuple[float, int]] = []
    seen = 0
    try:
        last = (await js.stream_info(stream)).state.last_seq
        while seen < last:
            try:
                info = await js.consumer_info(stream, durable)
            except NotFoundError:  # no worker has made it yet
                info = None
            acked = info.ack_floor.stream_seq if info is not None and info.ack_floor else 0
            if acked > seen:
                commits.append((time.perf_counter(), acked))
                seen = acked
            await asyncio.sleep(every)
    finally:
        await connection.close()
    return commits


async def remove(stream: str) -> None:
    connection = await nats.connect(NATS_URL)
    await connection.jetstream().delete_stream(stream)
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pack",
        type=int,
        default=50,
        help="events a message in the packed stream (publish --pack)",
    )
    args_ = parser.parse_args()
    events = simulated(
        "nats-2x5d.ndjson",
        *("--orgs", "2", "--days", "5", "--seed", "6", "--start", "2017-01-09"),
        *("--calls-per-day", "3000"),
    )
    lines = len(events.read_bytes().splitlines())
    expected = distinct_events(events)
    name = uuid.uuid4().hex[:8]
    stream, subject = f"BENCH_{name}", f"bench{name}.events"
    args = ["--nats", NATS_URL, "--stream", stream, "--subject", subject]
    packed = ["--nats", NATS_URL, "--stream", f"{stream}_P", "--subject", f"{subject}p"]
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "samtal", "publish", str(events), *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    publish_seconds = time.perf_counter() - began
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "samtal",
            "publish",
            str(events),
            *packed,
            "--pack",
            str(args_.pack),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    packed_publish_seconds = time.perf_counter() - began
    # Each round imports, then consumes the stream from its start with one and with two new
    # durable consumers: the ratio is taken within a round, then its median.
    rounds: list[tuple[float, float, float, float]] = []
    try:
        for n in range(args_.repeat):
            with database("samtal_bench_import") as db:
                samtal("org", "add", "org-2", db=db)
                import_seconds = imported(db, events)
            with database("samtal_bench_one") as db:
                one = consumed(db, [*args, "--durable", f"one{n}", *BATCH], 1, expected)
            with database("samtal_bench_two") as db:
                two = consumed(db, [*args, "--durable", f"two{n}", *BATCH], 2, expected)
            with database("samtal_bench_packed") as db:
                one_packed = consumed(db, [*packed, "--durable", f"p{n}", *BATCH], 1, expected)
            rounds.append((import_seconds, one, two, one_packed))
    finally:
        asyncio.run(remove(stream))
        asyncio.run(remove(f"{stream}_P"))
    import_s, one_s, two_s, packed_s = (statistics.median(r[k] for r in rounds) for k in range(4))
    report(
        f"nats: {lines:,} events ({expected:,} distinct), 2 organisations, into PostgreSQL, "
        f"median of {args_.repeat}",
        [
            ("samtal import (whole command)", lines / import_s, "events/s"),
            ("samtal publish (acknowledged, one run)", lines / publish_seconds, "events/s"),
            ("one samtal consume", lines / one_s, "events/s"),
            ("two samtal consume", lines / two_s, "events/s"),
            (
                "ratio one consumer / import (target >= 0.5)",
                statistics.median(i / o for i, o, _, _ in rounds),
                "x",
            ),
            (
                f"samtal publish --pack {args_.pack} (acknowledged, one run)",
                lines / packed_publish_seconds,
                "events/s",
            ),
            (f"one samtal consume, {args_.pack} events a message", lines / packed_s, "events/s"),
            (
                f"ratio one consumer / import, {args_.pack} events a message",
                statistics.median(i / p for i, _, _, p in rounds),
                "x",
            ),
        ],
    )


if __name__ == "__main__":
    main()
