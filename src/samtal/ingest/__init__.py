"""Ingestion: decoded events of known organisations into the store, with a per-line report.

Every path in (HTTP, files, brokers) ends here, so that they all accept and reject alike:
`ingest` for code that may block (commands, workers' threads), `ingest_async` for code on an
event loop. Both sort the batch the same way and tally the same report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import islice

from samtal import metrics
from samtal.errors import shorten
from samtal.events import Decoded, Event, Rejection, decode_batch
from samtal.store import AsyncStore, IngestSummary, Store
from samtal.times import US_PER_SECOND

#: Lines per transaction when loading a stream: big enough to amortise a commit (an fsync),
#: small enough to keep memory flat.
IMPORT_BATCH = 20_000


@dataclass
class Report:
    """What a delivery did: new events, duplicates, and the lines rejected with their reasons."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The answer of POST /events (api.md)."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [{"line": r.line, "id": r.id, "reason": r.reason} for r in self.rejected],
        }


@dataclass
class _Sorted:
    """A decoded batch sorted out: the events to store (with their lines) and the rejections."""

    events: list[Event]
    lines: list[int]
    rejected: list[Rejection]


def _sort_out(decoded: Decoded, known: Collection[str]) -> _Sorted:
    """The events of known organisations; a rejection for each line of an unknown one."""
    if all(event.org in known for event in decoded.events):
        return _Sorted(decoded.events, decoded.lines, list(decoded.rejections))
    out = _Sorted([], [], list(decoded.rejections))
    for event, line in zip(decoded.events, decoded.lines, strict=True):
        if event.org in known:
            out.events.append(event)
            out.lines.append(line)
        else:
            out.rejected.append(
                Rejection(
                    line,
                    event.id,
                    f"unknown organisation {shorten(event.org)}",
                    unknown_org=event.org,
                )
            )
    return out


def _tally(report: Report, batch: _Sorted, summary: IngestSummary | None, path: str) -> Report:
    """Add what a batch did to `report` (and to the metrics)."""
    rejected = batch.rejected
    if summary is not None:
        report.accepted += summary.accepted
        report.duplicates += summary.duplicates
        _count(summary, path)
        if summary.refused:
            # The calls the database would not store: each of their lines, with the reason.
            why = {key: reason for key, reason in summary.refused}
            for event, line in zip(batch.events, batch.lines, strict=True):
                reason = why.get((event.org, event.call))
                if reason is not None:
                    rejected.append(
                        Rejection(
                            line,
                            event.id,
                            f"the database refused this call: {shorten(reason, 200)}",
                        )
                    )
    rejected.sort(key=lambda r: r.line)
    metrics.EVENTS.labels(path, "rejected").inc(len(rejected))
    report.rejected.extend(rejected)
    return report


def ingest(
    store: Store, decoded: Decoded, *, now: int, report: Report | None = None, path: str = "http"
) -> Report:
    """Store the decoded events of known organisations; reject the others' lines. `path` names
    the way they came (http, nats, import) in the metrics."""
    known = store.orgs_named(sorted({event.org for event in decoded.events}))
    batch = _sort_out(decoded, known)
    summary = store.ingest(batch.events, now=now) if batch.events else None
    return _tally(report if report is not None else Report(), batch, summary, path)


async def ingest_async(
    store: AsyncStore,
    decoded: Decoded,
    *,
    now: int,
    report: Report | None = None,
    path: str = "http",
) -> Report:
    """`ingest` for code on an event loop: the store's threads do the database work."""
    known = await store.orgs_named(sorted({event.org for event in decoded.events}))
    batch = _sort_out(decoded, known)
    summary = await store.ingest(batch.events, now=now) if batch.events else None
    return _tally(report if report is not None else Report(), batch, summary, path)


def _count(summary: IngestSummary, path: str) -> None:
    metrics.EVENTS.labels(path, "accepted").inc(summary.accepted)
    metrics.EVENTS.labels(path, "duplicate").inc(summary.duplicates)
    changed = summary.records_changed - summary.records_new - summary.records_deleted
    metrics.RECORD_CHANGES.labels("new").inc(summary.records_new)
    metrics.RECORD_CHANGES.labels("changed").inc(changed)
    metrics.RECORD_CHANGES.labels("deleted").inc(summary.records_deleted)
    for lag in summary.lags:
        metrics.VISIBLE_LAG.observe(max(0, lag) / US_PER_SECOND)


def import_lines(
    store: Store,
    lines: Iterable[bytes],
    *,
    now: Callable[[], int],
    progress: Callable[[int, Report], None] | None = None,
    batch: int = IMPORT_BATCH,
) -> Report:
    """Load an NDJSON stream in batches of `batch` lines, one transaction each; `progress` is
    told the lines read so far and the report after every batch."""
    report = Report()
    source = iter(lines)
    first = 1
    while chunk := list(islice(source, batch)):
        decoded = decode_batch(chunk, first_line=first)
        ingest(store, decoded, now=now(), report=report, path="import")
        first += len(chunk)
        if progress is not None:
            progress(first - 1, report)
    return report
