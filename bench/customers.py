"""What an operator's thousands of customer organisations cost beside the ingest, on both
engines: provisioning them (`samtal org add --from`, `samtal token create --from`), a round of
the server's duties with nothing expired, PostgreSQL's daily drop of a day's partitions,
`samtal serve` idle with a webhook subscription for each organisation, and then each
organisation's token used once (100 requests at a time), a batch posted right after, and
`samtal serve` under a trickle of small batches (one call every 50 ms).

Each of these once cost something per organisation: a process per token, a transaction per
organisation in each round of duties and in each day's drop, whole subscriptions counted and
built every second (bench/README.md, "Twenty-sixth session"); a transaction for each token's
first use, which a batch posted then waited behind, and a read of every organisation's
change numbers by SQLite's watcher after each commit ("Twenty-ninth session"). `--against
DIR` runs the same for the checkout at DIR (e.g. `git worktree add /tmp/old 906d316`) and
prints the ratios; an older checkout without `token create --from` shows that row as not
there.
PostgreSQL at SAMTAL_BENCH_POSTGRES_URL, as bench/postgres.py.

    python bench/customers.py [--orgs N] [--seconds S] [--against DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

from _common import report
from _server import ServerProcess, cpu_seconds, source_env
from postgres import database
from tenants import batch

#: What runs in a process of the checkout measured: the duties' rounds and the partitions'
#: drops on the database given, the organisations there already. Prints the seconds.
_IN_PROCESS = textwrap.dedent(
    """
    import statistics, sys, time
    from samtal.clock import system_clock
    from samtal.outbound.duties import run_duties
    from samtal.settings import Settings
    from samtal.store import open_store
    url = sys.argv[1]
    store = open_store(url)
    settings = Settings(database_url=url, retention_days=92)
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        run_duties(store, settings, now=system_clock())
        rounds.append(time.perf_counter() - began)
    print("duties", statistics.median(rounds))
    if url.startswith("postgresql"):
        drops = []
        for today in (18000, 18001, 18002):  # days far back: nothing of the traffic's
            store.engine.prepare_days({today}, today=today)
            began = time.perf_counter()
            store.drop_days(today + 1)
            drops.append(time.perf_counter() - began)
        print("drop", statistics.median(drops))
    now = system_clock()
    for org in store.orgs():
        store.add_webhook(org.name, "http://127.0.0.1:9/", now=now)
    store.close()
    """
)


def timed(*args: str, env: dict[str, str]) -> tuple[float | None, str]:
    """Seconds a samtal command takes (None when this checkout's samtal has no such command),
    and what it printed."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "samtal", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    if done.returncode == 2 and "no such option" in done.stderr.lower():
        return None, ""
    done.check_returncode()
    return time.perf_counter() - began, done.stdout


async def used_once(url: str, tokens: list[str], at_once: int = 100) -> None:
    """Each token's first request (an empty page of its feed), `at_once` at a time."""
    gate = asyncio.Semaphore(at_once)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def use(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with gate, session.get(f"{url}/cdr/changes?limit=1", headers=headers) as got:
                assert got.status == 200, await got.text()

        await asyncio.gather(*(use(token) for token in tokens))


def measure(db: str, names: Path, seconds: float, env: dict[str, str]) -> dict[str, float | None]:
    """The figures of one checkout on a fresh database."""
    figures: dict[str, float | None] = {
        "org add --from": timed("org", "add", "--from", str(names), "--db", db, env=env)[0]
    }
    figures["token create --from"], made = timed(
        "token", "create", "--from", str(names), "--db", db, env=env
    )
    tokens = [line.split("\t")[-1] for line in made.splitlines()]
    timed("org", "add", "org-0", "--db", db, env=env)  # the posted batch's (tenants.py's)
    ingest = timed("token", "create", "--ingest", "--db", db, env=env)[1].split()[-1]
    done = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, db],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    for line in done.stdout.splitlines():
        what, value = line.split()
        figures[what] = float(value)
    with ServerProcess(db, **env) as server:
        time.sleep(40)  # every subscription's task started and gone idle (PostgreSQL: 25 s)
        before, began = cpu_seconds(server.process.pid), time.monotonic()
        time.sleep(seconds)
        figures["idle"] = (cpu_seconds(server.process.pid) - before) / (time.monotonic() - began)
        if tokens:  # (an older checkout's `token create --from` may not be there)
            before, began = cpu_seconds(server.process.pid), time.perf_counter()
            asyncio.run(used_once(server.url, tokens))
            figures["first uses"] = time.perf_counter() - began
            body = b"".join(batch("single", 0, 1000))
            began = time.perf_counter()
            posted = httpx.post(
                f"{server.url}/events",
                content=body,
                headers={"Authorization": f"Bearer {ingest}"},
                timeout=300,
            )
            figures["post after"] = time.perf_counter() - began
            assert posted.json()["accepted"] == 3000, posted.text[:500]
            figures["first uses cpu"] = cpu_seconds(server.process.pid) - before
            figures["trickle"] = trickle(server, ingest, seconds)
    return figures


def trickle(server: ServerProcess, ingest: str, seconds: float) -> float:
    """serve's share of a core while a batch of one call comes every 50 ms for `seconds`: each
    commit woke the change watcher, which read every organisation's numbers (13 ms for
    10,000) up to ten times a second."""
    headers = {"Authorization": f"Bearer {ingest}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        before, began = cpu_seconds(server.process.pid), time.monotonic()
        sent = 0
        while time.monotonic() - began < seconds:
            sent += 1
            posted = client.post("/events", content=b"".join(batch("single", sent, 1)))
            assert posted.json()["accepted"] == 3, posted.text[:500]
            time.sleep(0.05)
        return (cpu_seconds(server.process.pid) - before) / (time.monotonic() - began)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/customers.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument(
        "--seconds",
        type=float,
        default=60,
        help="of idle serve measured, after 40 s of start-up (60: a whole cycle of the 60 s "
        "look that idle subscriptions took before the twenty-sixth session)",
    )
    parser.add_argument("--against", type=Path, help="another checkout, measured the same way")
    args = parser.parse_args()
    sources: list[tuple[str, Path | None]] = [("this", None)]
    if args.against:
        sources.append(("against", args.against))
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp) / "customers.txt"
        names.write_text("".join(f"kund-{n}\n" for n in range(args.orgs)))
        for engine, fresh in (("SQLite", sqlite_database), ("PostgreSQL", None)):
            results = {}
            for label, source in sources:
                env = source_env(source)
                if fresh is None:
                    with database("samtal_bench_customers") as db:
                        results[label] = measure(db, names, args.seconds, env)
                else:
                    with fresh() as db:
                        results[label] = measure(db, names, args.seconds, env)
            rows = []
            for what, unit, scale in (
                ("org add --from", "s", 1),
                ("token create --from", "s", 1),
                ("duties", "s a round (median of 5)", 1),
                ("drop", "s a day dropped (median of 3)", 1),
                ("idle", "% of a core, serve idle", 100),
                ("first uses", "s, each token's first request", 1),
                ("post after", "s, a batch of 1,000 calls posted right after", 1),
                ("first uses cpu", "s of serve's CPU, both", 1),
                ("trickle", "% of a core, a batch of one call every 50 ms", 100),
            ):
                for label, _ in sources:
                    value = results[label].get(what)
                    if value is not None:
                        rows.append((f"{what} ({label})", value * scale, unit))
                values = [results[label].get(what) for label, _ in sources]
                if len(values) == 2 and all(values) and values[0]:
                    rows.append((f"{what}: against / this", values[1] / values[0], "x"))
            report(f"{engine}, {args.orgs:,} organisations, a subscription each", rows)
    print("\n(one run of each checkout; run it more than once on a shared machine)")


if __name__ == "__main__":
    main()
