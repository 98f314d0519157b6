"""The record workflow, the same on every engine: new events, the calls they touch, each call's
record recomputed from all its events, rendered in its organisation's zone, compared with what
is stored, written, and numbered in the change feed.

Two halves: `decide` is pure (a call's events and what was known of it in, what to store out)
and is tested without a database; `ingest` runs inside one write transaction (`WriteTx`) and
does each step once for the whole batch, whatever the number of organisations in it. It never
speaks SQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple, overload
from zoneinfo import ZoneInfo

from samtal.aggregate import record_of_call
from samtal.events import Event
from samtal.store._base import (
    IDLE_CLOSE_ID,
    NEVER,
    CallKey,
    CallRow,
    Gone,
    IngestSummary,
    KnownCall,
    RecordRow,
    WriteTx,
)
from samtal.times import US_PER_MS, local_day

log = logging.getLogger(__name__)

#: The most events samtal keeps of one call. A real call has tens; a switch that loops on a
#: call that never ends sends them without end, and every batch with one more reads all the
#: call's events again to make its record (100,000 of them: 290 ms a batch on SQLite, where
#: every organisation's batches wait for that writer). Past this, a call's new events are
#: rejected with a reason, and the call is closed as idle after the last event it kept
#: (`close_idle_calls`, which is not bounded).
MAX_CALL_EVENTS = 10_000


class Made(NamedTuple):
    """A record as it is to be stored: its day, where it sorts, its renderings, and what the
    filters of query.md read beside them."""

    day: int
    start_ms: int
    start: int
    stop: int
    json: bytes
    csv: bytes
    outcome: str
    caller_no: str | None
    receiving_no: str | None
    callee_no: str | None
    answered_after: int | None


class Decision(NamedTuple):
    """What to store of one call after its new events: its row (version and change number
    not yet taken), the record to write, the stored record to delete, and whether it is a new
    version (changes.md)."""

    row: CallRow
    #: The record to write: new, or changed. None when it is unchanged or the call has none.
    made: Made | None = None
    #: The stored record to delete: it went (a tombstone), or moved (its start changed).
    gone: Gone | None = None
    #: The record was made, changed or removed: it takes the next version and change number.
    changed: bool = False


def decide(
    org: str,
    call: str,
    events: Sequence[Event],
    known: KnownCall,
    stored: tuple[bytes, str | None] | None,
    *,
    now: int,
    zone: ZoneInfo,
) -> Decision:
    """The decision for one call from all its events, what was known of it, and the stored
    rendering and outcome of its record (None when it has none). Pure: no database, no
    clock."""
    try:
        record = record_of_call(events)
        rendered = None if record is None else (record.json(zone), record.csv(zone))
    except Exception as exc:
        # Whatever goes wrong with one call costs that call alone: its events are kept, its
        # record stays as it was, and its next event tries again.
        log.error(
            "call %r of organisation %r: cannot make its record (%s: %s); its events are kept "
            "and its record is tried again with its next event",
            call,
            org,
            type(exc).__name__,
            exc,
        )
        return Decision(_call_row(org, call, events, known, now, zone))
    if record is None or rendered is None:
        # No record: not started yet, or still going. A record it had is gone: a late event
        # showed that the call has not stopped after all (cdr.md), a tombstone.
        row = _call_row(org, call, events, known._replace(record_ms=None), now, zone)
        if known.record_ms is None:
            return Decision(row)
        return Decision(row, gone=Gone(org, known.record_ms, call), changed=True)
    json, csv = rendered
    start_ms = record.start // US_PER_MS
    day = local_day(record.start, zone)
    row = CallRow(
        org,
        call,
        day,
        record.start,
        start_ms,
        False,
        now,
        known.version,
        known.seq,
        known.changed,
        True,
        any(e.type == "ended" for e in events),
    )
    if known.record_ms == start_ms and stored == (json, record.outcome):
        return Decision(row)  # the same record and outcome: no new version (query.md)
    made = Made(
        day,
        start_ms,
        record.start,
        record.stop,
        json,
        csv,
        record.outcome,
        record.caller_no,
        record.receiving_no,
        record.callee_no,
        _after(record.start, record.callee_answered),
    )
    old = known.record_ms
    moved = None if old is None or old == start_ms else Gone(org, old, call)
    return Decision(row, made, moved, True)


def ingest(
    tx: WriteTx,
    events: Sequence[Event],
    *,
    zones: Mapping[str, ZoneInfo],
    now: int,
    bounded: bool = True,
) -> IngestSummary:
    """Store the batch's new events and recompute the record of every call they touch, each
    step once for the whole batch; `zones` has the zone of every organisation in it.

    The calls are locked first, so that a concurrent writer of the same call is waited for and
    its events are counted. A call first seen in this batch has all its events at hand; the
    events of calls seen before are read first, so that the batch's copies of them are known
    for duplicates before anything is written. A call keeps at most MAX_CALL_EVENTS events
    (`bounded`): the batch's others of it are not stored, and are reported in `full`.
    """
    batch: dict[CallKey, list[Event]] = {}
    for event in events:
        key = (event.org, event.call)
        group = batch.get(key)
        if group is None:
            batch[key] = [event]
        else:
            group.append(event)
    keys = sorted(batch)
    known = tx.lock_calls(keys)
    # An erased call never comes back (privacy.md): its events count as duplicates.
    erased = [key for key in keys if key in known and known[key].erased]
    if erased:
        keys = [key for key in keys if key not in erased]
    new_days = {key: local_day(_age(batch[key]), zones[key[0]]) for key in keys if key not in known}
    # The stored events of the calls seen before, read under their locks: what is among them
    # is a duplicate, and what is left of the batch is new under its call (only a copy under
    # another call can still be stored, which `insert_events` finds).
    seen = [key for key in keys if key in known]
    stored_events = tx.call_events(seen) if seen else {}
    unseen: list[Event] = []
    over: list[Event] = []
    for key in keys:
        before = stored_events.get(key)
        if before is None:
            candidates, room = batch[key], MAX_CALL_EVENTS
        else:
            ids = {event.id for event in before}
            candidates = [event for event in batch[key] if event.id not in ids]
            room = MAX_CALL_EVENTS - len(before)
        if bounded and len(candidates) > room:
            candidates, beyond = _within(candidates, room)
            over += beyond
        unseen += candidates
    fresh = tx.insert_events(unseen, new_days)
    new: dict[CallKey, list[Event]] = {}
    for event in fresh:
        new.setdefault((event.org, event.call), []).append(event)
    # A call seen first here whose every event was a duplicate (of another call's ids) has
    # nothing of its own: its lock's placeholder goes.
    forget = [key for key in keys if key not in known and key not in new]
    touched = sorted(new)
    again = [key for key in touched if key in known]
    had = [
        Gone(org, start_ms, call)
        for org, call in again
        if (start_ms := known[org, call].record_ms) is not None
    ]
    stored = tx.record_json(had) if had else {}
    # Events after settling (query.md): a correction to a record clients may already hold.
    late = sum(len(new[key]) for key in again if known[key].settled)
    decisions = [
        decide(
            org,
            call,
            stored_events.get((org, call), []) + new[org, call],
            known.get((org, call), NEVER),
            stored.get((org, call)),
            now=now,
            zone=zones[org],
        )
        for org, call in touched
    ]
    summary = _write(
        tx, decisions, now=now, accepted=len(fresh), sent=len(events) - len(over), forget=forget
    )
    if over:
        _FULL.note(over)
        summary = replace(summary, full=tuple((e.org, e.id) for e in over))
    return replace(summary, after_settling=late) if late else summary


class _FullCalls:
    """The log of events rejected for a full call: a line a minute at most, since a switch
    that loops sends them with every batch, naming a call of the latest."""

    EVERY = 60.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.logged = -self.EVERY

    def note(self, over: Sequence[Event]) -> None:
        with self.lock:
            self.events += len(over)
            if time.monotonic() - self.logged < self.EVERY:
                return
            count, self.events, self.logged = self.events, 0, time.monotonic()
        log.warning(
            "%d event(s) rejected since the last such line: their calls hold %d events "
            "already, the most kept of one call (one: call %r of organisation %r)",
            count,
            MAX_CALL_EVENTS,
            over[-1].call,
            over[-1].org,
        )


_FULL = _FullCalls()


def _within(events: Sequence[Event], room: int) -> tuple[list[Event], list[Event]]:
    """A call's new events split into those it has room for (`room` distinct ids, in the
    batch's order; a copy of a kept one is kept, to count as its duplicate) and the rest."""
    kept: list[Event] = []
    beyond: list[Event] = []
    ids: set[str] = set()
    for event in events:
        if event.id in ids or len(ids) < room:
            ids.add(event.id)
            kept.append(event)
        else:
            beyond.append(event)
    return kept, beyond


