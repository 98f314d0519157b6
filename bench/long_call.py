"""What a call that never ends costs every batch after it: a switch that loops on one call
sends its events without end, and each batch that holds one more of them makes the store read
the call's events again to make its record.

Stores batches of 1,000 events of one such call (a start, then rings), each with ten other
calls' starts beside it, in process (`Store.ingest`, no HTTP), into a fresh database of each
engine, and prints the time of a batch as the call grows. Since 2026-12-05 a call keeps at most
`MAX_CALL_EVENTS` events: past that the batch's events of it are rejected, and a batch costs
what it cost at that size. The ratio is the last batch's time to the first's.

    python bench/long_call.py [--batches N] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from _common import report
from postgres import database
from samtal.events import decode_batch
from samtal.store import MAX_CALL_EVENTS, open_store

#: The first event's instant (2025-12-03 08:20 UTC), in microseconds.
T0 = 1_764_750_000_000_000


def _line(org: str, call: str, n: int, instant: int) -> bytes:
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(instant // 10**6)) + ".000Z"
    event = {"org": org, "call": call, "id": f"{call}.{n}", "seq": n, "at": at}
    if n == 0:
        event |= {"type": "started", "party": "caller", "number": "+4670111", "dialed": "622"}
    else:
        event |= {"type": "ringing", "party": "user", "number": f"+46701{n % 50:02d}"}
    return orjson.dumps(event)


def run(url: str, batches: int) -> list[tuple[int, float]]:
    """(events of the call sent so far, seconds) of each batch."""
    store = open_store(url)
    store.add_org("o", "Europe/Stockholm", now=T0)
    out = []
    sent = 0
    for b in range(batches):
        lines = [_line("o", "loop", sent + j, T0 + (sent + j) * 10**6) for j in range(1000)]
        sent += 1000
        lines += [_line("o", f"other-{b}-{j}", 0, T0 + sent * 10**6 + j) for j in range(10)]
        events = decode_batch(lines).events
        began = time.perf_counter()
        store.ingest(events, now=T0 + 10**12)
        out.append((sent, time.perf_counter() - began))
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=101)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    os.environ.setdefault("SAMTAL_RETENTION_DAYS", "0")
    for engine in ("sqlite", "postgres"):
        if args.only not in (None, engine):
            continue
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                timings = run(f"sqlite:///{Path(tmp) / 'long.db'}", args.batches)
        else:
            with database("samtal_bench_long_call") as url:
                timings = run(url, args.batches)
        shown = [t for t in timings if t[0] % 20_000 == 1000 or t is timings[-1]]
        report(
            f"{engine}: a batch of 1,000 events of one endless call (kept: at most "
            f"{MAX_CALL_EVENTS:,})",
            [(f"with {sent:,} sent", seconds * 1000, "ms") for sent, seconds in shown]
            + [("last / first", timings[-1][1] / timings[0][1], "x")],
        )


if __name__ == "__main__":
    main()
