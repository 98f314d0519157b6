"""Aggregation (spec/cdr.md): the events of a call in, its record out. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter

from samtal.events import Event
from samtal.records import Outcome, Record
from samtal.types import RESPONSE_GROUPS

_PEOPLE = ("user", "external")


def record_of_call(events: Iterable[Event]) -> Record | None:
    """The record of one call from its events (any order, duplicates allowed), or None.

    None while the call has no `started` event or has not stopped. This is what a store calls
    to recompute one call's record from that call's stored events.
    """
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.id, event)
    return _record_of_group(list(unique.values()))


_INSTANT = attrgetter("instant")


class _Tie(Exception):
    """Two events at the same instant: their order needs the rest of the key."""


def _record_of_group(events: list[Event]) -> Record | None:
    """The record of one call's distinct events, which this sorts in place.

    Most calls have no two events at the same instant, and for them sorting by the instant
    alone, a C-level key, is the whole order (cdr.md). The walk notices a tie and only then
    is the full key worked out.
    """
    events.sort(key=_INSTANT)
    try:
        walked = _walk(events, check_ties=True)
    except _Tie:
        events.sort(key=Event.order_key)
        walked = _walk(events, check_ties=False)
    return None if walked is None else walked[0]


def path_of_call(events: Iterable[Event]) -> list[tuple[Event, bool]] | None:
    """A call's path (query.md, "One call"): its distinct events in their total order from the
    opening `started` to the last received, each with whether it is the one that stops the
    record; None when the call has no record."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.id, event)
    ordered = sorted(unique.values(), key=Event.order_key)
    walked = _walk(ordered, check_ties=False)
    if walked is None:
        return None
    _, stop = walked
    first = next(n for n, event in enumerate(ordered) if event.type == "started")
    return [(event, n == stop) for n, event in enumerate(ordered) if n >= first]


def _walk(ordered: list[Event], check_ties: bool) -> tuple[Record, int] | None:
    """Walk a call's events in their total order from the opening `started` to the stop: its
    record, and the position of the event that stops it.

    With `check_ties`, raises _Tie at the first two events at the same instant.
    """
    started: Event | None = None
    receiving_no = callee_no = first_rung = None
    received = callee_answered = None
    voicemail = False  # a VOICEMAIL function answered before the stop
    kinds: dict[str | None, str | None] = {}  # function number -> kind of its latest `entered`
    previous = None
    for position, event in enumerate(ordered):  # noqa: B007 (position is read after the loop)
        if check_ties:
            if event.instant == previous:
                raise _Tie
            previous = event.instant
        type_ = event.type
        if started is None:
            if type_ == "started":
                started = event
            continue
        party = event.party
        if type_ == "entered":
            kinds[event.number] = event.kind
            if receiving_no is None and event.kind in RESPONSE_GROUPS:
                receiving_no = event.number
        elif type_ == "ringing":
            if first_rung is None:
                first_rung = event.number
        elif type_ == "answered":
            if party == "function":
                kind = kinds.get(event.number)
                if received is None and kind in RESPONSE_GROUPS:
                    received = event.instant
                elif kind == "VOICEMAIL":
                    voicemail = True
            else:
                if callee_no is None:
                    callee_no, callee_answered = event.number, event.instant
                if received is None:
                    received = event.instant
        elif type_ == "hangup" or type_ == "transferred":
            if not (
                party == "caller"
                or (type_ == "hangup" and party == "function")
                or (party in _PEOPLE and callee_no is not None and event.number == callee_no)
            ):
                continue
            break
        elif type_ == "ended":
            break
    else:
        return None  # no stop (or no started): no record yet
    if started is None:
        return None
    # An event after the stop at the same instant may belong before it in the full order.
    following = position + 1
    if check_ties and following < len(ordered) and ordered[following].instant == event.instant:
        raise _Tie
    record = Record(
        org=started.org,
        call=started.call,
        caller_no=started.number,
        start=started.instant,
        receiving_no=receiving_no,
        received=received,
        callee_no=callee_no if callee_no is not None else first_rung,
        callee_answered=callee_answered,
        stop=event.instant,
        outcome=_outcome(callee_answered is not None, voicemail, event),
    )
    return record, position


def _outcome(answered: bool, voicemail: bool, stop: Event) -> Outcome:
    """The call's outcome (query.md), by the first rule that holds."""
    if answered:
        return "answered"
    if voicemail:
        return "voicemail"
    if stop.party == "caller":  # a hangup or a transfer by the caller: it gave up
        return "abandoned"
    if stop.type == "hangup" and stop.party == "function":
        return "rejected"
    return "unanswered"


def aggregate(events: Iterable[Event]) -> list[Record]:
    """The records of every call that has one, in record order (cdr.md).

    Events may come in any order and interleaved across calls and organisations; an event
    whose (org, id) was already seen is a duplicate and the first one counts.
    """
    return records_of(calls_of(events))


def _calls_of_python(events: Iterable[Event]) -> dict[str, dict[str, list[Event]]]:
    """Each organisation's calls, each with its events in the order given; an event whose
    (org, id) was already seen is a duplicate and left out (the first one counts). The
    definition of `calls_of` in _speedups_events.c."""
    # Per organisation: the ids seen and each call's events. Keyed by plain strings, whose
    # hashes Python caches, rather than by (org, id) tuples built for every event.
    orgs: dict[str, dict[str, list[Event]]] = {}
    seen_of: dict[str, set[str]] = {}
    org_name = None
    seen: set[str] = set()
    calls: dict[str, list[Event]] = {}
    for event in events:
        if event.org != org_name:
            org_name = event.org
            if org_name not in orgs:
                orgs[org_name] = {}
                seen_of[org_name] = set()
            seen, calls = seen_of[org_name], orgs[org_name]
        event_id = event.id
        if event_id in seen:
            continue
        seen.add(event_id)
        group = calls.get(event.call)
        if group is None:
            calls[event.call] = [event]
        else:
            group.append(event)
    return orgs


def _calls_of_in_c() -> Callable[[Iterable[Event]], dict[str, dict[str, list[Event]]]] | None:
    """The same in C (_speedups_events.c): 0.75x of Python's time, the rest the look-ups in
    tables of half a million ids, which miss the cache. None where the build had no C
    compiler."""
    try:
        from samtal._speedups import calls_of as in_c
    except ImportError:
        return None
    return in_c


#: Each organisation's calls, each with its events in the order given; an event whose (org, id)
#: was already seen is a duplicate and left out (the first one counts).
calls_of = _calls_of_in_c() or _calls_of_python


def records_of(calls: Mapping[str, Mapping[str, list[Event]]]) -> list[Record]:
    """The records of these calls (as `calls_of` gives them) that have one, in record order."""
    records = []
    for org_calls in calls.values():
        for group in org_calls.values():
            record = _record_of_group(group)
            if record is not None:
                records.append(record)
    records.sort(key=Record.order_key)
    return records
