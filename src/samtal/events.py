"""Events v1 (spec/events.md): decoding NDJSON or JSON arrays and validating every rule.

Two paths decode a line, and they must agree:

- the fast path lets msgspec decode the line straight into a typed `Event` (types, literals,
  lengths and bounds checked in C), then `_complete` applies the few rules that span fields;
- the full path, taken whenever the fast one declines, decodes into an untyped `_Wire` and
  `_check` applies every rule of events.md in order, wording the first one broken.

`_check` is the definition: the fast path declines anything it is not sure of (a withheld
caller, a field the type does not use holding an odd value, any broken rule), and a property
test holds it to "whatever the fast path accepts, the full path accepts identically".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Final, Literal, cast

import msgspec

from samtal.errors import shorten
from samtal.times import MAX_INSTANT, MIN_INSTANT, parse_instant
from samtal.types import KINDS, PARTIES_OF_TYPE, TYPE_RANK, EventType, Kind, Party

MAX_ID_LENGTH: Final = 128
MAX_NUMBER_LENGTH: Final = 64
MAX_SEQ: Final = 2**63 - 1
SEQ_RANGE: Final = f"it must be a non-negative integer up to {MAX_SEQ}"
#: A UTF-8 byte order mark, which may open a stream (and nothing else).
BOM: Final = b"\xef\xbb\xbf"
_BACKSLASH, _DEL = ord("\\"), 0x7F
_UNSET: Any = msgspec.UNSET

#: Text values, version 3 (events.md): an id or call holds no control character and no unpaired
#: surrogate (in a decoded str every surrogate left is unpaired); a number, `dialed` or `target`
#: is 1 to 64 digits, ASCII letters or `+ * # . _ -`, `+` only first and `-` never first.
ID_PATTERN: Final = r"\A[^\x00-\x1f\x7f\ud800-\udfff]*\Z"
NUMBER_PATTERN: Final = r"\A(?:\+[0-9A-Za-z*#._-]{0,63}|[0-9A-Za-z*#._][0-9A-Za-z*#._-]{0,63})\Z"
_ID_TEXT = re.compile(ID_PATTERN)
_NUMBER_TEXT = re.compile(NUMBER_PATTERN)
#: What a number may be, said as a reason says it.
NUMBER_RULE: Final = (
    "use 1 to 64 digits, letters or + * # . _ - (+ only first, - never first), e.g. "
    "+4672111111 or 622"
)

# The typed decode checks lengths; the text rules are checked after it (`_complete`), where
# most lines can skip them: as a `pattern` here they took 60% of the decode (1.2 of 1.9 us).
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Number = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NUMBER_LENGTH)]
#: Numbers seen to follow the rule: a switch's numbers repeat, so most are checked once.
_GOOD_NUMBERS: set[str] = set()
_GOOD_NUMBERS_MAX = 100_000
_Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]


class Event(msgspec.Struct, gc=False):
    """One valid event. `at` is the text the switch sent; `instant` is that moment in
    microseconds since the epoch (UTC), set by the decoder. Treat it as read-only."""

    org: str
    id: _Id
    call: _Id
    at: str
    type: EventType
    seq: _Seq | None = None
    party: Party | None = None
    number: _Number | None = None
    kind: Kind | None = None
    dialed: _Number | None = None
    target: _Number | None = None
    # Not a field of events.md: the name keeps a sender from setting it (it is overwritten).
    instant: int = msgspec.field(default=0, name="@samtal:instant")

    def order_key(self) -> tuple[int, bool, int, int, str]:
        """The event's place in its call's total order (cdr.md, rules 1 to 4)."""
        seq = self.seq
        return (self.instant, seq is None, seq or 0, TYPE_RANK[self.type], self.id)


class Rejection(msgspec.Struct, frozen=True):
    """An invalid line: its 1-based position, its `id` when it had a string one, and why."""

    line: int
    id: str | None
    reason: str
    #: Set when the one thing wrong is that the event's organisation is not known.
    unknown_org: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class _Wire(msgspec.Struct):
    """A JSON object with the fields of events.md, whatever their values' types."""

    id: Any = _UNSET
    org: Any = _UNSET
    call: Any = _UNSET
    at: Any = _UNSET
    type: Any = _UNSET
    seq: Any = None
    party: Any = _UNSET
    number: Any = _UNSET
    kind: Any = _UNSET
    dialed: Any = _UNSET
    target: Any = _UNSET


