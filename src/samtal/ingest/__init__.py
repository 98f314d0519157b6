"""Ingestion: decoded events of known organisations into the store, with a per-line report.

Every path in (HTTP, files, brokers) ends here, so that they all accept and reject alike:
`ingest` for code that may block (commands, workers' threads), `ingest_async` for code on an
event loop. Both sort the batch the same way and tally the same report.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import msgspec

from samtal import metrics
from samtal.errors import shorten
from samtal.events import Decoded, Event, Rejection, decode_batch
from samtal.period import earliest_instant
from samtal.settings import Settings
from samtal.store import MAX_CALL_EVENTS, AsyncStore, IngestSummary, Org, Store
from samtal.times import US_PER_SECOND, render, zone

#: Lines per transaction when loading a stream: big enough to amortise a commit (an fsync),
#: small enough to keep memory flat.
IMPORT_BATCH = 20_000
#: The same where the store has one writer (SQLite), which holds fewer batches at once (one
#: written, one waiting, against PostgreSQL's three and one), so each can be bigger for about
#: as many lines in memory: an import of 1.46M events into SQLite took 0.95x the time with
#: 50,000 lines a batch (6 alternated pairs), its peak memory 235 MB against 160. PostgreSQL's
#: took 0.98x, with twice the memory: it keeps IMPORT_BATCH.
IMPORT_BATCH_ONE_WRITER = 50_000


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


#: Rejections an import keeps with their reasons, the first by line; the rest it counts.
IMPORT_REJECTIONS_SHOWN = 100
#: Unknown organisations an import counts lines of by name; lines of any further ones are
#: counted together.
IMPORT_UNKNOWN_NAMED = 1_000


@dataclass
class ImportReport:
    """What an import did, summed up in memory that does not grow with the file: a file of
    100M lines of an organisation nobody added is an operator's everyday mistake, and keeping
    each line's rejection (as a POST's `Report` does) held 1.5 GB for 1.94M lines.

    `shown` holds the first IMPORT_REJECTIONS_SHOWN lines rejected for a reason of their own,
    in line order; `invalid` counts all of them. The lines of unknown organisations are counted
    by name (`unknown`, the first IMPORT_UNKNOWN_NAMED names met) and together
    (`unknown_unnamed`, the lines of any further ones)."""

    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0
    shown: list[Rejection] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)
    unknown_unnamed: int = 0

    @property
    def rejected(self) -> int:
        """Every line rejected, for whatever reason."""
        return self.invalid + sum(self.unknown.values()) + self.unknown_unnamed

    def add(self, part: Report) -> None:
        """Add a batch's report, keeping only what the summary keeps of its rejections."""
        self.accepted += part.accepted
        self.duplicates += part.duplicates
        invalid = []
        for rejection in part.rejected:
            name = rejection.unknown_org
            if name is None:
                invalid.append(rejection)
            elif name in self.unknown or len(self.unknown) < IMPORT_UNKNOWN_NAMED:
                self.unknown[name] += 1
            else:
                self.unknown_unnamed += 1
        self.invalid += len(invalid)
        full = len(self.shown) >= IMPORT_REJECTIONS_SHOWN
        if invalid and not (full and invalid[0].line > self.shown[-1].line):
            # Batches finish in any order on several writers: keep the first by line.
            self.shown = sorted(self.shown + invalid, key=lambda r: r.line)
            del self.shown[IMPORT_REJECTIONS_SHOWN:]


@dataclass
class _Sorted:
    """A decoded batch sorted out: the events to store (with their lines) and the rejections."""

    events: list[Event]
    lines: list[int]
    rejected: list[Rejection]


@dataclass(frozen=True)
class Bounds:
    """How far from the server's clock an event's `at` may lie (events.md, "Time bounds"):
    at most `max_future` microseconds ahead, and never before the earliest instant its
    organisation keeps (`retention_days` back; 0 keeps everything)."""

    now: int
    max_future: int
    retention_days: int

    @classmethod
    def of(cls, settings: Settings, now: int) -> Bounds:
        """The bounds the settings give, at `now`."""
        return cls(now, settings.max_future_seconds * US_PER_SECOND, settings.retention_days)

    def earliest(self, org: Org) -> int | None:
        """The earliest instant `org` keeps (None: everything), by its own retention."""
        days = org.retention(self.retention_days)
        if not days:
            return None
        return earliest_instant(zone=zone(org.tz), now=self.now, retention_days=days)

    def earliest_of(self, orgs: Iterable[Org]) -> dict[str, int | None]:
        """`earliest` of each organisation, by name, worked out once for each zone and
        retention among them: a batch of a thousand organisations has few of either. Worked
        out for each organisation (about 5 us each), sorting out such a batch of 3,000 events
        took 6.0 ms, and takes 1.55 now (1.1 for a batch of one organisation)."""
        rules: dict[tuple[str, int], int | None] = {}
        out: dict[str, int | None] = {}
        for org in orgs:
            rule = (org.tz, org.retention(self.retention_days))
            if rule not in rules:
                rules[rule] = self.earliest(org)
            out[org.name] = rules[rule]
        return out

    def why_not(self, event: Event, earliest: int | None, org: Org) -> str | None:
        """Why `event` lies out of bounds, or None."""
        tz = org.tz
        if event.instant > self.now + self.max_future:
            return (
                f"`at` ({event.at}) is in the future: more than "
                f"{self.max_future // US_PER_SECOND:,} s after the server's clock "
                f"({render(self.now, zone(tz))})"
            )
        if earliest is not None and event.instant < earliest:
            return (
                f"`at` ({event.at}) is before retention: its organisation keeps calls from "
                f"{render(earliest, zone(tz))} on ({org.retention(self.retention_days)} days)"
            )
        return None


