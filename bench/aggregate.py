"""Events/s of `samtal aggregate` on ~1 million simulated events, next to a bare decode.

The baseline is the least any aggregator in Python must do: `orjson.loads` of every line
into a dict. Target (issue 2): aggregation at >= 0.25x the speed of that bare decode.

    python bench/aggregate.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import orjson

from _common import median_seconds, report, simulated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # 3 organisations x 5 working days x 9,000 calls ~ 1 million events.
    path = simulated(
        "aggregate-1m.ndjson",
        "--orgs",
        "3",
        "--days",
        "5",
        "--seed",
        "1",
        "--start",
        "2017-01-09",
        "--calls-per-day",
        "9000",
        "--duplicates",
        "0.01",
        "--disorder",
        "0.01",
    )
    with open(path, "rb") as f:
        lines = f.readlines()
    events = len(lines)

    def bare() -> None:
        loads = orjson.loads
        for line in lines:
            loads(line)

    def aggregate() -> None:
        subprocess.run(
            [sys.executable, "-m", "samtal", "aggregate", str(path)],
            stdout=subprocess.DEVNULL,
            check=True,
        )

    # Alternate the two so that the machine's mood (it is shared) weighs on both alike, and
    # take the median of each pair's ratio.
    pairs = [
        (median_seconds(bare, 1)[0], median_seconds(aggregate, 1)[0]) for _ in range(args.repeat)
    ]
    bare_s = statistics.median(b for b, _ in pairs)
    agg_s = statistics.median(a for _, a in pairs)
    ratio = statistics.median(b / a for b, a in pairs)
    report(
        f"aggregate: {events:,} events ({path.stat().st_size / 1e6:,.0f} MB), "
        f"median of {args.repeat} alternating runs",
        [
            ("bare decode, orjson.loads per line", events / bare_s, "events/s"),
            ("samtal aggregate (whole command)", events / agg_s, "events/s"),
            ("ratio aggregate / bare (target >= 0.25)", ratio, "x"),
        ],
    )


if __name__ == "__main__":
    main()