_decode_event = msgspec.json.Decoder(Event).decode
_decode_wire = msgspec.json.Decoder(_Wire).decode
_decode_array = msgspec.json.Decoder(list[msgspec.Raw]).decode
_JSON_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
#: The one field each type needs beyond party and number.
_EXTRA_OF_TYPE: Final = {"entered": "kind", "started": "dialed", "transferred": "target"}


class _Invalid(Exception):
    """A broken rule, raised inside `_check` and turned into a Rejection."""


def _what(value: Any) -> str:
    """How a JSON value reads in an error message: its JSON type."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _text_problem(name: str, value: Any, limit: int | None) -> _Invalid:
    """Why `value` is not a valid text field `name` (called only once it is known not to be)."""
    if value is _UNSET:
        return _Invalid(f"`{name}` is missing")
    if type(value) is not str:
        return _Invalid(f"`{name}` must be a string, not {_what(value)}")
    return _Invalid(f"`{name}` must be 1 to {limit} characters long, not {len(value)}")


def _check_id(name: str, value: Any) -> str:
    """`value` as an id or call, or _Invalid saying why it cannot be one."""
    if type(value) is not str or not 0 < len(value) <= MAX_ID_LENGTH:
        raise _text_problem(name, value, MAX_ID_LENGTH)
    if not _ID_TEXT.match(value):
        bad = next(c for c in value if not _ID_TEXT.match(c))
        what = "an unpaired surrogate" if "\ud800" <= bad <= "\udfff" else "a control character"
        raise _Invalid(f"`{name}` holds {what} (U+{ord(bad):04X}): ids are printable text")
    return value


def _check_number(name: str, value: Any) -> str:
    """`value` as a number, `dialed` or `target`, or _Invalid saying why it cannot be one."""
    if type(value) is not str:
        raise _text_problem(name, value, None)
    if not _NUMBER_TEXT.match(value):
        if len(value) > MAX_NUMBER_LENGTH:
            raise _Invalid(
                f"`{name}` is {len(value):,} characters long: a number has at most "
                f"{MAX_NUMBER_LENGTH}"
            )
        raise _Invalid(f"`{name}` {shorten(value)} is not a number: {NUMBER_RULE}")
    return value


def why_not(kind: Literal["id", "number"], name: str, value: Any) -> str | None:
    """Why `value` cannot be an id (or call) or a number, as an event's field `name` would be
    told, or None when it can."""
    try:
        (_check_id if kind == "id" else _check_number)(name, value)
    except _Invalid as exc:
        return str(exc)
    return None


def _check(wire: _Wire) -> Event:
    """The Event that `wire` describes, or _Invalid naming the first rule it breaks."""
    event_id, org, call, at_text, type_ = wire.id, wire.org, wire.call, wire.at, wire.type
    _check_id("id", event_id)
    if type(org) is not str:
        raise _text_problem("org", org, None)
    _check_id("call", call)
    if type(at_text) is not str:
        raise _text_problem("at", at_text, None)
    instant = parse_instant(at_text)
    if instant is None:
        raise _Invalid(f"`at` is not an RFC 3339 time with an offset: {shorten(at_text)}")
    if not MIN_INSTANT <= instant < MAX_INSTANT:
        raise _Invalid(
            f"`at` ({at_text}) is outside the years a record can be given in every time zone: "
            "use a time from 0001-01-02 to 9999-12-30 (UTC)"
        )
    if type(type_) is not str:
        raise _text_problem("type", type_, None)
    allowed = PARTIES_OF_TYPE.get(type_)
    if allowed is None:
        raise _Invalid(
            f"`type` {shorten(type_)} is unknown: use one of {', '.join(PARTIES_OF_TYPE)}"
        )
    seq = wire.seq
    if seq is not None and (type(seq) is not int or not 0 <= seq <= MAX_SEQ):
        if type(seq) is int and seq > MAX_SEQ:
            raise _Invalid(f"`seq` {shorten(seq)} is out of range: {SEQ_RANGE}")
        raise _Invalid(f"`seq` must be a non-negative integer, not {_what(seq)} {shorten(seq)}")
    if type_ == "ended":  # party and number of an `ended` are ignored
        return Event(org, event_id, call, at_text, "ended", seq, instant=instant)

    party = wire.party
    if party not in allowed:
        if party is _UNSET:
            raise _Invalid(f"`party` is missing: a `{type_}` event needs one")
        raise _Invalid(
            f"`party` {shorten(party)} is not allowed on a `{type_}` event "
            f"(allowed: {', '.join(allowed)})"
        )
    number = wire.number
    if type(number) is not str and not (number is None and party == "caller"):
        if number is _UNSET:
            raise _Invalid("`number` is missing")
        raise _Invalid(f"`number` must be a string (null only for a caller), not {_what(number)}")
    if number is not None:
        _check_number("number", number)
    kind = dialed = target = None
    if type_ == "entered":
        kind = wire.kind
        if type(kind) is not str or kind not in KINDS:
            if kind is _UNSET:
                raise _Invalid("`kind` is missing: an `entered` event needs one")
            raise _Invalid(
                f"`kind` {shorten(kind)} is unknown: use one of {', '.join(sorted(KINDS))}"
            )
    elif type_ == "started":
        dialed = _check_number("dialed", wire.dialed)
    elif type_ == "transferred":
        target = _check_number("target", wire.target)
    type_checked = cast(EventType, type_)  # one of PARTIES_OF_TYPE's keys
    return Event(
        org,
        event_id,
        call,
        at_text,
        type_checked,
        seq,
        party,
        number,
        kind,
        dialed,
        target,
        instant,
    )


#: Per type: the parties it allows, and the one extra field it needs (if any).
_RULES: Final = {t: (parties, _EXTRA_OF_TYPE.get(t)) for t, parties in PARTIES_OF_TYPE.items()}


def _plain(line: bytes | str) -> bool:
    """Whether no text decoded from this JSON can hold a control character or a surrogate:
    JSON allows them only as escapes (DEL aside), so a line without a backslash or a DEL has
    none, and its ids need no further look."""
    if isinstance(line, str):
        return "\\" not in line and "\x7f" not in line
    # Bytes are searched for an int, which is one memchr; `b"\\" in line` runs the general
    # substring search, about 0.3 us a line (half the typed decode).
    return _BACKSLASH not in line and _DEL not in line


def _numbers_valid(*numbers: str | None) -> bool:
    """Whether each number given follows the rule of events.md (None: not given)."""
    for number in numbers:
        if number is not None and number not in _GOOD_NUMBERS:
            if _NUMBER_TEXT.match(number) is None:
                return False
            if len(_GOOD_NUMBERS) >= _GOOD_NUMBERS_MAX:
                _GOOD_NUMBERS.clear()
            _GOOD_NUMBERS.add(number)
    return True


def _complete(event: Event, plain: bool) -> bool:
    """Apply the text and cross-field rules to a typed decode; False when the full path must
    decide. `plain`: the line passed `_plain`."""
    if not plain and (_ID_TEXT.match(event.id) is None or _ID_TEXT.match(event.call) is None):
        return False
    allowed, extra = _RULES[event.type]
    if not allowed:  # `ended`: its party and number are ignored
        event.party = event.number = event.kind = event.dialed = event.target = None
    else:
        if event.party not in allowed or event.number is None:
            return False  # a broken rule, or a withheld caller: missing and null look alike
        if extra is not None and getattr(event, extra) is None:
            return False
        # Fields the type does not use are ignored, as the full path ignores them.
        if event.kind is not None and extra != "kind":
            event.kind = None
        if event.dialed is not None and extra != "dialed":
            event.dialed = None
        if event.target is not None and extra != "target":
            event.target = None
        # Inlined for the common case, the numbers seen before: one look-up each.
        good = _GOOD_NUMBERS
        dialed, target = event.dialed, event.target
        if (
            event.number not in good
            or (dialed is not None and dialed not in good)
            or (target is not None and target not in good)
        ) and not _numbers_valid(event.number, dialed, target):
            return False
    instant = parse_instant(event.at)
    if instant is None or not MIN_INSTANT <= instant < MAX_INSTANT:
        return False
    event.instant = instant
    return True


def decode_one(line: bytes | str, position: int) -> Event | Rejection:
    """Decode and validate one JSON object; `position` is its 1-based line or array index."""
    try:
        event = _decode_event(line)
        if _complete(event, _plain(line)):
            return event
    except (msgspec.DecodeError, RecursionError):  # the full path words it
        pass
    return _decode_fully(line, position)


def _decode_fully(line: bytes | str, position: int) -> Event | Rejection:
    """The full path: every rule in order, and the first one broken in the user's terms."""
    try:
        wire = _decode_wire(line)
    except msgspec.ValidationError as exc:
        return Rejection(position, None, _invalid_field(exc))
    except msgspec.DecodeError as exc:
        unreadable = _not_utf8(line)
        if unreadable is not None:
            return Rejection(position, None, unreadable)
        surrogate = _SURROGATE.search(line if isinstance(line, bytes) else line.encode())
        if surrogate is not None:  # the decoder's own words ("truncated") would mislead
            escape = surrogate.group().decode()
            return Rejection(
                position,
                None,
                f"not valid JSON: it holds an unpaired surrogate ({escape}): send valid Unicode",
            )
        return Rejection(position, None, f"not valid JSON: {_short(exc)}")
    except RecursionError:
        return Rejection(position, None, TOO_DEEP)
    try:
        return _check(wire)
    except _Invalid as exc:
        event_id = wire.id if type(wire.id) is str else None
        return Rejection(position, event_id, str(exc))


