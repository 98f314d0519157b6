"""What privacy.md asks of a token and an organisation's secret, pure: scopes and groups as
given, pseudonyms and the hashes an erasure keeps of a number, and a record or a call's path
as a pseudonymizing token receives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Final

from samtal.errors import UsageError, shorten

#: What a read token may do, and what each scope opens (privacy.md).
SCOPES: Final = ("records", "stats", "erase")
DEFAULT_SCOPES: Final = ("records", "stats")
#: Response groups one token may be limited to, at most.
MAX_GROUPS: Final = 100
_GROUP = re.compile(r"[^,\s]{1,64}")
#: The record fields that hold a person's number (`receivingNo` is a function's: kept).
PERSON_FIELDS: Final = ("callerNo", "calleeNo")


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


def _mac(secret: bytes, number: str) -> str:
    digest = hmac.new(secret, number.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()


def pseudonym(secret: bytes, number: str) -> str:
    """The pseudonym of a number in the organisation whose secret this is (privacy.md)."""
    return "p:" + _mac(secret, number)[:16]


def number_hash(secret: bytes, number: str) -> str:
    """What an erasure keeps of the number it erased by: its keyed hash, never the number."""
    return "hash:" + _mac(secret, number)


def pseudonymize_record(record: dict[str, Any], secret: bytes) -> dict[str, Any]:
    """The record with the numbers of people as pseudonyms (null stays null)."""
    for name in PERSON_FIELDS:
        value = record.get(name)
        if value is not None:
            record[name] = pseudonym(secret, value)
    return record


def pseudonymize_path(path: list[dict[str, Any]], secret: bytes) -> list[dict[str, Any]]:
    """A call's path with every number but a function's as a pseudonym."""
    for item in path:
        if item.get("party") != "function" and item.get("number") is not None:
            item["number"] = pseudonym(secret, item["number"])
        for name in ("dialed", "target"):
            if item.get(name) is not None:
                item[name] = pseudonym(secret, item[name])
    return path
