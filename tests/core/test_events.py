"""Validation of events v1: one test per rule of events.md, and the line-level framing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from samtal.events import (
    Event,
    Rejection,
    decode_array,
    decode_batch,
    decode_lines,
    decode_one,
)

GOOD: dict[str, Any] = {
    "id": "a1",
    "org": "acme",
    "call": "c-1",
    "seq": 0,
    "at": "2017-01-04T16:16:04.274+01:00",
    "type": "started",
    "party": "caller",
    "number": "+4672111111",
    "dialed": "+46856400622",
}


def check(**changes: Any) -> Event | Rejection:
    event = {**GOOD, **changes}
    for key in [k for k, v in changes.items() if v is DROP]:
        del event[key]
    return decode_one(orjson.dumps(event), 7)


DROP = object()


def reason(**changes: Any) -> str:
    result = check(**changes)
    assert isinstance(result, Rejection), result
    assert result.line == 7
    return result.reason


def test_a_good_event() -> None:
    event = check()
    assert isinstance(event, Event)
    assert event.instant == 1483542964274000
    assert (event.org, event.id, event.call, event.seq) == ("acme", "a1", "c-1", 0)


@pytest.mark.parametrize("field", ["id", "org", "call", "at", "type"])
def test_each_required_field(field: str) -> None:
    assert reason(**{field: DROP}) == f"`{field}` is missing"


@pytest.mark.parametrize("field", ["id", "org", "call", "at", "type"])
def test_each_required_field_is_a_string(field: str) -> None:
    assert reason(**{field: 5}) == f"`{field}` must be a string, not a number"


@pytest.mark.parametrize("field", ["id", "call"])
def test_id_and_call_are_1_to_128_characters(field: str) -> None:
    assert "1 to 128 characters" in reason(**{field: ""})
    assert "1 to 128 characters" in reason(**{field: "x" * 129})
    assert isinstance(check(**{field: "x" * 128}), Event)


def test_a_rejection_names_the_id_when_it_has_one() -> None:
    result = check(type="bogus")
    assert isinstance(result, Rejection) and result.id == "a1"
    result = check(id=DROP)
    assert isinstance(result, Rejection) and result.id is None


@pytest.mark.parametrize(
    "at",
    [
        "2017-01-04 16:16",
        "2017-01-04T16:16:04",
        "2017-01-04T16:16+01:00",
        "2017-01-04T16:16:60+01:00",
        "2017-01-04T24:00:00+01:00",
        "2017-02-30T10:00:00Z",
        "2017-01-04T16:16:04.+01:00",
        "2017-01-04T16:16:04.1234567890Z",
        "2017-01-04T16:16:04+0100",
        "2017-01-04T16:16:04+24:00",
        "2017-01-04 16:16:04Z",
        "２０17-01-04T16:16:04Z",
        "",
    ],
)
def test_at_must_be_rfc3339_with_an_offset(at: str) -> None:
    assert reason(at=at) == f"`at` is not an RFC 3339 time with an offset: {at!r}"


@pytest.mark.parametrize(
    ("at", "instant"),
    [
        ("2017-01-04T16:16:04.274+01:00", 1483542964274000),
        ("2017-01-04t15:16:04.274z", 1483542964274000),
        ("2017-01-04T15:16:04.274Z", 1483542964274000),
        ("2017-01-04T15:16:04.274999999Z", 1483542964274999),  # beyond microseconds: dropped
        ("2017-01-04T15:16:04Z", 1483542964000000),
        ("2017-01-04T15:16:04.2Z", 1483542964200000),
        ("2017-01-04T10:16:04-05:00", 1483542964000000),
    ],
)
def test_at_forms_that_are_accepted(at: str, instant: int) -> None:
    event = check(at=at)
    assert isinstance(event, Event) and event.instant == instant


def test_unknown_type() -> None:
    assert reason(type="dialled").startswith("`type` 'dialled' is unknown: use one of started,")


@pytest.mark.parametrize("seq", [-1, 1.0, 1.5, True, "3"])
def test_seq_is_a_non_negative_integer(seq: Any) -> None:
    assert reason(seq=seq).startswith("`seq` must be a non-negative integer")


@pytest.mark.parametrize("seq", [2**63, 2**64, 10**23])
def test_a_seq_too_large_is_named_out_of_range(seq: int) -> None:
    line = orjson.dumps(GOOD).replace(b'"seq":0', b'"seq":%d' % seq)  # orjson stops at 2**64
    expected = f"`seq` {seq} is out of range: it must be a non-negative integer up to {2**63 - 1}"
    assert decode_one(line, 7) == Rejection(7, "a1", expected)
    assert decode_batch([line], 7).rejections == [Rejection(7, "a1", expected)]


def test_seq_is_optional() -> None:
    assert isinstance(check(seq=DROP), Event)
    assert isinstance(check(seq=None), Event)  # null counts as absent


@pytest.mark.parametrize(
    ("kind", "party"),
    [
        ("started", "user"),
        ("entered", "user"),
        ("ringing", "function"),
        ("ringing", "caller"),
        ("answered", "caller"),
        ("transferred", "function"),
        ("transferred", "external"),
        ("hangup", "nobody"),
    ],
)
def test_a_party_the_type_does_not_allow(kind: str, party: str) -> None:
    text = reason(type=kind, party=party, kind="ACD", target="1")
    assert text.startswith(f"`party` '{party}' is not allowed on a `{kind}` event (allowed: ")


def test_party_is_required_when_the_type_has_one() -> None:
    assert reason(type="hangup", party=DROP) == "`party` is missing: a `hangup` event needs one"


def test_number_is_required_and_a_string() -> None:
    assert reason(number=DROP) == "`number` is missing"
    assert reason(type="ringing", party="user", number=None).startswith("`number` must be a")
    assert reason(type="ringing", party="user", number=46).startswith("`number` must be a string")


def test_a_withheld_caller_has_a_null_number() -> None:
    assert isinstance(check(number=None), Event)
    assert isinstance(check(type="hangup", number=None), Event)


def test_started_requires_dialed() -> None:
    assert reason(dialed=DROP) == "`dialed` is missing"
    assert reason(dialed=None) == "`dialed` must be a string, not null"


def test_entered_requires_a_known_kind() -> None:
    base = {"type": "entered", "party": "function", "number": "622"}
    assert reason(**base) == "`kind` is missing: an `entered` event needs one"
    assert reason(**base, kind="QUEUE").startswith("`kind` 'QUEUE' is unknown")
    assert isinstance(check(**base, kind="HUNT_GROUP"), Event)


def test_transferred_requires_target() -> None:
    base = {"type": "transferred", "party": "user", "number": "+4672555555"}
    assert reason(**base) == "`target` is missing"
    assert isinstance(check(**base, target="622"), Event)


def test_ended_ignores_party_and_number() -> None:
    event = check(type="ended", party=12, number=[1])
    assert isinstance(event, Event) and event.party is None and event.number is None


def test_unknown_fields_and_fields_the_type_does_not_use_are_ignored() -> None:
    event = check(colour="blue", target=5, kind={"x": 1})
    assert isinstance(event, Event) and event.target is None and event.kind is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b"42", "not a JSON object"),
        (b'{"id": ', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 text: byte 0xFF at column 1 "),
        (b'{"id": "a\xc3"}', "not UTF-8 text: byte 0xC3 at column 10 "),
    ],
)
def test_lines_that_are_not_objects(line: bytes, why: str) -> None:
    result = decode_one(line, 3)
    assert isinstance(result, Rejection) and result.reason.startswith(why)
    assert str(result).startswith("line 3: ")


def test_one_bad_line_never_stops_the_rest() -> None:
    good = orjson.dumps(GOOD)
    body = b"\xef\xbb\xbf" + good + b"\r\n\r\nnot json\r\n" + good.replace(b"a1", b"a2") + b"\n"
    results = list(decode_lines(body.split(b"\n")))
    assert [type(r).__name__ for r in results] == ["Event", "Rejection", "Event"]
    assert isinstance(results[1], Rejection) and results[1].line == 3


def test_lines_from_a_file_count_blank_lines() -> None:
    good = orjson.dumps(GOOD) + b"\n"
    results = list(decode_lines([good, b"\n", b"{}\n"]))
    assert isinstance(results[1], Rejection) and results[1].line == 3


def test_json_array_positions() -> None:
    body = orjson.dumps([GOOD, {"id": "x"}, 5])
    results = decode_array(body)
    assert isinstance(results[0], Event)
    assert [(r.line, r.reason) for r in results[1:] if isinstance(r, Rejection)] == [
        (2, "`org` is missing"),
        (3, "not a JSON object"),
    ]
    with pytest.raises(ValueError, match="not a JSON array"):
        decode_array(b'{"id": 1}')


def test_the_batch_decoder_agrees_with_the_line_decoder() -> None:
    good = orjson.dumps(GOOD)
    lines = [
        b"\xef\xbb\xbf" + good + b"\n",
        b"\n",
        b"nope\n",
        orjson.dumps({**GOOD, "id": "a2", "number": None}) + b"\r\n",
        orjson.dumps({**GOOD, "id": "a3", "type": "ended", "party": "x"}) + b"\n",
        orjson.dumps({**GOOD, "id": "a4", "seq": -1}) + b"\n",
    ]
    decoded = decode_batch(lines)
    assert [*decoded.events, *decoded.rejections] == sorted(
        decode_lines(lines), key=lambda r: isinstance(r, Rejection)
    )
    assert [r.line for r in decoded.rejections] == [3, 6]
    assert decoded.lines == [1, 4, 5]
    later = decode_batch(lines[1:], first_line=2)  # a later batch of the same stream
    assert later.lines == [4, 5]
    assert [r.line for r in later.rejections] == [3, 6]


@pytest.mark.parametrize("decode", ["one", "batch"])
def test_text_rules_hold_on_lines_without_escapes(decode: str) -> None:
    """events.md, text values v3, on the fast path: a number with a character outside the
    rule (written raw, no escape in the line) and an id with a raw DEL are refused, with the
    full path's reason; numbers remembered as valid stay valid."""
    cases = {
        "number": ("46 70", "`number` '46 70' is not a number"),
        "dialed": ("+46(8)", "`dialed` '+46(8)' is not a number"),
        "id": ("a\x7f", "`id` holds a control character (U+007F)"),
        "call": ("c\x7f", "`call` holds a control character (U+007F)"),
    }
    for field, (value, why) in cases.items():
        line = orjson.dumps({**GOOD, field: value})
        assert b"\\" not in line
        result = decode_one(line, 7) if decode == "one" else _batched(line)
        assert isinstance(result, Rejection), (field, result)
        assert result.reason.startswith(why), result.reason
    for _ in range(2):  # the second time from the memory of valid numbers
        assert isinstance(check(), Event)


def _batched(line: bytes) -> Event | Rejection:
    decoded = decode_batch([line], first_line=7)
    return decoded.events[0] if decoded.events else decoded.rejections[0]
