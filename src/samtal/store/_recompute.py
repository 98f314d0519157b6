"""The record workflow, the same on every engine: new events, the calls they touch, each call's
record recomputed from all its events, rendered in its organisation's zone, compared with what
is stored, written, and numbered in the change feed.

It runs inside one write transaction (`WriteTx`) and never speaks SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from samtal.aggregate import record_of_call
from samtal.events import Event
from samtal.store._base import IDLE_CLOSE_ID, CallRow, IngestSummary, RecordRow, WriteTx
from samtal.times import US_PER_MS, zone

log = logging.getLogger(__name__)


def ingest(tx: WriteTx, events: Sequence[Event], *, now: int) -> IngestSummary:
    """Store the batch's new events and recompute the record of every call they touch."""
    fresh = tx.insert_events(events)
    by_org: dict[str, dict[str, list[Event]]] = {}
    for event in fresh:
        calls = by_org.get(event.org)
        if calls is None:
            calls = by_org[event.org] = {}
        group = calls.get(event.call)
        if group is None:
            calls[event.call] = [event]
        else:
            group.append(event)
    changed = sum(_recompute(tx, org, calls, now) for org, calls in sorted(by_org.items()))
    return IngestSummary(len(fresh), len(events) - len(fresh), changed)


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


def _recompute(tx: WriteTx, org: str, new: dict[str, list[Event]], now: int) -> int:
    """Recompute the records of `org`'s calls that got `new` events; the number changed.

    A call first seen in this batch has all its events at hand; the events of calls seen
    before are read back, after their rows are locked, so that a concurrent writer of the same
    call is waited for and its events are counted.
    """
    names = sorted(new)
    known = tx.lock_calls(org, names)
    stored = tx.call_events(org, [c for c in names if c in known]) if known else {}
    rendering = zone(tx.zone_of(org))
    made: list[tuple[int, str, int, bytes]] = []  # start_ms, call, start, json
    gone: list[tuple[str, int, str]] = []
    calls: list[CallRow] = []
    deleted = 0
    for call in names:
        events = stored.get(call, new[call])
        old_ms = known.get(call)
        try:
            record = record_of_call(events)
            rendered = None if record is None else orjson.dumps(record.render(rendering))
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
            calls.append(_call_row(org, call, events, old_ms, now))
            continue
        if record is None or rendered is None:
            # No record: not started yet, or still going. A record it had is gone: a late
            # event showed that the call has not stopped after all (cdr.md).
            if old_ms is not None:
                gone.append((org, old_ms, call))
                deleted += 1
            calls.append(_call_row(org, call, events, None, now))
            continue
        start_ms = record.start // US_PER_MS
        if old_ms is None or old_ms != start_ms or tx.record_json(org, old_ms, call) != rendered:
            if old_ms is not None and old_ms != start_ms:
                gone.append((org, old_ms, call))
            made.append((start_ms, call, record.start, rendered))
        calls.append(CallRow(org, call, record.start, start_ms, False, now))
    records = []
    if made:
        first = tx.take_change_seqs(org, len(made))
        records = [
            RecordRow(org, start_ms, call, start, seq, rendered)
            for seq, (start_ms, call, start, rendered) in enumerate(made, first)
        ]
    tx.write(records, gone, calls)
    return len(records) + deleted


def _call_row(
    org: str, call: str, events: Sequence[Event], record_ms: int | None, now: int
) -> CallRow:
    """A call's row from its events alone: its age is its start (or its earliest event without
    one), and it is open while it has no record and no `ended`."""
    started = [e.instant for e in events if e.type == "started"]
    age = min(started) if started else min(e.instant for e in events)
    is_open = record_ms is None and not any(e.type == "ended" for e in events)
    return CallRow(org, call, age, record_ms, is_open, now)
