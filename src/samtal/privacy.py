"""What privacy.md asks of a token and an organisation's secret, pure: scopes and groups as
given, pseudonyms and the hashes an erasure keeps of a number, and a record or a call's path
as a pseudonymizing token receives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from samtal.errors import BadFilter, UsageError, shorten
from samtal.filters import Filters, Match, matches

#: What a read token may do, and what each scope opens (privacy.md).
SCOPES: Final = ("records", "stats", "erase")
DEFAULT_SCOPES: Final = ("records", "stats")
#: Response groups one token may be limited to, at most.
MAX_GROUPS: Final = 100
_GROUP = re.compile(r"[^,\s]{1,64}")
#: The record fields that hold a person's number (`receivingNo` is a function's: kept).
PERSON_FIELDS: Final = ("callerNo", "calleeNo")
#: A person's field with a value (null stays as it is) in a rendered record.
_PERSON_VALUE = re.compile(rb'"(callerNo|calleeNo)":"([^"\\]*)"')
#: The filters that name people: a pseudonymizing token gives them pseudonyms.
PERSON_FILTERS: Final = (*PERSON_FIELDS, "number")


def parse_scopes(text: str) -> tuple[str, ...]:
    """`--scope records,stats,erase`: the scopes, in the spec's order; UsageError naming an
    unknown one."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    if not given:
        raise UsageError("--scope names no scope: give one or more of records, stats, erase")
    unknown = [part for part in given if part not in SCOPES]
    if unknown:
        raise UsageError(
            f"unknown scope {shorten(unknown[0])}: the scopes are records, stats and erase"
        )
    return tuple(scope for scope in SCOPES if scope in given)


def parse_groups(text: str) -> tuple[str, ...]:
    """`--groups 622,711`: the response groups (receivingNo values), in the order given."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    if not given:
        raise UsageError("--groups names no response group: give their numbers, e.g. 622,711")
    bad = [part for part in given if not _GROUP.fullmatch(part)]
    if bad:
        raise UsageError(f"--groups: {shorten(bad[0])} is not a response group's number")
    if len(given) > MAX_GROUPS:
        raise UsageError(f"--groups: at most {MAX_GROUPS} response groups")
    return tuple(dict.fromkeys(given))


def _mac(secret: bytes, number: str) -> bytes:
    """HMAC-SHA256 over the number, keyed by the organisation's secret."""
    return hmac.digest(secret, number.encode(), hashlib.sha256)


_B32: Final = "abcdefghijklmnopqrstuvwxyz234567"
#: Each 10 bits as their two characters of lower-case base32.
_PAIRS: Final = tuple(a + b for a in _B32 for b in _B32)


def pseudonym(secret: bytes, number: str) -> str:
    """The pseudonym of a number in the organisation whose secret this is (privacy.md): the
    lower-case base32 of the first 10 bytes of `_mac` (base32 writes each 5 bytes as 8
    characters of their own, so these are the first 16 of the whole), their 80 bits read from
    `_PAIRS` in 8 steps rather than by base64's loop in Python (3.7 -> 2.4 us a number: a
    pseudonymizing reader works out one for each number it has not seen)."""
    n = int.from_bytes(_mac(secret, number)[:10], "big")
    p = _PAIRS
    return (
        f"p:{p[n >> 70]}{p[n >> 60 & 1023]}{p[n >> 50 & 1023]}{p[n >> 40 & 1023]}"
        f"{p[n >> 30 & 1023]}{p[n >> 20 & 1023]}{p[n >> 10 & 1023]}{p[n & 1023]}"
    )


def number_hash(secret: bytes, number: str) -> str:
    """What an erasure keeps of the number it erased by: its keyed hash, never the number."""
    return "hash:" + base64.b32encode(_mac(secret, number)).decode().rstrip("=").lower()


#: The most stored numbers one pseudonym filter may stand for (a prefix as short as `p:a*`
#: names a thirty-second of every number).
MAX_UNMASKED = 10_000