def _not_utf8(line: bytes | str) -> str | None:
    """Why `line` is not UTF-8 text, in the user's terms, or None when it is."""
    if isinstance(line, str):
        return None
    try:
        line.decode()
    except UnicodeDecodeError as exc:
        return (
            f"not UTF-8 text: byte 0x{line[exc.start]:02X} at column {exc.start + 1} is not "
            "UTF-8 (send events as UTF-8)"
        )
    return None


#: How the reason begins where a line is not JSON at all (`_decode_fully`).
UNREADABLE = ("not valid JSON", "not UTF-8 text")
#: A JSON escape of a surrogate, which valid text only has in pairs.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
TOO_DEEP = "JSON nested too deeply to read: an event nests at most a few levels"
_FIELD_AT = re.compile(r" - at `\$\.([a-z]+)`$")


def _invalid_field(exc: msgspec.ValidationError) -> str:
    """Why a JSON value could not be read into `_Wire`: not an object, or a field whose number
    is out of any range (the only value an `Any` field refuses)."""
    found = _FIELD_AT.search(str(exc))
    if found is None:
        return "not a JSON object"
    name = found.group(1)
    if name == "seq":
        return f"`seq` is a number out of range: {SEQ_RANGE}"
    return f"`{name}` is a number out of range: it must be a string"


