"""The record workflow's per-call decision, without a database: what to store of a call after
its new events, given what was known of it."""

from __future__ import annotations

import orjson

from samtal.events import Event
from samtal.store._base import NEVER, Gone, KnownCall
from samtal.store._recompute import decide
from samtal.times import zone
from tests.helpers import PRODUCT, disappearing, events_of

STOCKHOLM = zone("Europe/Stockholm")
NOW = 1_700_000_000_000_000


def _call(call: str) -> list:  # type: ignore[type-arg]
    return [e for e in events_of(PRODUCT) if e.call == call]


def test_a_new_call_with_a_record_is_a_new_version() -> None:
    events = _call("c-622")
    decision = decide("acme", "c-622", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert decision.changed and decision.gone is None
    assert decision.made is not None
    expected = next(r for r in PRODUCT["expected"] if r["receivingNo"] == "622")
    assert decision.made.json == orjson.dumps(expected)  # byte for byte
    assert decision.made.csv.endswith(b"\r\n")
    row = decision.row
    assert (row.org, row.call, row.open, row.last_seen, row.version) == (
        "acme",
        "c-622",
        False,
        NOW,
        0,
    )
    assert row.record_ms == decision.made.start_ms


def test_the_same_record_again_is_no_new_version() -> None:
    events = _call("c-622")
    first = decide("acme", "c-622", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert first.made is not None
    known = KnownCall(first.made.start_ms, 1, 7, NOW)
    stored = (first.made.json, first.made.outcome)
    again = decide("acme", "c-622", events, known, stored, now=NOW + 1, zone=STOCKHOLM)
    assert not again.changed and again.made is None and again.gone is None
    assert (again.row.version, again.row.seq, again.row.changed) == (1, 7, NOW)


def test_a_record_whose_start_moved_leaves_its_old_place() -> None:
    events = _call("c-622")
    first = decide("acme", "c-622", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert first.made is not None
    known = KnownCall(first.made.start_ms - 5000, 1, 7, NOW)  # stored five seconds earlier
    stored = (first.made.json, first.made.outcome)
    moved = decide("acme", "c-622", events, known, stored, now=NOW, zone=STOCKHOLM)
    assert moved.changed and moved.made is not None
    assert moved.gone == Gone("acme", first.made.start_ms - 5000, "c-622")


def test_a_record_that_goes_is_a_tombstone() -> None:
    events, late = disappearing()
    first = decide("acme", "c-4", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert first.made is not None
    known = KnownCall(first.made.start_ms, 1, 3, NOW)
    stored = (first.made.json, first.made.outcome)
    gone = decide("acme", "c-4", [*events, late], known, stored, now=NOW, zone=STOCKHOLM)
    assert gone.changed and gone.made is None
    assert gone.gone == Gone("acme", first.made.start_ms, "c-4")
    assert gone.row.record_ms is None and gone.row.open


def test_a_call_without_its_start_has_no_record_and_stays_open() -> None:
    events = [e for e in _call("c-622") if e.type != "started"]
    decision = decide("acme", "c-622", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert not decision.changed and decision.made is None
    assert decision.row.record_ms is None
    assert not decision.row.open  # it has its `ended`: nothing to close when idle
    assert decision.row.age == min(e.instant for e in events)


def test_a_call_that_cannot_be_rendered_keeps_its_record_as_it_was() -> None:
    events = _call("c-622")
    for event in events:
        event.instant = 2**62  # far past the years any zone renders
    known = KnownCall(123, 2, 9, NOW)
    decision = decide("acme", "c-622", events, known, (b"{}", None), now=NOW, zone=STOCKHOLM)
    assert not decision.changed and decision.made is None and decision.gone is None
    assert (decision.row.record_ms, decision.row.version, decision.row.seq) == (123, 2, 9)


def test_a_new_outcome_alone_is_a_new_version() -> None:
    """query.md: the outcome is part of the version. A voicemail that answered, reported late,
    changes no field of the seven but the outcome."""
    events = _call("c-800")  # rung, nobody answered, the caller hung up: abandoned
    first = decide("acme", "c-800", events, NEVER, None, now=NOW, zone=STOCKHOLM)
    assert first.made is not None and first.made.outcome == "abandoned"
    start = next(e for e in events if e.type == "started")
    late = [
        Event("acme", "vm-1", "c-800", "x", "entered", None, "function", "700", "VOICEMAIL",
              instant=start.instant + 1000),
        Event("acme", "vm-2", "c-800", "x", "answered", None, "function", "700",
              instant=start.instant + 2000),
    ]  # fmt: skip
    known = KnownCall(first.made.start_ms, 1, 3, NOW)
    stored = (first.made.json, first.made.outcome)
    again = decide("acme", "c-800", [*events, *late], known, stored, now=NOW, zone=STOCKHOLM)
    assert again.changed and again.made is not None
    assert again.made.json == first.made.json and again.made.outcome == "voicemail"
