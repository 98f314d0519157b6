"""Invariants of aggregation over arbitrary calls: whatever the events, in whatever order."""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from samtal.aggregate import _calls_of_in_c, _calls_of_python, aggregate, record_of_call
from samtal.events import (
    Decoded,
    Event,
    Rejection,
    _check,
    _decode_into_c,
    _decode_into_python,
    _decode_wire,
    _Invalid,
    decode_one,
)
from samtal.records import Record, dumps
from samtal.types import KINDS, PARTIES_OF_TYPE

T0 = 1_483_542_964_274_000
NUMBERS = ["+4672000001", "+4672000002", "+4687654321", "622", "711", "100"]


@st.composite
def calls(draw: st.DrawFn, org: str = "acme", call: str = "c") -> list[Event]:
    """The events of one call: mostly plausible, sometimes odd, ids unique."""
    count = draw(st.integers(1, 14))
    with_seq = draw(st.booleans())
    events = []
    for n in range(count):
        kind_of_event = (
            "started"
            if n == 0 and draw(st.booleans())
            else draw(st.sampled_from(list(PARTIES_OF_TYPE)))
        )
        parties = PARTIES_OF_TYPE[kind_of_event]
        party = draw(st.sampled_from(parties)) if parties else None
        number = (
            None
            if party is None
            else draw(st.sampled_from([*NUMBERS, None] if party == "caller" else NUMBERS))
        )
        events.append(
            Event(
                org=org,
                id=f"{call}-{n}",
                call=call,
                at="",  # aggregation reads only the instant
                instant=T0 + draw(st.integers(0, 40)) * 1000 + draw(st.sampled_from([0, 1, 999])),
                type=kind_of_event,
                seq=(n if draw(st.integers(0, 9)) else None) if with_seq else None,
                party=party,
                number=number,
                kind=draw(st.sampled_from(sorted(KINDS))) if kind_of_event == "entered" else None,
            )
        )
    return events