def _short(exc: Exception) -> str:
    return str(exc).split(" - ")[0].rstrip(".")


class Decoded(msgspec.Struct):
    """A decoded batch: the valid events with the line each came from, and the rejections."""

    events: list[Event]
    lines: list[int]
    rejections: list[Rejection]

    @classmethod
    def of(cls, results: Iterable[Event | Rejection], positions: Iterable[int]) -> Decoded:
        """Sort per-line results (events or rejections) into a Decoded."""
        out = cls([], [], [])
        for result, position in zip(results, positions, strict=True):
            if isinstance(result, Event):
                out.events.append(result)
                out.lines.append(position)
            else:
                out.rejections.append(result)
        return out


def decode_batch(
    lines: Iterable[bytes], first_line: int = 1, *, opens: bool | None = None
) -> Decoded:
    """The events and the rejections of NDJSON lines; blank lines are skipped but counted.

    The bulk path: one plain loop, with the fast path of `decode_one` inlined (in C where the
    extension was built). `first_line` is the number of the first line, for a stream read in
    batches. `opens`: whether the first line opens the stream, where a byte order mark may
    precede it (default: when it is line 1).
    """
    out = Decoded([], [], [])
    _decode_into(lines, first_line, first_line == 1 if opens is None else opens, out)
    return out


