"""Feed: records/s of a client catching up on GET /cdr/changes (pages of 1,000, from after=0)
over two months of one organisation, next to one streamed GET /cdr/historik of the same
records (the detailed view) in the same run.

Target (issue 9): catch-up >= 0.5x the streamed query.

    python bench/feed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from _common import report
from _server import ServerProcess, samtal
from query import FROM, TO, build


def catch_up(client: httpx.Client, limit: int = 1000) -> tuple[float, int, int]:
    """Seconds to walk the whole feed, the records seen, and the pages asked for."""
    began = time.perf_counter()
    after, more, records, pages = 0, True, 0, 0
    while more:
        response = client.get("/cdr/changes", params={"after": after, "limit": limit})
        response.raise_for_status()
        body = response.json()
        records += len(body["records"])
        after, more = body["next"], body["more"]
        pages += 1
    return time.perf_counter() - began, records, pages


def streamed(client: httpx.Client) -> tuple[float, int]:
    """Seconds for one detailed /cdr/historik of the whole period, parsed as the client would."""
    began = time.perf_counter()
    response = client.get("/cdr/historik", params={"from": FROM, "to": TO, "view": "detailed"})
    response.raise_for_status()
    records = len(response.json())
    return time.perf_counter() - began, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db, _ = build()
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    with (
        ServerProcess(db) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client,
    ):
        runs = [(catch_up(client), streamed(client)) for _ in range(args.repeat)]
    (_, records, pages), (_, streamed_records) = runs[0]
    assert records == streamed_records, (records, streamed_records)
    feed_med = statistics.median(f[0] for f, _ in runs)
    stream_med = statistics.median(s[0] for _, s in runs)
    report(
        f"feed: org-1, {records:,} records in {pages} pages of 1,000, median of {args.repeat}",
        [
            ("GET /cdr/changes catch-up, parsed", records / feed_med, "records/s"),
            (
                "GET /cdr/historik?view=detailed, one stream, parsed",
                records / stream_med,
                "records/s",
            ),
            (
                "ratio catch-up / stream (target >= 0.5)",
                statistics.median(s[0] / f[0] for f, s in runs),
                "x",
            ),
        ],
    )


if __name__ == "__main__":
    main()
