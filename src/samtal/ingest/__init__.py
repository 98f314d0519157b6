"""Ingestion: decoded events of known organisations into the store, with a per-line report.

Every path in (HTTP, files, brokers) ends here, so that they all accept and reject alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from samtal import metrics
from samtal.errors import shorten
from samtal.events import Decoded, Event, Rejection, decode_batch
from samtal.store import IngestSummary, Store
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


class KnownOrgs:
    """The organisations events may be for; looks again in the store before saying no."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._names = {org.name for org in store.orgs()}

    def __contains__(self, name: object) -> bool:
        if name in self._names:
            return True
        self._names = {org.name for org in self._store.orgs()}  # added since we looked?
        return name in self._names


def ingest(
    store: Store,
    decoded: Decoded,
    *,
    orgs: KnownOrgs,
    now: int,
    report: Report | None = None,
    path: str = "http",
) -> Report:
    """Store the decoded events of known organisations; reject the others' lines. `path` names
    the way they came (http, nats, import) in the metrics."""
    report = report if report is not None else Report()
    rejected = decoded.rejections
    events: list[Event] = decoded.events
    verdict = {org: org in orgs for org in {event.org for event in events}}
    if not all(verdict.values()):
        events = []
        rejected = list(rejected)
        for event, line in zip(decoded.events, decoded.lines, strict=True):
            if verdict[event.org]:
                events.append(event)
            else:
                rejected.append(
                    Rejection(
                        line,
                        event.id,
                        f"unknown organisation {shorten(event.org)}",
                        unknown_org=event.org,
                    )
                )
        rejected.sort(key=lambda r: r.line)
    if events:
        summary = store.ingest(events, now=now)
        report.accepted += summary.accepted
        report.duplicates += summary.duplicates
        _count(summary, path)
    metrics.EVENTS.labels(path, "rejected").inc(len(rejected))
    report.rejected.extend(rejected)
    return report


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
    orgs = KnownOrgs(store)
    source = iter(lines)
    first = 1
    while chunk := list(islice(source, batch)):
        decoded = decode_batch(chunk, first_line=first)
        ingest(store, decoded, orgs=orgs, now=now(), report=report, path="import")
        first += len(chunk)
        if progress is not None:
            progress(first - 1, report)
    return report
