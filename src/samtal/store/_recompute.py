"""The record workflow, the same on every engine: new events, the calls they touch, each call's
record recomputed from all its events, rendered in its organisation's zone, compared with what
is stored, written, and numbered in the change feed.

It runs inside one write transaction (`WriteTx`) and never speaks SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from zoneinfo import ZoneInfo

import orjson

from samtal.aggregate import record_of_call
from samtal.events import Event
from samtal.records import csv_row
from samtal.store._base import (
    IDLE_CLOSE_ID,
    CallRow,
    IngestSummary,
    KnownCall,
    RecordRow,
    WriteTx,
)
from samtal.times import US_PER_MS, local_day, zone

log = logging.getLogger(__name__)


def ingest(tx: WriteTx, events: Sequence[Event], *, now: int) -> IngestSummary:
    """Store the batch's new events and recompute the record of every call they touch."""
    by_org: dict[str, dict[str, list[Event]]] = {}
    for event in events:
        calls = by_org.get(event.org)
        if calls is None:
            calls = by_org[event.org] = {}
        group = calls.get(event.call)
        if group is None:
            calls[event.call] = [event]
        else:
            group.append(event)
    accepted = changed = new = deleted = 0
    lags: list[int] = []
    for org, calls in sorted(by_org.items()):
        summary = _ingest_org(tx, org, calls, now)
        accepted += summary.accepted
        changed += summary.records_changed
        new += summary.records_new
        deleted += summary.records_deleted
        lags += summary.lags
    return IngestSummary(accepted, len(events) - accepted, changed, new, deleted, tuple(lags))


def close_idle_calls(tx: WriteTx, *, now: int, idle: int) -> int:
    """Append an `ended` to every call that has not stopped and has had no event for `idle`
    microseconds, at the instant of its latest event (cdr.md); the number closed. Picked and
    closed in the one transaction: an event arriving in between cannot be overtaken."""
    closing = [
        Event(org, IDLE_CLOSE_ID.format(call=call), call, at, "ended", instant=instant)
        for org, call, instant, at in tx.stale_calls(now - idle)
    ]
    if closing:
        ingest(tx, closing, now=now)
    return len(closing)


def _ingest_org(tx: WriteTx, org: str, batch: dict[str, list[Event]], now: int) -> IngestSummary:
    """Store `org`'s new events of the batch and recompute the records of the calls that got
    any; what it did (duplicates not counted).

    The calls are locked first, so that a concurrent writer of the same call is waited for
    and its events are counted. A call first seen in this batch has all its events at hand;
    the events of calls seen before are read back.
    """
    names = sorted(batch)
    known = tx.lock_calls(org, names)
    rendering = zone(tx.zone_of(org))
    new_days = {
        call: local_day(_age(batch[call]), rendering) for call in names if call not in known
    }
    fresh = tx.insert_events(org, [e for call in names for e in batch[call]], new_days)
    new: dict[str, list[Event]] = {}
    for event in fresh:
        new.setdefault(event.call, []).append(event)
    # A call seen first here whose every event was a duplicate (of another call's ids) has
    # nothing of its own: its lock's placeholder goes.
    forget = [(org, call) for call in names if call not in known and call not in new]
    touched = sorted(new)
    stored = tx.call_events(org, [c for c in touched if c in known]) if known else {}
    # Each call whose record is made, changed or removed takes the next version and change
    # number (changes.md); the others keep theirs.
    changed: list[tuple[CallRow, tuple[int, int, int, bytes, bytes | None] | None]] = []
    lags: list[int] = []
    calls: list[CallRow] = []
    gone: list[tuple[str, int, str]] = []
    for call in touched:
        events = stored.get(call, new[call])
        old = known.get(call, _NEVER)
        try:
            record = record_of_call(events)
            fields = None if record is None else record.render(rendering)
            rendered = None if fields is None else orjson.dumps(fields)
            as_csv = None if fields is None else csv_row(fields.values())
        except Exception as exc:
            # Whatever goes wrong with one call costs that call alone: its events are kept,
            # its record stays as it was, and its next event tries again.
            log.error(
                "call %r of organisation %r: cannot make its record (%s: %s); its events are "
                "kept and its record is tried again with its next event",
                call,
                org,
                type(exc).__name__,
                exc,
            )
            calls.append(_call_row(org, call, events, old, now, rendering))
            continue
        if record is None or rendered is None:
            # No record: not started yet, or still going. A record it had is gone: a late
            # event showed that the call has not stopped after all (cdr.md), a tombstone.
            row = _call_row(org, call, events, old._replace(record_ms=None), now, rendering)
            if old.record_ms is None:
                calls.append(row)
            else:
                gone.append((org, old.record_ms, call))
                changed.append((row, None))
            continue
        start_ms = record.start // US_PER_MS
        day = local_day(record.start, rendering)
        row = CallRow(org, call, day, record.start, start_ms, False, now, *old[1:])
        if (
            old.record_ms is None
            or old.record_ms != start_ms
            or tx.record_json(org, old.record_ms, call) != rendered
        ):
            if old.record_ms is not None and old.record_ms != start_ms:
                gone.append((org, old.record_ms, call))
            changed.append((row, (day, start_ms, record.start, rendered, as_csv)))
            lags.append(now - record.stop)
        else:
            calls.append(row)
    records = []
    made_new = sum(row.version == 0 and made is not None for row, made in changed)
    gone_now = sum(made is None for _, made in changed)
    if changed:
        first = tx.take_change_seqs(org, len(changed))
        for seq, (row, made) in enumerate(changed, first):
            version = row.version + 1
            calls.append(replace(row, version=version, seq=seq, changed=now))
            if made is not None:
                day, start_ms, start, rendered, as_csv = made
                records.append(
                    RecordRow(org, day, start_ms, row.call, start, seq, rendered, version, as_csv)
                )
    tx.write(records, gone, calls, forget)
    return IngestSummary(len(fresh), 0, len(changed), made_new, gone_now, tuple(lags))


#: What is known of a call not seen before.
_NEVER = KnownCall(None, 0, 0, 0)


def _call_row(
    org: str,
    call: str,
    events: Sequence[Event],
    known: KnownCall,
    now: int,
    rendering: ZoneInfo,
) -> CallRow:
    """A call's row from its events and what was known of it: its age is its start (or its
    earliest event without one), its day the local date of its age, and it is open while it
    has no record and no `ended`."""
    age = _age(events)
    day = local_day(age, rendering)
    is_open = known.record_ms is None and not any(e.type == "ended" for e in events)
    return CallRow(org, call, day, age, known.record_ms, is_open, now, *known[1:])


def _age(events: Sequence[Event]) -> int:
    """A call's age: its start, or its earliest event while it has no `started`."""
    started = [e.instant for e in events if e.type == "started"]
    return min(started) if started else min(e.instant for e in events)
