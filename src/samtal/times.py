"""Instants as integer microseconds since the Unix epoch: parsing RFC 3339, rendering in a zone."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from samtal.errors import UnknownZone

US_PER_SECOND = 1_000_000
US_PER_MS = 1_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# `YYYY-MM-DDTHH:MM`, the part of an `at` shared by every event of a minute. Parsing caches it,
# so that a stream pays for the date arithmetic once a minute, not once an event.
_MINUTE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}")
_INVALID = -(2**80)  # cached "not valid", below any real instant
_minute_cache: dict[str, int] = {}
_CACHE_LIMIT = 200_000


def _minute_us(text: str) -> int:
    """Microseconds from the epoch to the minute `YYYY-MM-DDTHH:MM` read as UTC, or _INVALID."""
    value = _minute_cache.get(text)
    if value is None:
        value = _INVALID
        if _MINUTE_SHAPE.fullmatch(text):
            hour, minute = int(text[11:13]), int(text[14:16])
            try:
                day = date.fromisoformat(text[:10]).toordinal() - _EPOCH_ORDINAL
            except ValueError:
                day = None
            if day is not None and hour <= 23 and minute <= 59:
                value = (day * 1440 + hour * 60 + minute) * 60 * US_PER_SECOND
        if len(_minute_cache) >= _CACHE_LIMIT:
            _minute_cache.clear()
        _minute_cache[text] = value
    return value


_REST_SHAPE = re.compile(r":([0-9]{2})(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")
_rest_cache: dict[str, int] = {}


def _rest_us(text: str) -> int:
    """Microseconds of a `:SS[.fraction](Z|±HH:MM)` text (the fraction truncated to
    microseconds) less its offset, or _INVALID."""
    value = _rest_cache.get(text)
    if value is None:
        value = _INVALID
        shape = _REST_SHAPE.fullmatch(text)
        if shape is not None:
            second, fraction, zulu, sign, hours, minutes = shape.groups()
            if second <= "59" and (zulu or (hours <= "23" and minutes <= "59")):
                value = int(second) * US_PER_SECOND + int(((fraction or "") + "000000")[:6])
                if not zulu:
                    offset = (int(hours) * 60 + int(minutes)) * 60 * US_PER_SECOND
                    value += offset if sign == "-" else -offset
        if len(_rest_cache) >= _CACHE_LIMIT:
            _rest_cache.clear()
        _rest_cache[text] = value
    return value


#: Below this a sum of parts holds an invalid one (valid parts are within ±2**60).
_ANY_INVALID = _INVALID // 2


#: The parts of the form most switches send, `…:SS.mmm±HH:MM`, each a look-up in a small dict.
_SECOND_PART = {f":{second:02d}": second * US_PER_SECOND for second in range(60)}
_MILLI_PART = {f".{ms:03d}": ms * US_PER_MS for ms in range(1000)}
_offset_part: dict[str, int] = {}


def parse_instant_python(text: str) -> int | None:
    """The instant of an events.md `at` text in microseconds, or None when it is not valid.
    The definition of `parse_instant`, which is this or the same parser in C (_speedups.c).

    The form is `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` and `Z` in either case, a
    fraction of 1 to 9 digits of which those past the microsecond are dropped (truncated).
    Each part is validated once and cached. The common form with milliseconds and an offset
    is four look-ups in small dicts (the minute, the second, the milliseconds, the offset);
    any other is two (the minute, and the rest: second, fraction and offset together, whose
    values repeat less).
    """
    # The cache hits are inlined: this runs once for every event of a stream.
    minute = _minute_cache.get(text[:16])
    if minute is None:
        minute = _minute_us(text[:16])
    if len(text) == 29 and (text[23] == "+" or text[23] == "-"):
        offset = _offset_part.get(text[23:])
        if offset is None:
            offset = _offset_part_us(text[23:])
        instant = (
            minute
            + _SECOND_PART.get(text[16:19], _INVALID)
            + _MILLI_PART.get(text[19:23], _INVALID)
            + offset
        )
        if instant >= _ANY_INVALID:
            return instant
    rest = _rest_cache.get(text[16:])
    if rest is None:
        rest = _rest_us(text[16:])
    instant = minute + rest
    return None if instant < _ANY_INVALID else instant


def _in_c() -> Callable[[str], int | None] | None:
    """The same parser in C (_speedups.c), or None where the build had no C compiler."""
    try:
        from samtal._speedups import parse_instant as parse
    except ImportError:
        return None
    return parse


_parse_in_c = _in_c()
#: Whether instants are parsed in C: 0.06-0.1 us an `at` against 0.5 for the cached look-ups
#: of `parse_instant_python` (0.6-0.7 of the 1.7 us that decoding an event cost with them).
PARSED_IN_C: Final = _parse_in_c is not None
#: The instant of an events.md `at` text in microseconds, or None when it is not valid (see
#: `parse_instant_python`, the definition).
parse_instant: Final = parse_instant_python if _parse_in_c is None else _parse_in_c


def _offset_part_us(text: str) -> int:
    """What a `±HH:MM` text adds to an instant read as UTC (its offset, negated), or _INVALID."""
    if len(_offset_part) >= _CACHE_LIMIT:
        _offset_part.clear()
    value = _offset_part[text] = _rest_us(":00" + text)
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The instants that render as a four-digit year in every zone (offsets stay within a day):
#: 0001-01-02T00:00:00Z up to, not including, 9999-12-31T00:00:00Z.
MIN_INSTANT = (date(1, 1, 2).toordinal() - _EPOCH_ORDINAL) * 86_400 * US_PER_SECOND
MAX_INSTANT = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL) * 86_400 * US_PER_SECOND


def to_datetime(instant: int, zone: ZoneInfo) -> datetime:
    """The instant as an aware datetime in `zone`."""
    return (_EPOCH + timedelta(microseconds=instant)).astimezone(zone)


def local_day(instant: int, zone: ZoneInfo) -> int:
    """The date of an instant in `zone`, as days since 1970-01-01 (its UTC date at the edges
    of the calendar, where the zone's date cannot be had). Worked out once a minute: a
    stream's calls share few minutes."""
    minute = instant // _US_PER_MINUTE
    day = _day_cache.get((zone, minute))
    if day is None:
        first = minute * _US_PER_MINUTE
        day = _local_day(first, zone)
        if _local_day(first + _US_PER_MINUTE - 1, zone) != day:
            # A date that changes within the minute (an offset with seconds: old local mean
            # times): this instant's own.
            return _local_day(instant, zone)
        if len(_day_cache) >= _CACHE_LIMIT:
            _day_cache.clear()
        _day_cache[zone, minute] = day
    return day


def _local_day(instant: int, zone: ZoneInfo) -> int:
    try:
        return to_datetime(instant, zone).date().toordinal() - _EPOCH_ORDINAL
    except (OverflowError, ValueError):
        return instant // (86_400 * US_PER_SECOND)


_day_cache: dict[tuple[ZoneInfo, int], int] = {}


def from_datetime(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


_US_PER_MINUTE = 60 * US_PER_SECOND
#: Per zone, per minute: `YYYY-MM-DDTHH:MM:` and `±HH:MM` (see `_minute_parts`). Keyed by zone,
#: then by minute, so that a look-up builds and hashes no tuple: 0.15 us of a render.
_render_cache: dict[ZoneInfo, dict[int, tuple[str, str]]] = {}
_minutes_cached = 0  # in all zones (a count kept on the rare misses: it may be a little off)


def _minute_parts(minute: int, zone: ZoneInfo) -> tuple[str, str]:
    """`YYYY-MM-DDTHH:MM:` and `±HH:MM` of a minute in `zone` ("" when its offset changes),
    kept in the cache."""
    global _minutes_cached
    first = to_datetime(minute * _US_PER_MINUTE, zone)
    last = to_datetime((minute + 1) * _US_PER_MINUTE - 1, zone)
    if first.utcoffset() != last.utcoffset() or first.second or first.microsecond:
        # A clock change inside this minute, or an offset with seconds (old local mean
        # times): render each instant by itself.
        parts = ("", "")
    else:
        text = first.isoformat(timespec="milliseconds")
        parts = (text[:17], text[23:])
    if _minutes_cached >= _CACHE_LIMIT:
        _render_cache.clear()
        _minutes_cached = 0
    _render_cache.setdefault(zone, {})[minute] = parts
    _minutes_cached += 1
    return parts


#: `SS.mmm` for every millisecond of a minute, made on the first render: an index is cheaper
#: than formatting.
_SECONDS: list[str] = []


def _seconds_of_minute() -> list[str]:
    _SECONDS[:] = [f"{second:02d}.{ms:03d}" for second in range(60) for ms in range(1000)]
    return _SECONDS


def render(instant: int, zone: ZoneInfo) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmm±HH:MM` in `zone` (cdr.md): ms truncated, numeric offset."""
    minute, within = divmod(instant, _US_PER_MINUTE)
    try:
        head, offset = _render_cache[zone][minute]
    except KeyError:  # once a minute of a zone
        head, offset = _minute_parts(minute, zone)
    if not head:
        return _render_alone(instant, zone)
    return head + (_SECONDS or _seconds_of_minute())[within // 1000] + offset


def _render_alone(instant: int, zone: ZoneInfo) -> str:
    """`render` of an instant in a minute the cache cannot hold: one with a clock change, or
    one whose offset has seconds (a zone's local mean time before it took a standard one, such
    as Stockholm's +01:12:12 before 1879). `±HH:MM:SS` is read by no RFC 3339 parser (ours
    included), so the instant is written at the offset rounded up to a whole minute (+01:13):
    the same instant, its clock under a minute ahead of the zone's, so that a day or an hour of
    the zone still starts on its own date and hour."""
    moment = to_datetime(instant, zone)
    ahead = (moment.utcoffset() or timedelta()) // timedelta(seconds=1)
    if ahead % 60:
        moment = moment.astimezone(timezone(timedelta(minutes=-(-ahead // 60))))
    return moment.isoformat(timespec="milliseconds")


US_PER_HOUR: Final = 60 * _US_PER_MINUTE


class _HourOffsets(dict[int, int | None]):
    """One zone's offset from UTC, in seconds, in each hour (counted from the epoch) asked
    about; None in an hour whose offset changes (or is not whole minutes), whose instants are
    rendered one by one. Looked up with `[]`: a miss works the hour out and keeps it."""

    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self.zone = zone

    def __missing__(self, hour: int) -> int | None:
        start = hour * US_PER_HOUR
        # An offset that changes within the hour differs at the start of some minute or at
        # the end of the hour (the same test `_minute_parts` makes of a minute).
        moments = [start + minute * _US_PER_MINUTE for minute in range(60)] + [
            start + US_PER_HOUR - 1
        ]
        offsets = {to_datetime(moment, self.zone).utcoffset() for moment in moments}
        found = None
        if len(offsets) == 1:
            (delta,) = offsets
            if delta is not None and delta % timedelta(minutes=1) == timedelta(0):
                found = delta // timedelta(seconds=1)
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[hour] = found
        return found


_hour_offsets: dict[ZoneInfo, _HourOffsets] = {}


def hour_offsets(zone: ZoneInfo) -> dict[int, int | None]:
    """`zone`'s offset from UTC in seconds in each hour, by `instant // US_PER_HOUR`: None
    where it changes within the hour or has seconds (see `_HourOffsets`)."""
    try:
        return _hour_offsets[zone]
    except KeyError:
        offsets = _hour_offsets[zone] = _HourOffsets(zone)
        return offsets


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; UnknownZone when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownZone(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Stockholm'"
        ) from exc


def named_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, for an organisation or a command to keep; UnknownZone when
    there is none, or when `name` is a file of the zone database that names no zone: under
    `right/` (its offsets count leap seconds: 12:00Z in Stockholm came out 14:00+02:00), under
    `posix/` (a copy of the zone by another name), `posixrules`, or `localtime` (whatever zone
    the machine it is read on has). Told by the name, not by listing the database (43 ms at
    every command's start)."""
    found = zone(name)
    tree, _, plain = name.partition("/")
    if tree not in ("right", "posix") and name not in ("localtime", "posixrules"):
        return found
    if tree == "right":
        why = "its offsets count leap seconds, which times in UTC do not"
    elif name == "localtime":
        why = "it is this machine's own zone, which another machine need not share"
    elif tree == "posix" and _names_a_zone(plain):
        why = "it is a copy of the zone"
    else:
        raise UnknownZone(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Stockholm'"
        )
    use = plain if _names_a_zone(plain) else "Europe/Stockholm"
    raise UnknownZone(f"time zone {name!r} is not taken: {why}; name the zone, e.g. {use!r}")


def _names_a_zone(name: str) -> bool:
    try:
        zone(name)
    except UnknownZone:
        return False
    return True


#: The longest wait a server's `Retry-After` may ask of samtal (a day); longer asks get this.
MAX_RETRY_AFTER = 86_400.0


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """The seconds a `Retry-After` header asks for (RFC 9110: a whole number of seconds, or an
    HTTP date; `now` in Unix seconds), at most MAX_RETRY_AFTER; None when it is missing or
    neither of those (`inf`, `1e300` and garbage are not numbers of seconds)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(int(text[:12]))  # any number of digits, never an overflow
    else:
        from email.utils import parsedate_to_datetime  # 12 ms to import, rarely needed

        try:
            seconds = parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
