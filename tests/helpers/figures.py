"""The figures of stats.md worked out a second way, for tests: from records as /cdr/historik
renders them (text instants with their offsets), with datetime arithmetic, and intervals found
by walking the period minute by minute. Nothing here comes from `samtal.stats`."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

LOWS = (10, 20, 30, 60, 120)


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def bucket(wait: float) -> int:
    return sum(wait >= low for low in LOWS)


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def group_figures(
    group: list[dict[str, Any]], sl: float, base: str, short: float
) -> dict[str, Any]:
    """One response group's figures (or all groups') over the records offered to it."""
    kept = [
        r
        for r in group
        if r["calleeAnswered"] is not None or seconds(r["start"], r["stop"]) >= short
    ]
    answered = [seconds(r["start"], r["calleeAnswered"]) for r in kept if r["calleeAnswered"]]
    abandoned = [seconds(r["start"], r["stop"]) for r in kept if not r["calleeAnswered"]]
    in_time = sum(w <= sl for w in answered)
    under = len(answered) if base == "answered" else len(kept)
    return {
        "offered": len(kept),
        "answered": len(answered),
        "abandoned": len(abandoned),
        "shortAbandoned": len(group) - len(kept),
        "answerRate": len(answered) / len(kept) if kept else None,
        "serviceLevel": in_time / under if under else None,
        "averageSpeedOfAnswer": mean(answered),
        "averageTimeToAbandon": mean(abandoned),
        "waits": {
            "answered": [Counter(map(bucket, answered))[b] for b in range(6)],
            "abandoned": [Counter(map(bucket, abandoned))[b] for b in range(6)],
        },
    }


def part_figures(
    records: list[dict[str, Any]], sl: float, base: str, short: float
) -> dict[str, Any]:
    offered: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["receivingNo"] is not None:
            offered[r["receivingNo"]].append(r)
    every = [r for r in records if r["receivingNo"] is not None]
    talks = [seconds(r["calleeAnswered"], r["stop"]) for r in records if r["calleeAnswered"]]
    return {
        "groups": {k: group_figures(v, sl, base, short) for k, v in sorted(offered.items())},
        "allGroups": group_figures(every, sl, base, short),
        "calls": {
            "calls": len(records),
            "reachedPerson": len(talks),
            "missed": len(records) - len(talks),
            "averageTalkTime": mean(talks),
        },
    }


def _label(moment: datetime, interval: str) -> datetime:
    """The start of the interval holding a local moment (its offset kept, so that the two
    02:00 of the night clocks go back stay apart)."""
    if interval in ("15min", "30min", "hour"):
        size = {"15min": 15, "30min": 30, "hour": 60}[interval]
        return moment.replace(minute=moment.minute - moment.minute % size, second=0, microsecond=0)
    day = moment.date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    return datetime(day.year, day.month, day.day, tzinfo=moment.tzinfo)


def interval_starts(start: datetime, end: datetime, tz: ZoneInfo, interval: str) -> list[datetime]:
    """Every interval start from the period's first minute to its last, walking UTC minutes."""
    found: list[datetime] = []
    last: tuple[datetime, timedelta | None] | None = None
    moment = start.astimezone(UTC)
    while moment < end:
        local = moment.astimezone(tz)
        label = _label(local, interval)
        if interval in ("day", "week"):  # midnight in the zone, with that day's own offset
            label = datetime(label.year, label.month, label.day, tzinfo=tz)
        key = (label.replace(tzinfo=None), label.utcoffset())
        if key != last:
            found.append(label)
            last = key
        moment += timedelta(minutes=1)
    return found


def render(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def expected(
    records: list[dict[str, Any]],
    *,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    sl: float = 20,
    base: str = "offered",
    short: float = 0,
    days: list[int] | None = None,
    hours: tuple[str, str] | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """Every figure of a period (without `period` and `definitions`), from rendered records."""

    def kept(r: dict[str, Any]) -> bool:
        local = datetime.fromisoformat(r["start"]).astimezone(tz)
        if not start <= local < end:
            return False
        if days is not None and local.isoweekday() not in days:
            return False
        return hours is None or hours[0] <= f"{local:%H:%M}" < hours[1]

    chosen = [r for r in records if kept(r)]
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    heat = [[0] * 24 for _ in range(7)]
    for r in chosen:
        local = datetime.fromisoformat(r["start"]).astimezone(tz)
        day = by_day[local.date().isoformat()]
        day["calls"] += 1
        day["reachedPerson" if r["calleeAnswered"] else "missed"] += 1
        heat[local.weekday()][local.hour] += 1
    answer = {
        **part_figures(chosen, sl, base, short),
        "byDay": {
            d: {"calls": c["calls"], "reachedPerson": c["reachedPerson"], "missed": c["missed"]}
            for d, c in sorted(by_day.items())
        },
        "byHourWeekday": heat,
    }
    if interval is not None:
        starts = interval_starts(start, end, tz, interval)
        parts: list[list[dict[str, Any]]] = [[] for _ in starts]
        firsts = [first.timestamp() for first in starts]
        for r in chosen:
            moment = datetime.fromisoformat(r["start"]).timestamp()
            parts[bisect_right(firsts, moment) - 1].append(r)
        answer["intervals"] = [
            {"start": render(first), **part_figures(part, sl, base, short)}
            for first, part in zip(starts, parts, strict=True)
        ]
    return answer


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)
