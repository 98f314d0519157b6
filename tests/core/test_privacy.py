"""privacy.md's pure part: scopes and groups as an operator gives them, pseudonyms and the
hashes an erasure keeps, recomputed here from the definition."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samtal.errors import UsageError
from samtal.filters import Match, parse_filters
from samtal.privacy import Pseudonyms, number_hash, parse_groups, parse_scopes, pseudonym

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))


def expected(secret: bytes, number: str) -> str:
    mac = hmac.new(secret, number.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().rstrip("=").lower()


def test_scopes_come_in_the_specs_order_and_unknown_ones_are_named() -> None:
    assert parse_scopes("stats, records") == ("records", "stats")
    assert parse_scopes("erase") == ("erase",)
    with pytest.raises(UsageError, match="unknown scope 'admin'"):
        parse_scopes("records,admin")
    with pytest.raises(UsageError, match="names no scope"):
        parse_scopes(" , ")


def test_groups_keep_their_order_once_each() -> None:
    assert parse_groups("622, 711,622") == ("622", "711")
    with pytest.raises(UsageError, match="names no response group"):
        parse_groups(",")
    with pytest.raises(UsageError, match="at most 100"):
        parse_groups(",".join(str(n) for n in range(101)))


@given(st.text(min_size=1, max_size=30))
def test_a_pseudonym_is_the_keyed_hash_of_the_number(number: str) -> None:
    assert pseudonym(SECRET, number) == "p:" + expected(SECRET, number)[:16]
    assert number_hash(SECRET, number) == "hash:" + expected(SECRET, number)
    assert pseudonym(SECRET, number) != pseudonym(OTHER, number)


def test_records_and_paths_keep_functions_and_nulls() -> None:
    record = {"callerNo": "+4672111111", "receivingNo": "622", "calleeNo": None}
    masks = Pseudonyms(SECRET)
    assert masks.fields(dict(record)) == {
        "callerNo": "p:" + expected(SECRET, "+4672111111")[:16],
        "receivingNo": "622",
        "calleeNo": None,
    }
    path = [
        {"type": "started", "party": "caller", "number": "+4672111111", "dialed": "622"},
        {"type": "received", "party": "function", "number": "622"},
        {"type": "transferred", "party": "user", "number": "+4672333333", "target": "+46701"},
    ]
    masked = masks.path([dict(item) for item in path])
    assert [item.get("number") for item in masked] == [
        pseudonym(SECRET, "+4672111111"),
        "622",
        pseudonym(SECRET, "+4672333333"),
    ]
    assert masked[0]["dialed"] == pseudonym(SECRET, "622")
    assert masked[2]["target"] == pseudonym(SECRET, "+46701")


def test_filters_on_pseudonyms_become_filters_on_the_numbers_they_stand_for() -> None:
    masks = Pseudonyms(SECRET)
    stored = ["+4672111111", "+4672222222", "622"]
    alice = masks("+4672111111")
    exact = masks.unmask(parse_filters({"callerNo": [alice]}), stored)
    assert [m.value for m in exact.numbers["callerNo"]] == ["+4672111111"]
    # A raw number matches nothing (no stored number has it as pseudonym).
    assert (
        masks.unmask(parse_filters({"calleeNo": ["+4672111111"]}), stored).numbers["calleeNo"] == ()
    )
    # A prefix of a pseudonym: every number whose pseudonym starts so; `p:*` all of them.
    some = masks.unmask(parse_filters({"callerNo": [alice[:4] + "*"]}), stored).numbers["callerNo"]
    assert "+4672111111" in [m.value for m in some]
    every = masks.unmask(parse_filters({"callerNo": ["p:*"]}), stored).numbers["callerNo"]
    assert every == (Match("", prefix=True),)
    # `number`: people by pseudonym, the response group as it is.
    either = masks.unmask(parse_filters({"number": [alice, "622"]}), stored)
    assert "number" not in either.numbers
    fields = {name: [m.value for m in found] for name, found in either.either}
    assert fields == {
        "callerNo": ["+4672111111"],
        "calleeNo": ["+4672111111"],
        "receivingNo": [alice, "622"],
    }
    # Null stays null.
    assert (
        masks.unmask(parse_filters({"calleeNo": [""]}), stored).numbers["calleeNo"][0].value is None
    )


_NUMBERS = st.sampled_from(["+4672111111", "+4672222222", "622", "+46701"])


@given(st.lists(st.tuples(st.one_of(st.none(), _NUMBERS), st.one_of(st.none(), _NUMBERS))))
def test_a_page_of_records_is_masked_as_each_record_alone(
    pairs: list[tuple[str | None, ...]],
) -> None:
    """`records` masks a page in one pass: record by record, as `fields` masks the decoded
    record, whatever repeats and nulls the page holds (and an empty page)."""
    page = [
        orjson.dumps({"id": f"c-{i}", "callerNo": caller, "receivingNo": "622", "calleeNo": callee})
        for i, (caller, callee) in enumerate(pairs)
    ]
    masked = Pseudonyms(SECRET).records(page)
    fresh = Pseudonyms(SECRET)
    assert [orjson.loads(r) for r in masked] == [fresh.fields(orjson.loads(r)) for r in page]


def test_an_answer_with_more_numbers_than_remembered_is_masked_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an answer remembers is bounded (a period's distinct numbers are not): past the
    bound it starts over, and each record is masked as before."""
    monkeypatch.setattr("samtal.privacy.MAX_REMEMBERED", 3)
    page = [
        orjson.dumps({"callerNo": f"+467{i % 7}", "receivingNo": "622", "calleeNo": f"+468{i}"})
        for i in range(40)
    ]
    masks = Pseudonyms(SECRET)
    masked = [orjson.loads(r) for r in [*masks.records(page[:20]), *masks.records(page[20:])]]
    expected = [orjson.loads(r) for r in page]
    for record in expected:
        record["callerNo"] = pseudonym(SECRET, record["callerNo"])
        record["calleeNo"] = pseudonym(SECRET, record["calleeNo"])
    assert masked == expected
