"""Many tenants in every batch (issue 17): the per-event cost of a batch of 1,000 calls of
1,000 organisations (one call each) against 1,000 calls of one organisation, through POST
/events and through JetStream, on SQLite and on PostgreSQL, in one run.

Target: the mixed batch costs at most 1.5x per event of the single one, on both engines.
The installation keeps 92 days, as by default, and the calls lie within them: every batch is
checked against each of its organisations' retention, as an operator's are.
POSTed batches alternate between the two kinds (so the machine's noise hits both alike), medians
of --rounds; through JetStream, each kind's --rounds batches after its first, over the time
they took. Uses the PostgreSQL of bench/postgres.py and the NATS of bench/jetstream.py.

`--clients K`: K clients post a batch each at once, as a switch's several connections would
(SQLite then stores the K batches in one transaction); a round then adds K batches of each kind
to the history, so `--rounds 15 --clients 4` ends where `--rounds 60` does.

    python bench/tenants.py [--rounds N] [--calls C] [--clients K] [--skip-nats]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx

from _common import report
from _server import ServerProcess, cpu_seconds, samtal, source_env
from jetstream import NATS_URL, acknowledged, remove, stored
from postgres import database
from samtal.streams import StreamNames

ORGS = 1000
#: The installation's retention in days, as by default: every event is checked against its
#: organisation's window, as in production (the other benchmarks keep everything).
RETENTION = "92"
#: The batches' calls are placed from this second on (UTC midnight 60 days ago), a round an
#: hour, inside the retention. The JetStream ones start 1,000 rounds (hours) on, so up to 440
#: rounds lie before now (POST's up to 1,440).
BASE = (int(time.time()) // 86_400 - 60) * 86_400


def batch(kind: str, round_: int, calls: int) -> list[bytes]:
    """`calls` calls of three events each: of one organisation (`single`), or of as many
    organisations as calls (`mixed`), a call each. Every round's calls are new."""
    lines = []
    for n in range(calls):
        org = "org-0" if kind == "single" else f"org-{n % ORGS}"
        call = f"{kind}-{round_}-{n}"
        second = BASE + round_ * 3600 + n
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        common = f'"org":"{org}","call":"{call}"'
        lines += [
            f'{{"id":"{call}.0",{common},"at":"{at}.000Z","type":"started","party":"caller",'
            f'"number":"+4670{n}","dialed":"622"}}\n'.encode(),
            f'{{"id":"{call}.1",{common},"at":"{at}.300Z","type":"answered","party":"user",'
            f'"number":"+4672{n}"}}\n'.encode(),
            f'{{"id":"{call}.2",{common},"at":"{at}.900Z","type":"ended"}}\n'.encode(),
        ]
    return lines


