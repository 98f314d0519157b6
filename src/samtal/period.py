"""`from` and `to` of GET /cdr/historik (spec/api.md): each names a whole unit of time.

A value is a date, a minute, a second or a fraction of a second (1 to 6 digits), the last three
optionally with an offset (`Z` or `±HH:MM`); without one it is local time in the organisation's
zone, resolved as zoneinfo does with fold=0. The period runs from the first instant of `from`'s
unit up to, not including, the first instant of the unit after `to`'s. Pure: `now` is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from samtal.errors import BadPeriod, BeforeRetention, shorten
from samtal.times import MAX_INSTANT, US_PER_SECOND, from_datetime, render

_VALUE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[ T](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,6}))?)?"
    r"(?P<offset>Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
#: The forms of `_VALUE` as a JSON Schema (ECMA-262) pattern, for the API's documentation.
PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
FORMS = (
    "YYYY-MM-DD, YYYY-MM-DD HH:MM, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS.ffffff "
    "(a space, sent as %20 or +, or T between date and time), the last three optionally "
    "with an offset such as Z or %2B01:00"
)


@dataclass(frozen=True)
class Period:
    """A half-open span of instants [start, end), in microseconds since the epoch."""

    start: int
    end: int


#: The end of a period whose `to` is the calendar's last unit: later than any instant a value
#: names (9999-12-31T23:59:59.999999-23:59 is 10000-01-01T23:59Z).
OPEN_END = MAX_INSTANT + 3 * 86_400 * US_PER_SECOND


@dataclass(frozen=True)
class _Unit:
    start: int  # the unit's first instant
    next: int  # the first instant of the following unit (OPEN_END past the calendar's end)
    skipped: str = ""  # a local time the clocks skipped: what it was read as, said in a clause


def _unit(name: str, text: str, zone: ZoneInfo) -> _Unit:
    match = _VALUE.fullmatch(text)
    if match is None:
        raise BadPeriod(f"`{name}` ({shorten(text)}) is not in a form the API accepts: use {FORMS}")
    parts = match.groupdict()
    try:
        day = date.fromisoformat(parts["date"])
    except ValueError:
        raise BadPeriod(f"`{name}` ({shorten(text)}) is not a real date") from None
    if parts["hour"] is None:
        first = datetime.combine(day, time(0), zone)
        return _Unit(from_datetime(first), _following(first, timedelta(days=1), zone))
    hour, minute = int(parts["hour"]), int(parts["minute"])
    second = int(parts["second"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise BadPeriod(
            f"`{name}` ({shorten(text)}) is not a real time of day: hours run 00-23, minutes and "
            "seconds 00-59"
        )
    fraction = parts["fraction"]
    micros = int((fraction + "00000")[:6]) if fraction else 0
    if fraction:
        step = timedelta(microseconds=10 ** (6 - len(fraction)))
    elif parts["second"] is not None:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    offset = parts["offset"]
    if offset is None:
        tz: ZoneInfo | timezone = zone
    elif offset == "Z":
        tz = UTC
    else:
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise BadPeriod(
                f"`{name}` ({shorten(text)}) has an impossible offset {shorten(offset)}"
            )
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(delta if offset[0] == "+" else -delta)
    wall = datetime.combine(day, time(hour, minute, second, micros), tz)
    start = from_datetime(wall)
    return _Unit(start, _following(wall, step, tz), _skipped(name, wall, start, tz))


def _skipped(name: str, wall: datetime, start: int, tz: ZoneInfo | timezone) -> str:
    """For a local time the clocks skipped (02:30 on the day they go forward), the clause that
    says so and what it was read as: an empty period's message otherwise has `to` (03:00)
    before `from` (02:30)."""
    if not isinstance(tz, ZoneInfo):
        return ""
    read = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start)).astimezone(tz)
    if read.replace(tzinfo=None) == wall.replace(tzinfo=None):
        return ""
    return (
        f"; `{name}` is a time the clocks skipped in {tz.key}, read with the offset before the "
        f"change, as {render(start, tz)}"
    )


def _following(first: datetime, step: timedelta, tz: ZoneInfo | timezone) -> int:
    """The first instant of the unit after the one starting at `first`: wall-clock arithmetic,
    resolved in the zone by itself. Past 9999-12-31 there is no next unit: the end is open."""
    try:
        return from_datetime((first.replace(tzinfo=None) + step).replace(tzinfo=tz))
    except OverflowError:
        return OPEN_END


def parse_period(
    from_text: str | None,
    to_text: str | None,
    *,
    zone: ZoneInfo,
    now: int,
    retention_days: int = 0,
) -> Period:
    """The period that `from` and `to` name for an organisation in `zone`, checked.

    `to` defaults to now. BadPeriod for a missing `from`, a malformed value or an empty period;
    BeforeRetention when `from` starts before the retention window (0 days: no window).
    """
    if from_text is None or from_text == "":
        raise BadPeriod("`from` is required, e.g. from=2017-01-04 or from=2017-01-04%2008:00")
    first = _unit("from", from_text, zone)
    start = first.start
    if to_text is None:
        end = now
        if end <= start:
            raise BadPeriod(
                f"`from` ({from_text}) is in the future and `to` defaults to now "
                f"({render(now, zone)}): the period is empty"
            )
    else:
        last = _unit("to", to_text, zone)
        end = last.next
        if end <= start:
            raise BadPeriod(
                f"`to` ({to_text}) is before `from` ({from_text}): the period is empty"
                f"{first.skipped}{last.skipped}"
            )
    if retention_days:
        earliest = earliest_instant(zone=zone, now=now, retention_days=retention_days)
        if start < earliest:
            raise BeforeRetention(
                f"`from` ({from_text}) is before the earliest instant that can be asked for, "
                f"{render(earliest, zone)}: data is kept {retention_days} days"
            )
    return Period(start, end)


def parse_selection(from_text: str | None, to_text: str | None, *, zone: ZoneInfo) -> Period:
    """A period open at either end, as an erasure selects calls by (privacy.md): `from` and
    `to` in the forms of `parse_period`, either left out, and no retention limit."""
    first = _unit("from", from_text, zone) if from_text else _Unit(-OPEN_END, -OPEN_END)
    last = _unit("to", to_text, zone) if to_text else _Unit(OPEN_END, OPEN_END)
    if last.next <= first.start:
        raise BadPeriod(
            f"`to` ({to_text}) is before `from` ({from_text}): the period is empty"
            f"{first.skipped}{last.skipped}"
        )
    return Period(first.start, last.next)


def earliest_instant(*, zone: ZoneInfo, now: int, retention_days: int) -> int:
    """Local midnight, in `zone`, at the start of the day `retention_days` before today."""
    today = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now)).astimezone(zone)
    first_day = today.date() - timedelta(days=retention_days)
    return from_datetime(datetime.combine(first_day, time(0), zone))
