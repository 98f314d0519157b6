"""The figures of stats.md, from what each record says of time alone: pure, no I/O.

One module serves both `GET /cdr/stats` (over the columns the server keeps beside each record)
and `samtal stats` (over a customer's copy): a record is a `Row` of instants and durations in
microseconds, and the choices the figures depend on (stats.md, "Over the API, with stated
definitions") are `Definitions`, echoed in every answer.
"""

from __future__ import annotations

import csv
import io
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from samtal.errors import BadFilter, shorten
from samtal.times import MAX_INSTANT, MIN_INSTANT, US_PER_SECOND, from_datetime, render

#: Lower bounds (seconds) of the wait buckets; each bucket includes its lower bound.
BUCKETS: Final = (0, 10, 20, 30, 60, 120)
BUCKET_NAMES: Final = ("0-10 s", "10-20 s", "20-30 s", "30-60 s", "60-120 s", "120 s and more")
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
Interval = Literal["15min", "30min", "hour", "day", "week"]
INTERVALS: Final[tuple[Interval, ...]] = ("15min", "30min", "hour", "day", "week")
#: More intervals than this in one answer is a 400 (stats.md).
MAX_INTERVALS: Final = 10_000
#: The columns of the CSV form, after `interval` and `group`.
CSV_FIGURES: Final = (
    "offered",
    "answered",
    "abandoned",
    "shortAbandoned",
    "answerRate",
    "serviceLevel",
    "averageSpeedOfAnswer",
    "averageTimeToAbandon",
)
_US_PER_MINUTE = 60 * US_PER_SECOND


class Row(NamedTuple):
    """What the figures read of one record: its start, its response group, how long after
    the start a person answered (None: nobody did), and how long until it stopped; the
    durations in microseconds."""

    start: int
    receiving_no: str | None
    answered_after: int | None
    duration: int


@dataclass(frozen=True)
class Definitions:
    """The choices of stats.md's table, as a request or the command line makes them."""

    #: The service level threshold, seconds.
    sl: float = 20.0
    sl_base: Literal["offered", "answered"] = "offered"
    #: Seconds: an offered record nobody answered that lasted less is a short abandon.
    short_abandon: float = 0.0
    #: ISO weekdays of the local start to keep (None: all).
    days: tuple[int, ...] | None = None
    #: Local times of day of the start to keep, minutes [from, to) (None: all).
    hours: tuple[int, int] | None = None
    interval: Interval | None = None

    def echo(self) -> dict[str, Any]:
        """`definitions` of the answer (stats.md): every choice with its value in force."""
        return {
            "sl": _number(self.sl),
            "slBase": self.sl_base,
            "shortAbandon": _number(self.short_abandon),
            "days": None if self.days is None else list(self.days),
            "hours": None if self.hours is None else _clock(*self.hours),
            "interval": self.interval,
        }


def parse_definitions(
    *,
    sl: str | None = None,
    sl_base: str | None = None,
    short_abandon: str | None = None,
    days: str | None = None,
    hours: str | None = None,
    interval: str | None = None,
) -> Definitions:
    """The definitions a request gives (its text values); BadFilter naming the parameter."""
    chosen = Definitions()
    threshold = chosen.sl if sl is None else _seconds("sl", sl)
    if not 0 < threshold <= 3600:
        raise BadFilter(f"`sl` {shorten(sl)} must be more than 0 and at most 3600 seconds")
    if sl_base not in (None, "offered", "answered"):
        raise BadFilter(f"`slBase` {shorten(sl_base)} is unknown: use offered or answered")
    short = (
        chosen.short_abandon if short_abandon is None else _seconds("shortAbandon", short_abandon)
    )
    if interval is not None and interval not in INTERVALS:
        raise BadFilter(
            f"`interval` {shorten(interval)} is unknown: use one of {', '.join(INTERVALS)}"
        )
    return Definitions(
        threshold,
        "answered" if sl_base == "answered" else "offered",
        short,
        None if days is None else _days(days),
        None if hours is None else _hours(hours),
        interval,
    )


_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_DAYS = re.compile(r"[1-7](-[1-7])?(,[1-7](-[1-7])?)*")
_HOURS = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")


def _seconds(name: str, text: str) -> float:
    if not _SECONDS.fullmatch(text):
        raise BadFilter(
            f"`{name}` {shorten(text)} is not a number of seconds: give a decimal number of at "
            "least 0, e.g. 20 or 2.5"
        )
    return float(text)


def _days(text: str) -> tuple[int, ...]:
    if not _DAYS.fullmatch(text):
        raise BadFilter(
            f"`days` {shorten(text)} is not a list of ISO weekdays: use numbers 1 (Monday) to 7 "
            "and ranges, e.g. 1-5 or 1,3,6-7"
        )
    kept: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high:
            raise BadFilter(f"`days` {shorten(text)}: the range {part} runs backwards")
        kept.update(range(low, high + 1))
    return tuple(sorted(kept))


