"""The call record (spec/cdr.md): its seven fields, their rendering and the order of records."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import orjson

from samtal.times import US_PER_MS, render

#: The seven fields of a record, in the order the product description fixes.
FIELDS: Final[tuple[str, ...]] = (
    "callerNo",
    "start",
    "receivingNo",
    "received",
    "calleeNo",
    "calleeAnswered",
    "stop",
)


#: The fields of a record in the detailed view (changes.md), in order.
DETAILED_FIELDS: Final[tuple[str, ...]] = ("id", *FIELDS, "version", "seq")


class Record(msgspec.Struct, frozen=True, gc=False):
    """One call's record; instants in microseconds since the epoch (UTC)."""

    org: str
    call: str
    caller_no: str | None
    start: int
    receiving_no: str | None
    received: int | None
    callee_no: str | None
    callee_answered: int | None
    stop: int

    def order_key(self) -> tuple[int, str, str]:
        """Records are ordered by start truncated to the millisecond, then org, then call."""
        return (self.start // US_PER_MS, self.org, self.call)

    def render(self, zone: ZoneInfo) -> dict[str, Any]:
        """The record as the API serves it: the seven fields in order, times in `zone`."""
        received, answered = self.received, self.callee_answered
        return {
            "callerNo": self.caller_no,
            "start": render(self.start, zone),
            "receivingNo": self.receiving_no,
            "received": None if received is None else render(received, zone),
            "calleeNo": self.callee_no,
            "calleeAnswered": None if answered is None else render(answered, zone),
            "stop": render(self.stop, zone),
        }


def dumps(rendered: dict[str, Any]) -> bytes:
    """Compact JSON of a rendered record (orjson keeps the field order)."""
    return orjson.dumps(rendered)


def detailed(call: str, plain: bytes, version: int, seq: int) -> bytes:
    """The detailed form of a record (changes.md) from its compact plain JSON: `id`, the seven
    fields in order, `version`, `seq`. Spliced as bytes: the seven fields are rendered once,
    when the record is made."""
    return b'{"id":%b,%b,"version":%d,"seq":%d}' % (orjson.dumps(call), plain[1:-1], version, seq)


def tombstone(call: str, version: int, seq: int) -> bytes:
    """A record that is gone (changes.md): exactly `id`, `deleted`, `version`, `seq`."""
    return b'{"id":%b,"deleted":true,"version":%d,"seq":%d}' % (orjson.dumps(call), version, seq)


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def csv_row(values: Iterable[str | int | None]) -> bytes:
    """One RFC 4180 row (changes.md, "Formats"): null as an empty field, a field quoted only
    when it holds `"`, `,`, CR or LF, CRLF at the end."""
    return (",".join([csv_field(value) for value in values]) + "\r\n").encode()


def csv_field(value: str | int | None) -> str:
    """One field of a CSV row."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    return '"' + value.replace('"', '""') + '"' if _NEEDS_QUOTES.search(value) else value


def detailed_csv(call: str, plain: bytes, version: int, seq: int) -> bytes:
    """The detailed form of a record's CSV row from its plain row: `id` first, `version` and
    `seq` last."""
    return b"%b,%b,%d,%d\r\n" % (csv_field(call).encode(), plain[:-2], version, seq)