def _write(
    tx: WriteTx,
    decisions: list[Decision],
    *,
    now: int,
    accepted: int,
    sent: int,
    forget: list[CallKey],
) -> IngestSummary:
    """Write every row at once, the new versions numbered per organisation in call order: the
    k-th is written as -k, and `write` gives out the real numbers once the rows are staged."""
    counts: dict[str, int] = {}
    records: list[RecordRow] = []
    calls: list[CallRow] = []
    lags: list[int] = []
    made_new = deleted = 0
    for decision in decisions:
        row, made = decision.row, decision.made
        if decision.changed:
            k = counts[row.org] = counts.get(row.org, 0) + 1
            seq = -k
            version = row.version + 1
            if made is None:
                deleted += 1
            else:
                made_new += row.version == 0
                lags.append(now - made.stop)
                records.append(
                    RecordRow(
                        row.org,
                        made.day,
                        made.start_ms,
                        row.call,
                        made.start,
                        seq,
                        made.json,
                        version,
                        made.csv,
                        made.outcome,
                        made.caller_no,
                        made.receiving_no,
                        made.callee_no,
                        _after(made.start, made.stop),
                        made.answered_after,
                    )
                )
            row = CallRow(
                row.org,
                row.call,
                row.day,
                row.age,
                row.record_ms,
                row.open,
                row.last_seen,
                version,
                seq,
                now,
                row.started,
                row.ended,
            )
        calls.append(row)
    gone = [d.gone for d in decisions if d.gone is not None]
    tx.write(records, gone, calls, forget, counts)
    changed = sum(counts.values())
    return IngestSummary(accepted, sent - accepted, changed, made_new, deleted, tuple(lags))