def _hours(text: str) -> tuple[int, int]:
    found = _HOURS.fullmatch(text)
    if found is None:
        raise BadFilter(
            f"`hours` {shorten(text)} is not a time range: use HH:MM-HH:MM, e.g. 08:00-17:00"
        )
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise BadFilter(f"`hours` {shorten(text)} is not a real time of day (00:00 to 24:00)")
    low, high = h1 * 60 + m1, h2 * 60 + m2
    if high <= low:
        raise BadFilter(f"`hours` {shorten(text)}: the end must be after the start")
    return low, high


class Tally(NamedTuple):
    """The sums of stats.md over the records of one response group (None: no group) that
    start in one granule (`at`, its first instant): everything the figures need of them.
    Durations in microseconds; `short`, `in_time` and the waits as `Counting` defines them."""

    at: int
    receiving_no: str | None
    calls: int
    #: Sum of stop - calleeAnswered over the records a person answered.
    talk: int
    #: The group's sums, in the order of `SUMS` (the second: the records a person answered).
    sums: tuple[int, ...]


#: What a tally's `sums` hold, in order: the offered (records less the short abandons), the
#: answered, the short abandons (nobody answered, shorter than the threshold), those answered
#: within the service level threshold, the sum of calleeAnswered - start over the answered and
#: of stop - start over the abandoned (not short), then the answered and the abandoned (not
#: short) per wait bucket.
SUMS: Final = (
    "offered", "answered", "short", "in_time", "answer_wait", "abandon_wait",
    *(f"answered_{bucket}" for bucket in BUCKETS), *(f"abandoned_{bucket}" for bucket in BUCKETS),
)  # fmt: skip
_SUMS = len(SUMS)
_ABANDONED = 6 + len(BUCKETS)


@dataclass(frozen=True)
class Counting:
    """How records are summed into tallies for a request: granules of `granule`
    microseconds (every boundary the figures use, of intervals, days, hours and the `hours`
    choice, is one), and the thresholds in microseconds."""

    granule: int
    threshold: int
    short: int


#: Most offsets the zone is sampled at to find the granule (a day apart, or further).
_SAMPLES = 4000
_US_PER_DAY = 24 * 60 * _US_PER_MINUTE