def _decode_into_python(lines: Iterable[bytes], first_line: int, first: bool, out: Decoded) -> None:
    """`decode_batch`'s loop, its answer added to `out`: the definition of `decode_lines` in
    _speedups_events.c."""
    decode, complete, DecodeError = _decode_event, _complete, msgspec.DecodeError
    keep, keep_line = out.events.append, out.lines.append
    for position, line in enumerate(lines, first_line):
        if first:
            first = False
            if line.startswith(BOM):
                line = line[3:]
        try:
            event = decode(line)
            if complete(event, _BACKSLASH not in line and _DEL not in line):  # `_plain`, inlined
                keep(event)
                keep_line(position)
                continue
        except (DecodeError, RecursionError):
            pass
        if line and not line.isspace():
            result = _decode_fully(line, position)
            if isinstance(result, Event):
                keep(result)
                keep_line(position)
            else:
                out.rejections.append(result)


def _decode_into_c() -> Callable[[Iterable[bytes], int, bool, Decoded], None] | None:
    """`decode_batch`'s loop in C (_speedups_events.c), with `_complete`'s common case: 0.63x
    the instructions of Python's loop, two thirds of them msgspec's typed decode.
    Whatever that case does not cover (a line with escapes, a withheld caller, a broken rule),
    this module's `_complete` and `_decode_fully` decide, called from the loop. None where the
    build had no C compiler."""
    try:
        from samtal._speedups import decode_lines
    except ImportError:
        return None
    context = (
        _decode_event,
        _complete,
        _decode_fully,
        Event,
        _RULES,
        MIN_INSTANT,
        MAX_INSTANT,
        (msgspec.DecodeError, RecursionError),
    )

    def decode_into(lines: Iterable[bytes], first_line: int, first: bool, out: Decoded) -> None:
        decode_lines(lines, first_line, first, context, out.events, out.lines, out.rejections)

    # It reads an event's fields from msgspec's slots: with a msgspec that keeps them
    # otherwise, it refuses (TypeError), and Python decodes.
    try:
        decode_into([], 1, True, Decoded([], [], []))
    except TypeError:
        return None
    return decode_into


_decode_into = _decode_into_c() or _decode_into_python


def decode_lines(lines: Iterable[bytes]) -> Iterator[Event | Rejection]:
    """Events and rejections of NDJSON lines, in order; blank lines are skipped but counted."""
    first = True
    for position, line in enumerate(lines, 1):
        if first:
            first = False
            if line.startswith(BOM):
                line = line[3:]
        if line and not line.isspace():
            yield decode_one(line, position)


def decode_array(body: bytes) -> list[Event | Rejection]:
    """Events and rejections of a JSON array body; ValueError when it is not an array at all."""
    try:
        items = _decode_array(body.removeprefix(BOM))
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(f"the body is not a JSON array of events: {_short(exc)}") from exc
    except RecursionError:
        raise ValueError(f"the body is not a JSON array of events: {TOO_DEEP}") from None
    return [decode_one(bytes(raw), position) for position, raw in enumerate(items, 1)]