@given(calls(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter(events: list[Event], rnd: object) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert record_of_call(shuffled) == record_of_call(events)


@given(calls(), st.data())
def test_duplicates_count_once(events: list[Event], data: st.DataObject) -> None:
    again = data.draw(st.lists(st.sampled_from(events), max_size=10))
    assert record_of_call(events + again) == record_of_call(events)
    assert aggregate(again + events) == aggregate(events)


@given(
    st.lists(
        st.tuples(st.sampled_from(["acme", "bolag"]), st.sampled_from(["c1", "c2", "c3"]), calls()),
        max_size=5,
    ),
    st.randoms(use_true_random=False),
)
def test_grouping_in_c_agrees_with_python(
    groups: list[tuple[str, str, list[Event]]], rnd: object
) -> None:
    """`calls_of` in C groups as its definition in Python does: organisations and calls in the
    order first seen, events in the order given, a repeated (org, id) left out, under
    whichever call its first copy names."""
    in_c = _calls_of_in_c()
    if in_c is None:
        pytest.skip("samtal._speedups was not built here (no C compiler?): Python groups")
    # Each call's events drawn under an organisation and one of three calls, so that ids
    # repeat within a call, across calls (c-0 of one group and of another) and across
    # organisations, and the events are shuffled across them.
    events = [
        msgspec.structs.replace(e, org=org, call=call) for org, call, es in groups for e in es
    ]
    rnd.shuffle(events)  # type: ignore[attr-defined]
    by_c, by_python = in_c(events), _calls_of_python(events)
    assert by_c == by_python
    assert [list(calls) for calls in by_c.values()] == [list(c) for c in by_python.values()]
    assert list(by_c) == list(by_python)
    assert all(
        a is b
        for org in by_c
        for call in by_c[org]
        for a, b in zip(by_c[org][call], by_python[org][call], strict=True)
    )


@given(
    st.lists(st.tuples(st.sampled_from(["acme", "bolag"]), calls()), max_size=5),
    st.randoms(use_true_random=False),
)
def test_interleaving_calls_and_organisations(
    groups: list[tuple[str, list[Event]]], rnd: object
) -> None:
    mixed: list[Event] = []
    expected: dict[tuple[str, str], Record] = {}
    for n, (org, events) in enumerate(groups):
        call = f"call-{n}"
        renamed = [
            Event(
                org,
                f"{call}:{e.id}",
                call,
                e.at,
                e.type,
                e.seq,
                e.party,
                e.number,
                e.kind,
                instant=e.instant,
            )
            for e in events
        ]
        mixed.extend(renamed)
        record = record_of_call(renamed)
        if record is not None:
            expected[(org, call)] = record
    rnd.shuffle(mixed)  # type: ignore[attr-defined]
    records = aggregate(mixed)
    assert {(r.org, r.call): r for r in records} == expected
    assert [r.order_key() for r in records] == sorted(r.order_key() for r in records)


@settings(max_examples=300)
@given(calls())
def test_invariants_of_a_record(events: list[Event]) -> None:
    record = record_of_call(events)
    if record is None:
        return
    assert record.start <= record.stop
    if record.received is not None:
        assert record.start <= record.received <= record.stop
    if record.callee_answered is not None:
        assert record.callee_no is not None
        assert record.start <= record.callee_answered <= record.stop
        assert record.received is not None and record.received <= record.callee_answered
    started = [e for e in events if e.type == "started"]
    assert started, "a record needs a started event"
    assert any(e.type in ("hangup", "transferred", "ended") for e in events)


@given(calls())
def test_no_started_no_record(events: list[Event]) -> None:
    without = [e for e in events if e.type != "started"]
    assert record_of_call(without) is None


# -- the two decoding paths agree ----------------------------------------------------------

_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
_fields = {
    "id": st.one_of(st.text(max_size=130), _json_values),
    "org": st.one_of(st.sampled_from(["acme", ""]), _json_values),
    "call": st.one_of(st.text(max_size=3), _json_values),
    "at": st.one_of(
        st.sampled_from(
            [
                "2017-01-04T16:16:04.274+01:00",
                "2017-01-04t15:16:04Z",
                "2017-01-04T16:16:04.1234567-05:30",
                "2017-01-04 16:16:04Z",
                "2017-13-04T16:16:04Z",
                "2017-01-04T16:16:60Z",
            ]
        ),
        _json_values,
    ),
    "type": st.one_of(st.sampled_from([*PARTIES_OF_TYPE, "dialled"]), _json_values),
    "seq": st.one_of(st.integers(-1, 2**63), _json_values),
    "party": st.one_of(
        st.sampled_from(["caller", "user", "external", "function", "x"]), _json_values
    ),
    "number": st.one_of(st.sampled_from(["+4672000001", "622"]), _json_values),
    "kind": st.one_of(st.sampled_from([*sorted(KINDS), "QUEUE"]), _json_values),
    "dialed": st.one_of(st.just("+468"), _json_values),
    "target": st.one_of(st.just("622"), _json_values),
    "extra": _json_values,
}


@pytest.mark.slow
@settings(max_examples=1500)
@given(st.fixed_dictionaries({}, optional=_fields))
def test_fast_and_full_decoding_agree(fields: dict[str, object]) -> None:
    line = json.dumps(fields).encode()  # json, not orjson: it writes integers past 64 bits
    _assert_paths_agree(line)


@pytest.mark.slow
@settings(max_examples=1500)
@given(st.fixed_dictionaries({}, optional=_fields))
def test_fast_and_full_decoding_agree_on_raw_text(fields: dict[str, object]) -> None:
    """The same with text written as it is (orjson: UTF-8 and DEL raw, only control characters
    escaped), so that most lines take the fast path's shortcut for lines without escapes."""
    try:
        line = orjson.dumps(fields)
    except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates
        assume(False)
    _assert_paths_agree(line)


def _assert_paths_agree(line: bytes) -> None:
    """The fast path accepts what the full path accepts, and refuses with its reason."""
    full = _full_path(line)
    result = decode_one(line, 1)
    if isinstance(result, Rejection):
        assert result.reason == full
    else:
        assert result == full


def _full_path(line: bytes) -> Event | str:
    try:
        return _check(_decode_wire(line))
    except _Invalid as exc:
        return str(exc)


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]))  # any text JSON can hold


