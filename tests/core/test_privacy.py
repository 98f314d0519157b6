"""privacy.md's pure part: scopes and groups as an operator gives them, pseudonyms and the
hashes an erasure keeps, recomputed here from the definition."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samtal.errors import UsageError
from samtal.privacy import (
    number_hash,
    parse_groups,
    parse_scopes,
    pseudonym,
    pseudonymize_path,
    pseudonymize_record,
)

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
    assert pseudonymize_record(dict(record), SECRET) == {
        "callerNo": "p:" + expected(SECRET, "+4672111111")[:16],
        "receivingNo": "622",
        "calleeNo": None,
    }
    path = [
        {"type": "started", "party": "caller", "number": "+4672111111", "dialed": "622"},
        {"type": "received", "party": "function", "number": "622"},
        {"type": "transferred", "party": "user", "number": "+4672333333", "target": "+46701"},
    ]
    masked = pseudonymize_path([dict(item) for item in path], SECRET)
    assert [item.get("number") for item in masked] == [
        pseudonym(SECRET, "+4672111111"),
        "622",
        pseudonym(SECRET, "+4672333333"),
    ]
    assert masked[0]["dialed"] == pseudonym(SECRET, "622")
    assert masked[2]["target"] == pseudonym(SECRET, "+46701")
