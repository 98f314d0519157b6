"""Latency: p50 and p99 of a one-day query (~2,000 records) at a steady 100 requests/s, open
loop, on loopback, for 20 seconds; and the most one-day queries per second the server sustains.

Target (issue 3): p99 <= 50 ms at 100 requests/s.

    python bench/latency.py [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import httpx

from _common import OUT, report, simulated
from _server import ServerProcess, samtal

DAY = "2017-01-11"  # a Wednesday


def build() -> str:
    path = OUT / "latency.db"
    db = f"sqlite:///{path}"
    if not path.exists():
        events = simulated(
            "latency-7d.ndjson",
            "--orgs",
            "1",
            "--days",
            "7",
            "--seed",
            "4",
            "--start",
            "2017-01-09",
            "--calls-per-day",
            "2000",
        )
        samtal("org", "add", "org-1", db=db)
        subprocess.run(
            [sys.executable, "-m", "samtal", "import", str(events), "--db", db],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return db


async def open_loop(client: httpx.AsyncClient, rate: float, seconds: float) -> list[float]:
    """Send at fixed times whatever happens; each latency counts from its scheduled time."""
    latencies: list[float] = []
    began = time.perf_counter()

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        response = await client.get("/cdr/historik", params={"from": DAY, "to": DAY})
        response.raise_for_status()
        latencies.append(time.perf_counter() - at)

    await asyncio.gather(*(one(began + n / rate) for n in range(int(rate * seconds))))
    return latencies


async def closed_loop(client: httpx.AsyncClient, workers: int, seconds: float) -> float:
    """Requests/s with `workers` connections each sending the next query as soon as it can."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            response = await client.get("/cdr/historik", params={"from": DAY, "to": DAY})
            response.raise_for_status()
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - began)


async def run(url: str, token: str, rate: float, seconds: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:
        sample = await client.get("/cdr/historik", params={"from": DAY, "to": DAY})
        records, size = sample.content.count(b'"callerNo"'), len(sample.content)
        await open_loop(client, rate, 2)  # warm up
        latencies = sorted(await open_loop(client, rate, seconds))
        best = max([await closed_loop(client, workers, 8) for workers in (2, 4, 8)])
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    report(
        f"latency: one day ({records:,} records, {size / 1000:,.0f} kB) at {rate:g} "
        f"requests/s for {seconds:g} s, open loop",
        [
            ("p50", p50, "ms"),
            ("p99 (target <= 50)", p99, "ms"),
            ("max", latencies[-1] * 1000, "ms"),
            ("most one-day queries/s sustained (2-8 conns)", best, "requests/s"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    db = build()
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    with ServerProcess(db) as server:
        asyncio.run(run(server.url, token, args.rate, args.seconds))


if __name__ == "__main__":
    main()