def _sort_out(decoded: Decoded, known: Mapping[str, Org], bounds: Bounds | None) -> _Sorted:
    """The events of known organisations within the time bounds; a rejection for each line
    of an unknown organisation, and for each event out of bounds."""
    if bounds is None and all(event.org in known for event in decoded.events):
        return _Sorted(decoded.events, decoded.lines, list(decoded.rejections))
    earliest = {} if bounds is None else bounds.earliest_of(known.values())
    out = _Sorted([], [], list(decoded.rejections))
    for event, line in zip(decoded.events, decoded.lines, strict=True):
        org = known.get(event.org)
        if org is None:
            out.rejected.append(
                Rejection(
                    line,
                    event.id,
                    f"unknown organisation {shorten(event.org)}",
                    unknown_org=event.org,
                )
            )
            continue
        if bounds is not None:
            reason = bounds.why_not(event, earliest[event.org], org)
            if reason is not None:
                out.rejected.append(Rejection(line, event.id, reason))
                continue
        out.events.append(event)
        out.lines.append(line)
    return out


@dataclass
class Stored:
    """What storing a batch did, not yet told to the metrics: `counted` tells them and adds it
    to a report. Apart so that a process of its own can store (`samtal.ingest.apart`) while
    the metrics that are served count."""

    report: Report
    summary: IngestSummary | None


def store_decoded(store: Store, decoded: Decoded, *, now: int, bounds: Bounds | None) -> Stored:
    """`ingest` without the metrics: what storing the batch did, for `counted`."""
    known = store.orgs_named(sorted({event.org for event in decoded.events}))
    batch = _sort_out(decoded, known, bounds)
    summary = store.ingest(batch.events, now=now) if batch.events else None
    return Stored(_outcome(batch, summary), summary)


def counted(stored: Stored, path: str, report: Report | None = None) -> Report:
    """Tell the metrics what a batch did (`path` names the way it came: http, nats, import),
    and add it to `report` (None: a new one)."""
    if stored.summary is not None:
        _count(stored.summary, path)
    metrics.EVENTS.labels(path, "rejected").inc(len(stored.report.rejected))
    if report is None:
        return stored.report
    _add(report, stored.report)
    return report


def _outcome(batch: _Sorted, summary: IngestSummary | None) -> Report:
    """What a batch did, as a report: the lines of calls the database refused, and of events
    past the most a call keeps, join its rejections, all in line order."""
    out = Report(rejected=batch.rejected)
    if summary is not None:
        out.accepted = summary.accepted
        out.duplicates = summary.duplicates
        if summary.refused or summary.full:
            refused = {key: reason for key, reason in summary.refused}
            full = set(summary.full)
            for event, line in zip(batch.events, batch.lines, strict=True):
                reason = refused.get((event.org, event.call))
                if reason is not None:
                    why = f"the database refused this call: {shorten(reason, 200)}"
                elif (event.org, event.id) in full:
                    why = FULL_CALL.format(event.call)
                else:
                    continue
                out.rejected.append(Rejection(line, event.id, why))
    out.rejected.sort(key=lambda r: r.line)
    return out


#: Why an event of a call that holds MAX_CALL_EVENTS events already is not stored.
FULL_CALL = (
    "call {!r} holds "
    + f"{MAX_CALL_EVENTS:,}"
    + " events already, the most kept of one call (a call that never ends?): this event is "
    "not stored; the call is closed as idle after the last event it kept"
)


def ingest(
    store: Store,
    decoded: Decoded,
    *,
    now: int,
    bounds: Bounds | None = None,
    report: Report | None = None,
    path: str = "http",
) -> Report:
    """Store the decoded events of known organisations within `bounds` (None: any time);
    reject the others' lines. `path` names the way they came (http, nats, import) in the
    metrics."""
    return counted(store_decoded(store, decoded, now=now, bounds=bounds), path, report)


async def ingest_async(
    store: AsyncStore,
    decoded: Decoded,
    *,
    now: int,
    bounds: Bounds | None = None,
    report: Report | None = None,
    path: str = "http",
) -> Report:
    """`ingest` for code on an event loop: the store's threads do the database work."""
    known = await store.orgs_named(sorted({event.org for event in decoded.events}))
    batch = _sort_out(decoded, known, bounds)
    summary = await store.ingest(batch.events, now=now) if batch.events else None
    return counted(Stored(_outcome(batch, summary), summary), path, report)