def close_idle_calls(
    tx: WriteTx, *, zones: Mapping[str, ZoneInfo], now: int, idle: int, at_most: int
) -> int:
    """Append an `ended` to at most `at_most` calls that have not stopped and have had no
    event for `idle` microseconds, at the instant of its latest event (cdr.md); the number
    closed (an `ended` stored). Picked and closed in the one transaction: an event arriving in
    between cannot be overtaken."""
    closing = [
        Event(org, IDLE_CLOSE_ID.format(call=call), call, at, "ended", instant=instant)
        for org, call, instant, at in tx.stale_calls(now - idle, at_most)
    ]
    if not closing:
        return 0
    # Past MAX_CALL_EVENTS too: a full call ends like any other.
    return ingest(tx, closing, zones=zones, now=now, bounded=False).accepted


def _call_row(
    org: str,
    call: str,
    events: Sequence[Event],
    known: KnownCall,
    now: int,
    zone: ZoneInfo,
) -> CallRow:
    """A call's row from its events and what was known of it: its age is its start (or its
    earliest event without one), its day the local date of its age, and it is open while it
    has no record and no `ended`."""
    age = _age(events)
    day = local_day(age, zone)
    ended = any(e.type == "ended" for e in events)
    return CallRow(
        org,
        call,
        day,
        age,
        known.record_ms,
        known.record_ms is None and not ended,
        now,
        known.version,
        known.seq,
        known.changed,
        any(e.type == "started" for e in events),
        ended,
    )


@overload
def _after(start: int, then: int) -> int: ...
@overload
def _after(start: int, then: int | None) -> int | None: ...
def _after(start: int, then: int | None) -> int | None:
    """Microseconds from `start` to `then` as the record gives them, to the millisecond (what a
    client sees, and what a copy keeps: the figures are the same on either side)."""
    return None if then is None else (then // US_PER_MS - start // US_PER_MS) * US_PER_MS


def _age(events: Sequence[Event]) -> int:
    """A call's age: its start, or its earliest event while it has no `started`."""
    started = [e.instant for e in events if e.type == "started"]
    return min(started) if started else min(e.instant for e in events)


def fill(tx: WriteTx, *, limit: int = 1000) -> int:
    """Work out the outcome and duration of records stored before samtal kept them (a schema
    upgrade), from their calls' events; how many were filled (0: none is left)."""
    found = tx.records_to_fill(limit)
    if not found:
        return 0
    keys = [(org, call) for org, call, _ in found]
    tx.lock_calls(keys)  # where each call's rows are
    events = tx.call_events(keys)
    rows: list[tuple[str, int, str, str, int, int | None]] = []
    for org, call, start_ms in found:
        record = record_of_call(events.get((org, call), []))
        if record is None:  # a record whose events cannot make it: the rule of last resort
            rows.append((org, start_ms, call, "unanswered", 0, None))
        else:
            rows.append(
                (
                    org,
                    start_ms,
                    call,
                    record.outcome,
                    _after(record.start, record.stop),
                    _after(record.start, record.callee_answered),
                )
            )
    tx.fill(rows)
    return len(found)


def erase(
    tx: WriteTx, org: str, calls: Sequence[str], *, now: int, by: str, selector: str
) -> tuple[int, int]:
    """Erase `org`'s calls `calls` in one transaction (privacy.md): their events and records
    go; each that had a visible record gets a new version and `seq`, a tombstone that says
    it was erased. Unknown and already erased calls are left alone. The erasure goes in the
    audit trail: (its id, the number of calls erased)."""
    keys = sorted({(org, call) for call in calls})
    known = tx.lock_calls(keys)
    unknown = [key for key in keys if key not in known]
    taken = [key for key in keys if key in known and not known[key].erased]
    visible = [key for key in taken if known[key].record_ms is not None]
    first = tx.take_change_seqs({org: len(visible)})[org] if visible else 0
    seqs = {key: first + n for n, key in enumerate(visible)}
    tx.erase(
        org,
        [
            (call, known[org, call].version + ((org, call) in seqs),
             seqs.get((org, call), known[org, call].seq))
            for org, call in taken
        ],
        now,
    )  # fmt: skip
    gone = [Gone(org, record_ms, call) for org, call in visible
            if (record_ms := known[org, call].record_ms) is not None]  # fmt: skip
    tx.write([], gone, [], forget=unknown)
    return tx.note_erasure(org, now, by, selector, len(taken)), len(taken)
