"""Limits: what the rate limiter costs. The one-day query at a steady 200 requests/s (open loop,
`--workers 2`), with rate limits counted in Redis next to rate limits off, in the same run,
alternating, twice each. The limit is set high enough never to refuse.

Target (issue 11): the limiter costs <= 1 ms at p50.

    python bench/rate_limits.py [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

import httpx

from _common import report
from _server import ServerProcess, samtal
from latency import build, open_loop

REDIS = os.environ.get("SAMTAL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def measure(url: str, token: str, rate: float, seconds: float) -> list[float]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as client:
        await open_loop(client, rate, 2)  # warm up
        return sorted(await open_loop(client, rate, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    db = build()
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    settings = {
        "off": {"SAMTAL_RATE_LIMIT": "off"},
        "Redis": {"SAMTAL_RATE_LIMIT": "100000000/hour", "SAMTAL_REDIS_URL": REDIS},
    }
    runs: dict[str, list[list[float]]] = {name: [] for name in settings}
    for _ in range(2):
        for name, env in settings.items():
            with ServerProcess(db, "--workers", "2", **env) as server:
                runs[name].append(asyncio.run(measure(server.url, token, args.rate, args.seconds)))

    def p(name: str, q: float) -> float:
        return statistics.median(lat[int(len(lat) * q) - 1] * 1000 for lat in runs[name])

    report(
        f"limits: one day at {args.rate:g} requests/s for {args.seconds:g} s, open loop, "
        "--workers 2, median of 2 runs each",
        [
            ("p50, limits off", p("off", 0.5), "ms"),
            ("p50, limits in Redis", p("Redis", 0.5), "ms"),
            ("p50 cost of the limiter (target <= 1)", p("Redis", 0.5) - p("off", 0.5), "ms"),
            ("p99, limits off", p("off", 0.99), "ms"),
            ("p99, limits in Redis", p("Redis", 0.99), "ms"),
        ],
    )


if __name__ == "__main__":
    main()