def _count(summary: IngestSummary, path: str) -> None:
    metrics.EVENTS.labels(path, "accepted").inc(summary.accepted)
    metrics.EVENTS.labels(path, "duplicate").inc(summary.duplicates)
    metrics.EVENTS_AFTER_SETTLING.inc(summary.after_settling)
    metrics.BATCHES_PER_COMMIT.observe(summary.together)
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
    settings: Settings | None = None,
    progress: Callable[[int, ImportReport], None] | None = None,
    batch: int | None = None,
) -> ImportReport:
    """Load an NDJSON stream in batches of `batch` lines (None: IMPORT_BATCH, or
    IMPORT_BATCH_ONE_WRITER where the store has one writer), one transaction each, within the
    time bounds of `settings` (None: any time); `progress` is told the lines read so far and
    the report after every batch.

    The next batches are read and decoded while earlier ones are written (in a process of
    their own, for a stream longer than one batch), and as many batches are written at once as
    the store has writers (several on PostgreSQL), one more waiting: the database's time and
    Python's overlap. Writers of the same call take turns, so the records are the same as one
    batch after another would make them.
    """
    if batch is None:
        batch = IMPORT_BATCH if store.writers > 1 else IMPORT_BATCH_ONE_WRITER
    handle = AsyncStore(store)
    try:
        return asyncio.run(_import(handle, iter(lines), now, settings, progress, batch))
    finally:
        handle.close()


async def _import(
    store: AsyncStore,
    source: Iterator[bytes],
    now: Callable[[], int],
    settings: Settings | None,
    progress: Callable[[int, ImportReport], None] | None,
    batch: int,
) -> ImportReport:
    report = ImportReport()
    writing: set[asyncio.Task[Report]] = set()
    read = 0

    async def settle() -> None:
        finished, _ = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            writing.discard(task)
            report.add(task.result())  # a failure stops the import, as a blocking one would
        if progress is not None:
            progress(read, report)

    async for count, packed in _decoded_ahead(source, batch):
        read += count
        at = now()
        bounds = None if settings is None else Bounds.of(settings, at)
        writing.add(asyncio.ensure_future(_store_packed(store, packed, at, bounds)))
        if len(writing) > store.writers:
            await settle()
    while writing:
        await settle()
    return report


#: Batches a decoding process works ahead of the writers.
_AHEAD = 2
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(Decoded).decode


async def _store_packed(
    store: AsyncStore, packed: bytes, now: int, bounds: Bounds | None
) -> Report:
    """Store a batch as `_decoded_ahead` packed it: unpacked, sorted out and stored on a
    writer, its report counted under `import`.

    Unpacked on the writer, not on the loop: unpacking a batch is one call (about 13 ms) that
    holds the interpreter lock throughout, and on the loop it ran while the writer worked, so
    the writer waited for the lock after its statements; between two batches it waited for
    the loop too. On the writer it costs the writer less than those waits did (an import of
    1.46M events into SQLite took 0.92x the time)."""

    def work(on: Store) -> Stored:
        return store_decoded(on, _unpack(packed), now=now, bounds=bounds)

    return counted(await store.write(work), "import")


async def _decoded_ahead(source: Iterator[bytes], batch: int) -> AsyncIterator[tuple[int, bytes]]:
    """The stream's batches of `batch` lines, each with its number of lines, decoded ahead of
    the writers, packed (msgpack) for `_store_packed`.

    A stream longer than one batch is decoded in a process of its own: decoding is about 5 us
    of Python an event, which the writers' Python (the per-call decisions) would otherwise wait
    for. The events come back packed (msgpack), about 1 us an event to unpack. A shorter
    stream is decoded in a thread: starting a process would cost more than it saves.
    """

    def read() -> list[bytes]:
        return list(islice(source, batch))

    chunk = await asyncio.to_thread(read)
    if len(chunk) < batch:
        if chunk:
            yield len(chunk), await asyncio.to_thread(_packed, chunk, 1)
        return
    loop = asyncio.get_running_loop()
    # `spawn`: a fork would copy this process's threads' locks in whatever state they are.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as decoder:
        pending: deque[tuple[int, asyncio.Future[bytes]]] = deque()
        first = 1
        while chunk or pending:
            while chunk and len(pending) < _AHEAD:
                pending.append((len(chunk), loop.run_in_executor(decoder, _packed, chunk, first)))
                first += len(chunk)
                chunk = await asyncio.to_thread(read)
            count, packed = pending.popleft()
            yield count, await packed


def _packed(lines: list[bytes], first: int) -> bytes:
    """`decode_batch` in the decoding process, its answer packed to cross back."""
    return _pack(decode_batch(lines, first_line=first))


def _add(into: Report, part: Report) -> None:
    """Add a batch's counts and rejections to `into`."""
    into.accepted += part.accepted
    into.duplicates += part.duplicates
    into.rejected.extend(part.rejected)