#: The most numbers (and fields) an answer's `Pseudonyms` remembers: about 35 MB. An answer
#: with more distinct numbers starts over, rather than growing with its period.
MAX_REMEMBERED = 100_000


class Pseudonyms:
    """One organisation's pseudonyms, each worked out once per instance (an answer's), as
    long as it remembers (MAX_REMEMBERED)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._known: dict[str, str] = {}
        self._fields: dict[bytes, bytes] = {}  # `"callerNo":"+46..."` -> its masked form

    def __call__(self, number: str) -> str:
        found = self._known.get(number)
        if found is None:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            found = self._known[number] = pseudonym(self._secret, number)
        return found

    def fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record (plain or detailed) with the numbers of people as pseudonyms."""
        for name in PERSON_FIELDS:
            value = record.get(name)
            if value is not None:
                record[name] = self(value)
        return record

    def path(self, path: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A call's path (query.md) with every number but a function's, and every `dialed`
        and `target`, as a pseudonym."""
        for item in path:
            if item.get("party") != "function" and item.get("number") is not None:
                item["number"] = self(item["number"])
            for name in ("dialed", "target"):
                if item.get(name) is not None:
                    item[name] = self(item[name])
        return path

    def record(self, rendered: bytes) -> bytes:
        """A rendered record (plain or detailed JSON, or a tombstone: left as it is). A
        number holds no `"` or `\\` (events.md), so each person's field is replaced where it
        stands, without parsing the record."""
        return _PERSON_VALUE.sub(self._replace, rendered)

    def records(self, page: list[bytes]) -> list[bytes]:
        """`record` of each of a page's records, in one pass over them joined (compact JSON
        holds no raw newline): the per-record call of `re.sub` was a quarter of its cost."""
        if not page:
            return page
        return _PERSON_VALUE.sub(self._replace, b"\n".join(page)).split(b"\n")

    def _replace(self, found: re.Match[bytes]) -> bytes:
        field = found[0]
        masked = self._fields.get(field)
        if masked is None:
            if len(self._fields) >= MAX_REMEMBERED:
                self._fields.clear()
            masked = b'"%b":"%b"' % (found[1], self(found[2].decode()).encode())
            self._fields[field] = masked
        return masked

    def unmask(self, filters: Filters, stored: Iterable[str]) -> Filters:
        """`filters` as a pseudonymizing token means them, in terms of the stored numbers
        `stored` (those of the period): a value on `callerNo` or `calleeNo` matches the numbers
        whose pseudonym it matches, so a raw number matches nothing; `number` also matches the
        kept `receivingNo` as given. BadFilter when a pseudonym prefix stands for too many."""
        if not any(name in filters.numbers for name in PERSON_FILTERS):
            return filters
        pairs = [(self(number), number) for number in stored]

        def raw(given: tuple[Match, ...]) -> tuple[Match, ...]:
            found: list[Match] = []
            for match in given:
                if match.value is None:
                    found.append(match)  # null stays null
                elif match.prefix and "p:".startswith(match.value):
                    found.append(Match("", prefix=True))  # `p:*`, like `*`: any number
                else:
                    found += [Match(n) for masked, n in pairs if matches(match, masked)]
            if len(found) > MAX_UNMASKED:
                raise BadFilter(
                    f"a pseudonym filter stands for more than {MAX_UNMASKED:,} numbers: give "
                    "more of the pseudonym before its `*`"
                )
            return tuple(found)

        numbers = dict(filters.numbers)
        for name in PERSON_FIELDS:
            if name in numbers:
                numbers[name] = raw(numbers[name])
        either = filters.either
        if "number" in numbers:
            given = numbers.pop("number")
            unmasked = raw(given)
            either = (("callerNo", unmasked), ("calleeNo", unmasked), ("receivingNo", given))
        return replace(filters, numbers=numbers, either=either)