@given(st.lists(st.tuples(_TEXT, st.one_of(st.none(), _TEXT, st.integers(-(2**63), 2**63)))))
def test_a_record_is_written_as_orjson_writes_it(fields: list[tuple[str, object]]) -> None:
    # Records were written by orjson before; their stored bytes and the API's answers must not
    # change with the encoder, in order or escaping.
    rendered = dict(fields)
    assert dumps(rendered) == orjson.dumps(rendered)


# Numbers near the rule of events.md: its characters, and a few it refuses.
_NUMBER_TEXT = st.text(st.sampled_from("0123456789+-*#._aZ (\u00e9"), max_size=66)
_LINE_FIELDS = {**_fields, "number": st.one_of(_NUMBER_TEXT, _fields["number"]),
                "dialed": st.one_of(_NUMBER_TEXT, _fields["dialed"]),
                "target": st.one_of(_NUMBER_TEXT, _fields["target"])}  # fmt: skip


#: A valid event of each type, which `_lines` changes a field or two of.
_VALID = {
    "started": {"party": "caller", "number": "+4672000001", "dialed": "+468"},
    "entered": {"party": "function", "number": "622", "kind": "ACD"},
    "ringing": {"party": "user", "number": "+4672000002"},
    "answered": {"party": "function", "number": "622"},
    "transferred": {"party": "user", "number": "+4672000002", "target": "711"},
    "hangup": {"party": "external", "number": "+4687654321"},
    "ended": {},
}


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    """A line as a stream may hold it: an event, valid or with a field or two changed or
    left out, written either way; blank; or not JSON."""
    how = draw(st.sampled_from(["json", "orjson", "orjson", "blank", "garbage"]))
    if how == "blank":
        return draw(st.sampled_from([b"", b"  ", b"\t\r"]))
    if how == "garbage":
        return draw(st.binary(max_size=20))
    type_ = draw(st.sampled_from(sorted(_VALID)))
    fields: dict[str, object] = {
        "id": "e-1", "org": "acme", "call": "c-1", "at": "2017-01-04T16:16:04.274+01:00",
        "type": type_, **_VALID[type_],
    }  # fmt: skip
    # A number of the event's changed more often than the rest: the loop in C checks their
    # rule itself.
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["number", "dialed", "target"]))] = draw(_NUMBER_TEXT)
    for name in draw(st.lists(st.sampled_from(sorted(_LINE_FIELDS)), max_size=2)):
        if draw(st.booleans()):
            fields[name] = draw(_LINE_FIELDS[name])
        else:
            fields.pop(name, None)
    if how == "orjson":
        try:
            return orjson.dumps(fields)
        except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates
            pass
    return json.dumps(fields).encode()


@pytest.mark.slow
@settings(max_examples=1000)
@given(st.lists(_lines(), max_size=6), st.booleans(), st.integers(1, 5), st.booleans())
def test_the_batch_loop_in_c_agrees_with_python(
    lines: list[bytes], bom: bool, first_line: int, first: bool
) -> None:
    """`decode_batch`'s loop in C gives what its definition in Python gives, line for line."""
    in_c = _decode_into_c()
    if in_c is None:
        pytest.skip("samtal._speedups was not built here (no C compiler?): Python decodes")
    if bom and lines:
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines = [line + b"\n" for line in lines]
    by_c, by_python = Decoded([], [], []), Decoded([], [], [])
    in_c(lines, first_line, first, by_c)
    _decode_into_python(lines, first_line, first, by_python)
    assert by_c == by_python