def provisioned(db: str) -> None:
    """The organisations of both kinds of batch, added in bulk."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as names:
        names.write("\n".join(f"org-{n}" for n in range(ORGS)))
    samtal("org", "add", "--from", names.name, db=db)
    os.unlink(names.name)


def posted(db: str, rounds: int, calls: int, clients: int = 1) -> dict[str, list[float]]:
    """Seconds of a POST of each kind, alternating, into `samtal serve` (one process): each
    round, `clients` clients post a batch of the kind each at once, and a batch's figure is
    their time over `clients` (with one client, one POST's time)."""
    provisioned(db)
    token = samtal("token", "create", "--ingest", db=db).splitlines()[-1]
    seconds: dict[str, list[float]] = {"single": [], "mixed": []}
    headers = {"Authorization": f"Bearer {token}"}
    with (
        ServerProcess(db, SAMTAL_RETENTION_DAYS=RETENTION) as server,
        ThreadPoolExecutor(clients) as posters,
    ):
        sessions = [
            httpx.Client(base_url=server.url, headers=headers, timeout=300) for _ in range(clients)
        ]

        def post(session: httpx.Client, body: bytes) -> None:
            answer = session.post("/events", content=body)
            assert answer.json()["accepted"] == 3 * calls, answer.text

        try:
            for round_ in range(rounds):
                for kind in ("single", "mixed"):
                    bodies = [
                        b"".join(batch(kind, round_ * clients + n, calls)) for n in range(clients)
                    ]
                    began = time.perf_counter()
                    list(posters.map(post, sessions, bodies))
                    seconds[kind].append((time.perf_counter() - began) / clients)
        finally:
            for session in sessions:
                session.close()
    return seconds


def consumed(db: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds one `samtal consume` worker takes per batch of each kind (one figure each):
    `rounds` + 1 batches are published first, then the worker starts; from its first batch's
    commit to its last, a batch's share of the time (its start-up is not counted)."""
    provisioned(db)
    seconds: dict[str, list[float]] = {"single": [], "mixed": []}
    for kind in ("single", "mixed"):
        stream = f"B_{uuid.uuid4().hex[:8]}"
        subject = f"b{stream[2:]}.events"
        lines = [line for r in range(rounds + 1) for line in batch(kind, r + 1000, calls)]
        path = Path(tempfile.mkstemp(suffix=".ndjson")[1])
        path.write_bytes(b"".join(lines))
        args = ["--nats", NATS_URL, "--stream", stream, "--subject", subject]
        subprocess.run(
            [sys.executable, "-m", "samtal", "publish", str(path), *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        before = stored(db)
        worker = subprocess.Popen(
            [sys.executable, "-m", "samtal", "consume", *args, "--batch", str(3 * calls)],
            env={**os.environ, "SAMTAL_DATABASE_URL": db, "SAMTAL_RETENTION_DAYS": RETENTION},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            commits = asyncio.run(acknowledged(stream, StreamNames.durable, every=0.002))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            path.unlink()
            asyncio.run(remove(stream))
        assert stored(db) == before + len(lines), "the worker did not store every event"
        # The worker stores several batches at once, so the gaps between commits are not
        # what a batch costs (two batches committing together leave a gap near zero, and the
        # median of a few gaps followed how they bunched): the events stored after the first
        # commit, over the time they took, are.
        (first, at_first), (last, at_last) = commits[0], commits[-1]
        seconds[kind] = [(last - first) / (at_last - at_first) * 3 * calls]
    return seconds


@contextmanager
def engine(name: str, label: str = "tenants") -> Iterator[str]:
    """A fresh database of engine `name` ("sqlite" or "postgres"), its name from `label`; gone
    afterwards."""
    if name == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/{label}.db"
    else:
        with database(f"samtal_bench_{label}_{uuid.uuid4().hex[:6]}") as url:
            yield url


def timed_rounds(
    client: httpx.Client,
    pid: int,
    rounds: int,
    batches: int,
    count: Callable[[], int],
    done: Callable[[], bool] = lambda: True,
) -> dict[str, list[float]]:
    """Rounds of both kinds, alternating, each posting `batches` batches of 1,000 calls
    through `client` and waiting until `count` (what the receiving end has had) has grown by
    1,000 a batch and `done`; each round's figures ("single rate", "single cpu", ...): what
    was had a second, and the CPU ms of the server `pid` for each."""
    figures: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for kind in ("single", "mixed"):
            expected = count() + batches * 1000
            began, cpu = time.monotonic(), cpu_seconds(pid)
            for n in range(batches):
                body = b"".join(batch(kind, round_ * batches + n, 1000))
                answer = client.post("/events", content=body)
                assert answer.json()["accepted"] == 3000, answer.text
            deadline = began + 600
            while (got := count()) < expected or not done():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind}: {got} of {expected}")
                time.sleep(0.05)
            seconds = time.monotonic() - began
            used = cpu_seconds(pid) - cpu
            figures.setdefault(f"{kind} rate", []).append(batches * 1000 / seconds)
            figures.setdefault(f"{kind} cpu", []).append(used / (batches * 1000) * 1e3)
    return figures


def compare_kinds(
    doc: str,
    measure: Callable[[str, int, int, dict[str, str]], dict[str, list[float]]],
    *,
    label: str,
    what: str,
    title: str,
    batches: int,
) -> None:
    """The command line of a benchmark that measures both kinds of batch by `measure` (its
    figures "single rate", "mixed rate", "single cpu", "mixed cpu" by round), on both engines,
    for this checkout and another (`--against`); `what` is what is counted (a "message"),
    `title` what is measured ("webhooks"). Its databases are named after `label`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=batches, help="of 1,000 calls, a round")
    parser.add_argument("--against", type=Path, help="another checkout, measured the same way")
    parser.add_argument("--only", choices=("SQLite", "PostgreSQL"), help="one engine")
    args = parser.parse_args()
    sources: list[tuple[str, Path | None]] = [("this", None)]
    if args.against:
        sources.append(("against", args.against))
    for name in [args.only] if args.only else ["SQLite", "PostgreSQL"]:
        rows = []
        results = {}
        for source_label, source in sources:
            with engine("sqlite" if name == "SQLite" else "postgres", label) as db:
                results[source_label] = measure(db, args.rounds, args.batches, source_env(source))
        for source_label, _ in sources:
            got = {k: statistics.median(values) for k, values in results[source_label].items()}
            rows += [
                (f"1 organisation ({source_label})", got["single rate"], f"{what}s/s"),
                (f"{ORGS:,} organisations ({source_label})", got["mixed rate"], f"{what}s/s"),
                (f"1 organisation, server CPU ({source_label})", got["single cpu"], f"ms a {what}"),
                (
                    f"{ORGS:,} organisations, server CPU ({source_label})",
                    got["mixed cpu"],
                    f"ms a {what}",
                ),
                (
                    f"CPU a {what}, mixed / single ({source_label})",
                    got["mixed cpu"] / got["single cpu"],
                    "x",
                ),
            ]
        if len(sources) == 2:
            for kind in ("single", "mixed"):
                this, other = (
                    statistics.median(results[source][f"{kind} cpu"]) for source, _ in sources
                )
                rows.append((f"{kind}: CPU a {what}, against / this", other / this, "x"))
        report(
            f"{title} on {name}: {args.batches} batches of 1,000 calls a round, "
            f"median of {args.rounds}",
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--skip-nats", action="store_true")
    parser.add_argument(
        "--clients", type=int, default=1, help="clients posting at once (each its own batch)"
    )
    args = parser.parse_args()
    events = 3 * args.calls
    for name in ("sqlite", "postgres"):
        rows = []
        post_label = "POST /events" + (f", {args.clients} clients" if args.clients > 1 else "")
        paths = [(post_label, partial(posted, clients=args.clients))]
        if not args.skip_nats:
            paths.append(("JetStream, one consumer", consumed))
        for label, run in paths:
            with engine(name) as db:
                seconds = run(db, args.rounds, args.calls)
            single, mixed = (statistics.median(seconds[k]) for k in ("single", "mixed"))
            rows += [
                (f"{label}: {args.calls:,} calls of 1 organisation", events / single, "events/s"),
                (
                    f"{label}: {args.calls:,} calls of {ORGS:,} organisations",
                    events / mixed,
                    "events/s",
                ),
                (f"{label}: per-event cost, mixed / single (target <= 1.5)", mixed / single, "x"),
            ]
        report(f"tenants on {name}: batches of {events:,} events, median of {args.rounds}", rows)


if __name__ == "__main__":
    main()