def counting(definitions: Definitions, tz: ZoneInfo, start: int, end: int) -> Counting:
    """The counting for these definitions over [start, end) in `tz`: the longest granule of
    an hour, half, quarter or a minute that every local boundary falls on (the zone's offsets
    over the period, sampled daily; the interval; the `hours` choice)."""
    longest = {"15min": 15, "30min": 30}.get(definitions.interval or "", 60)
    step = max(_US_PER_DAY, (end - start) // _SAMPLES)
    minutes = {_offset_minutes(tz, moment) for moment in range(start, end + step, step)}
    minutes.update(definitions.hours or ())
    granule = next(
        m for m in (60, 30, 15, 1) if longest % m == 0 and all(n % m == 0 for n in minutes)
    )
    return Counting(
        granule * _US_PER_MINUTE,
        round(definitions.sl * US_PER_SECOND),
        round(definitions.short_abandon * US_PER_SECOND),
    )


def _offset_minutes(tz: ZoneInfo, instant: int) -> int:
    offset = _to_local(instant, tz).utcoffset() or timedelta(0)
    whole, rest = divmod(offset, timedelta(minutes=1))
    return int(whole) if not rest else 1  # seconds in an offset (before 1900): minutes only


def tally(rows: Iterable[Row], counting: Counting, *, start: int, end: int) -> list[Tally]:
    """The tallies of the rows whose start is in [start, end), in Python (what a store does
    in SQL, for a customer's copy)."""
    granule, threshold, short = counting.granule, counting.threshold, counting.short
    found_of: dict[tuple[int, str | None], list[int]] = {}
    for row in rows:
        if not start <= row.start < end:
            continue
        key = (row.start - row.start % granule, row.receiving_no)
        found = found_of.get(key)
        if found is None:
            # records, talk, then the sums of SUMS
            found = found_of[key] = [0] * (2 + _SUMS)
        found[0] += 1
        wait = row.answered_after
        if wait is not None:
            found[2] += 1  # offered
            found[3] += 1  # answered
            found[1] += row.duration - wait
            found[5] += wait <= threshold
            found[6] += wait
            found[8 + _bucket(wait)] += 1
        elif row.duration < short:
            found[4] += 1
        else:
            found[2] += 1
            found[7] += row.duration
            found[2 + _ABANDONED + _bucket(row.duration)] += 1
    return [
        Tally(at, group, found[0], found[1], tuple(found[2:]))
        for (at, group), found in found_of.items()
    ]


def _total(vectors: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The sum of equally long vectors of sums, column by column."""
    return vectors[0] if len(vectors) == 1 else tuple(map(sum, zip(*vectors, strict=True)))


def _group_figures(sums: tuple[int, ...], base: str) -> dict[str, Any]:
    offered, answered, short, in_time, answer_wait, abandon_wait = sums[:6]
    abandoned = offered - answered
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "shortAbandoned": short,
        "answerRate": answered / offered if offered else None,
        "serviceLevel": _ratio(in_time, answered if base == "answered" else offered),
        "averageSpeedOfAnswer": _mean(answer_wait, answered),
        "averageTimeToAbandon": _mean(abandon_wait, abandoned),
        "waits": {"answered": list(sums[6:_ABANDONED]), "abandoned": list(sums[_ABANDONED:])},
    }


@dataclass
class _Part:
    """The tallies of a set of records (one interval, or the whole period): the sums of
    each group's, added up when the figures are asked, and of every record."""

    groups: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    calls: int = 0
    reached: int = 0
    talk: int = 0

    def add(self, t: Tally) -> None:
        self.calls += t.calls
        self.reached += t.sums[1]
        self.talk += t.talk
        if t.receiving_no is not None:
            found = self.groups.get(t.receiving_no)
            if found is None:
                self.groups[t.receiving_no] = [t.sums]
            else:
                found.append(t.sums)

    def figures(self, base: str) -> dict[str, Any]:
        groups = {name: _total(self.groups[name]) for name in sorted(self.groups)}
        every = _total(list(groups.values())) if groups else (0,) * _SUMS
        return {
            "groups": {name: _group_figures(sums, base) for name, sums in groups.items()},
            "allGroups": _group_figures(every, base),
            "calls": {
                "calls": self.calls,
                "reachedPerson": self.reached,
                "missed": self.calls - self.reached,
                "averageTalkTime": _mean(self.talk, self.reached),
            },
        }


def figures(
    rows: Iterable[Row],
    *,
    start: int,
    end: int,
    tz: ZoneInfo,
    definitions: Definitions = Definitions(),
) -> dict[str, Any]:
    """Every figure of stats.md over the rows whose start is in [start, end) and that the
    definitions' days and hours keep, as the JSON object of /cdr/stats and `samtal stats`."""
    chosen = counting(definitions, tz, start, end)
    found = tally(rows, chosen, start=start, end=end)
    return summarize(found, start=start, end=end, tz=tz, definitions=definitions)


def summarize(
    tallies: Iterable[Tally],
    *,
    start: int,
    end: int,
    tz: ZoneInfo,
    definitions: Definitions = Definitions(),
) -> dict[str, Any]:
    """`figures` from the tallies of [start, end) that `counting(definitions, tz, start, end)`
    defines (made by `tally` or by a store)."""
    by_day: dict[int, list[int]] = {}
    heat = [[0] * 24 for _ in WEEKDAYS]
    granule = counting(definitions, tz, start, end).granule
    starts = _interval_starts(start, end, tz, definitions.interval, granule)
    parts = [_Part() for _ in starts]
    whole = _Part()
    local = _LocalTime(tz)
    days, hours = definitions.days, definitions.hours
    for t in tallies:
        day, weekday, minute = local.of(t.at)
        if days is not None and weekday + 1 not in days:
            continue
        if hours is not None and not hours[0] <= minute < hours[1]:
            continue
        counts = by_day.get(day)
        if counts is None:
            counts = by_day[day] = [0, 0]
        counts[0] += t.calls
        counts[1] += t.sums[1]
        heat[weekday][minute // 60] += t.calls
        whole.add(t)
        if starts:
            parts[bisect_right(starts, t.at) - 1].add(t)
    base = definitions.sl_base
    answer: dict[str, Any] = {
        "period": {"from": _render(start, tz), "to": _render(end, tz)},
        "definitions": definitions.echo(),
        **whole.figures(base),
        "byDay": {
            _date(day): {"calls": c, "reachedPerson": r, "missed": c - r}
            for day, (c, r) in sorted(by_day.items())
        },
        "byHourWeekday": heat,
    }
    if definitions.interval is not None:
        answer["intervals"] = [
            {"start": _render(first, tz), **part.figures(base)}
            for first, part in zip(starts, parts, strict=True)
        ]
    return answer


def csv_rows(answer: dict[str, Any]) -> list[list[object]]:
    """The CSV form of an answer (stats.md): a row per interval (one without intervals) and
    group, groups in code-point order and `*` (all groups) last."""
    parts = answer.get("intervals") or [{"start": None, **answer}]
    out: list[list[object]] = []
    for part in parts:
        for name, group in [*part["groups"].items(), ("*", part["allGroups"])]:
            out.append([part["start"], name, *(group[f] for f in CSV_FIGURES)])
    return out


def csv_text(answer: dict[str, Any]) -> str:
    """The CSV form of an answer as text: a header, then `csv_rows`, with the rules of
    changes.md (CRLF line ends, null as an empty field)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["interval", "group", *CSV_FIGURES])
    for row in csv_rows(answer):
        writer.writerow(["" if value is None else value for value in row])
    return out.getvalue()


def _interval_starts(
    start: int, end: int, tz: ZoneInfo, interval: Interval | None, granule: int
) -> list[int]:
    """The first instant of every interval that overlaps [start, end), in order, the first at
    or before `start`, each on a granule of `counting`; BadFilter past MAX_INTERVALS."""
    if interval is None:
        return []
    length = {"15min": 15, "30min": 30, "hour": 60, "day": 1440, "week": 10080}[interval]
    # Clock changes move a boundary by hours, never by an interval's worth in ten thousand:
    # a period with far too many intervals is refused before any is worked out.
    if (end - start) // (length * _US_PER_MINUTE) > MAX_INTERVALS + 2:
        _too_many(interval)
    if interval in ("day", "week"):
        first = _to_local(start, tz).date()
        if interval == "week":
            first -= timedelta(days=first.weekday())
        step = timedelta(days=1 if interval == "day" else 7)
        starts = []
        moment = from_datetime(datetime.combine(first, time(0), tz))
        while moment < end:
            starts.append(moment)
            if len(starts) > MAX_INTERVALS:
                break
            first += step
            moment = from_datetime(datetime.combine(first, time(0), tz))
    else:
        minutes = length
        # Every local boundary is on a granule of UTC (`counting`): a boundary is a granule
        # where the local clock shows a multiple of the interval. On the night clocks go back,
        # 02:00 comes twice and starts two intervals; when they go forward, a skipped boundary
        # does not exist.
        moment = start - start % granule
        while not _on_the(minutes, _to_local(moment, tz)):
            moment -= granule
        starts = []
        while moment < end:
            if _on_the(minutes, _to_local(moment, tz)):
                starts.append(moment)
                if len(starts) > MAX_INTERVALS:
                    break
            moment += granule
    if len(starts) > MAX_INTERVALS:
        _too_many(interval)
    return starts


def _too_many(interval: str) -> None:
    raise BadFilter(
        f"`interval` {interval} makes more than {MAX_INTERVALS:,} intervals of this period: "
        "ask for a longer interval or a shorter period"
    )


def _on_the(minutes: int, moment: datetime) -> bool:
    """Whether the local clock, at `moment` (a whole UTC minute), shows a whole multiple of
    `minutes`. Where a zone's offset had seconds (local mean time, before 1900) the clock
    shows them too, and the interval starts those seconds past its minute."""
    return moment.minute % minutes == 0


class _LocalTime:
    """Local date, weekday and minute of the day of instants in a zone, worked out once a
    minute (a period's records share few minutes)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._minutes: dict[int, tuple[int, int, int]] = {}

    def of(self, instant: int) -> tuple[int, int, int]:
        minute = instant // _US_PER_MINUTE
        found = self._minutes.get(minute)
        if found is None:
            moment = _to_local(minute * _US_PER_MINUTE, self._tz)
            found = self._minutes[minute] = (
                moment.date().toordinal(),
                moment.weekday(),
                moment.hour * 60 + moment.minute,
            )
        return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_local(instant: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(microseconds=_shown(instant))).astimezone(tz)


def _render(instant: int, tz: ZoneInfo) -> str:
    return render(_shown(instant), tz)


def _shown(instant: int) -> int:
    """A period may reach past the instants every zone can show (from=0001-01-01 in a zone
    east of UTC, to=9999-12-31): its edges are worked out and shown at the last that can."""
    return min(max(instant, MIN_INSTANT), MAX_INSTANT - 1)


def _date(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _bucket(wait: int) -> int:
    """The bucket of a wait in microseconds: the last whose lower bound it reaches."""
    found = 0
    for index, low in enumerate(BUCKETS):
        if wait >= low * US_PER_SECOND:
            found = index
    return found


def _ratio(part: int, whole: int) -> float | None:
    """A ratio; null over zero calls (stats.md)."""
    return None if whole == 0 else part / whole


def _mean(total: int, count: int) -> float | None:
    """A mean duration in seconds, to the millisecond; null over zero calls."""
    return None if count == 0 else round(total / count / US_PER_SECOND, 3)


def _number(value: float) -> float | int:
    return int(value) if value == int(value) else value


def _clock(low: int, high: int) -> str:
    return f"{low // 60:02d}:{low % 60:02d}-{high // 60:02d}:{high % 60:02d}"
