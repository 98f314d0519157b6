"""The call record (spec/cdr.md): its seven fields, their rendering and the order of records."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

import msgspec
import orjson

from samtal.times import US_PER_HOUR, US_PER_MS, hour_offsets, render

if TYPE_CHECKING:
    from samtal.events import Event

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


#: The fields of a record in the detailed view (changes.md; query.md adds `outcome`), in order.
DETAILED_FIELDS: Final[tuple[str, ...]] = ("id", *FIELDS, "version", "seq", "outcome")

#: How a call ended (query.md, "Outcome").
Outcome = Literal["answered", "voicemail", "abandoned", "rejected", "unanswered"]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)


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
    #: How it ended (query.md); not one of the seven fields.
    outcome: Outcome = "unanswered"

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

    def json(self, zone: ZoneInfo) -> bytes:
        """`dumps(self.render(zone))`, the same bytes, made in C where the extension was built
        (1.5 against 3.4 us a record). The C leaves to that definition what it does not write:
        a number JSON escapes, a time in an hour whose offset changes or has seconds."""
        made = None if _json_in_c is None else self._written(_json_in_c, zone)
        return dumps(self.render(zone)) if made is None else made

    def csv(self, zone: ZoneInfo) -> bytes:
        """`csv_row(self.render(zone).values())`, the same bytes, made in C where the
        extension was built, as `json` is (and the same left to the definition, and a number
        that holds a comma)."""
        made = None if _csv_in_c is None else self._written(_csv_in_c, zone)
        return csv_row(self.render(zone).values()) if made is None else made

    def _written(self, writer: Callable[..., bytes | None], zone: ZoneInfo) -> bytes | None:
        """The record as the C `writer` writes it, each time with its zone's offset; None
        where it declines."""
        hours = hour_offsets(zone)
        start, received, answered, stop = (
            self.start,
            self.received,
            self.callee_answered,
            self.stop,
        )
        return writer(
            self.caller_no,
            self.receiving_no,
            self.callee_no,
            start,
            hours[start // US_PER_HOUR],
            received,
            None if received is None else hours[received // US_PER_HOUR],
            answered,
            None if answered is None else hours[answered // US_PER_HOUR],
            stop,
            hours[stop // US_PER_HOUR],
        )


def dumps(rendered: dict[str, Any]) -> bytes:
    """Compact JSON of a rendered record, in its field order: the same bytes as orjson's,
    but msgspec's bytes are made at their size, where orjson's are cut down from a larger
    buffer. A bulk run that keeps every record paid 4 us a record for that, against 0.8."""
    return _encode(rendered)


_encode = msgspec.json.Encoder().encode


def _writers_in_c() -> tuple[Callable[..., bytes | None], ...] | tuple[None, None]:
    """A record's JSON and CSV writers in C (_speedups.c); None where the build had no C
    compiler."""
    try:
        from samtal._speedups import record_csv, record_json
    except ImportError:
        return None, None
    return record_json, record_csv


_json_in_c, _csv_in_c = _writers_in_c()
#: Whether `Record.json` and `Record.csv` write in C (else through `render` alone).
JSON_IN_C: Final = _json_in_c is not None


def detailed(call: str, plain: bytes, version: int, seq: int, outcome: str) -> bytes:
    """The detailed form of a record (changes.md, query.md) from its compact plain JSON: `id`,
    the seven fields in order, `version`, `seq`, `outcome`. Spliced as bytes: the seven fields
    are rendered once, when the record is made."""
    return b'{"id":%b,%b,"version":%d,"seq":%d,"outcome":"%b"}' % (
        orjson.dumps(call),
        plain[1:-1],
        version,
        seq,
        outcome.encode(),
    )


def tombstone(call: str, version: int, seq: int, *, erased: bool = False) -> bytes:
    """A record that is gone (changes.md): exactly `id`, `deleted`, `version`, `seq`, and
    `"reason": "erased"` when an erasure took it (privacy.md)."""
    gone = b'{"id":%b,"deleted":true,"version":%d,"seq":%d' % (orjson.dumps(call), version, seq)
    return gone + (b',"reason":"erased"}' if erased else b"}")


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


def detailed_csv(call: str, plain: bytes, version: int, seq: int, outcome: str) -> bytes:
    """The detailed form of a record's CSV row from its plain row: `id` first, `version`,
    `seq` and `outcome` last."""
    return b"%b,%b,%d,%d,%b\r\n" % (
        csv_field(call).encode(),
        plain[:-2],
        version,
        seq,
        outcome.encode(),
    )


def path_json(path: Sequence[tuple[Event, bool]], zone: ZoneInfo) -> bytes:
    """A call's path as GET /cdr/calls/{id} serves it (query.md): each event's `at` (rendered
    like `start`), type, party and number, its kind, target or dialed where its type has one,
    and `stops`."""
    items = []
    for event, stops in path:
        item: dict[str, Any] = {
            "at": render(event.instant, zone),
            "type": event.type,
            "party": event.party,
            "number": event.number,
        }
        if event.type == "entered":
            item["kind"] = event.kind
        elif event.type == "transferred":
            item["target"] = event.target
        elif event.type == "started":
            item["dialed"] = event.dialed
        item["stops"] = stops
        items.append(item)
    return orjson.dumps(items)
