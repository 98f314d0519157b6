"""The figures of spec/stats.md, from records alone: pure, no I/O.

A record is `samtal.records.Record` (instants in microseconds); the period selects records
by `start` as /cdr/historik does; hours, weekdays and dates are local in the given zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from samtal.records import Record
from samtal.times import US_PER_SECOND, render, to_datetime

#: Lower bounds (seconds) of the wait buckets; each bucket includes its lower bound.
BUCKETS: Final = (0, 10, 20, 30, 60, 120)
BUCKET_NAMES: Final = ("0-10 s", "10-20 s", "20-30 s", "30-60 s", "60-120 s", "120 s and more")
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class _Group:
    """Running sums of the calls offered to one response group (or to all)."""

    offered: int = 0
    answered: int = 0
    in_time: int = 0
    answer_wait: int = 0  # microseconds, summed over answered
    abandon_wait: int = 0  # microseconds, summed over abandoned
    waits_answered: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    waits_abandoned: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    def add(self, call: Record, threshold: int) -> None:
        self.offered += 1
        if call.received is not None:
            wait = call.received - call.start
            self.answered += 1
            self.answer_wait += wait
            self.in_time += wait <= threshold
            self.waits_answered[_bucket(wait)] += 1
        else:
            wait = call.stop - call.start
            self.abandon_wait += wait
            self.waits_abandoned[_bucket(wait)] += 1

    def figures(self) -> dict[str, Any]:
        abandoned = self.offered - self.answered
        return {
            "offered": self.offered,
            "answered": self.answered,
            "abandoned": abandoned,
            "answerRate": _ratio(self.answered, self.offered),
            "serviceLevel": _ratio(self.in_time, self.offered),
            "averageSpeedOfAnswer": _seconds(self.answer_wait, self.answered),
            "averageTimeToAbandon": _seconds(self.abandon_wait, abandoned),
            "waits": {"answered": self.waits_answered, "abandoned": self.waits_abandoned},
        }


def figures(
    calls: Iterable[Record], *, start: int, end: int, tz: ZoneInfo, threshold: float = 20.0
) -> dict[str, Any]:
    """Every figure of spec/stats.md over the calls whose start is in [start, end), as the JSON
    object `samtal stats --format json` prints."""
    limit = round(threshold * US_PER_SECOND)
    groups: dict[str, _Group] = {}
    every = _Group()
    count = reached = talk = 0
    by_day: dict[str, dict[str, int]] = {}
    heat = [[0] * 24 for _ in WEEKDAYS]
    for call in calls:
        if not start <= call.start < end:
            continue
        count += 1
        local = to_datetime(call.start, tz)
        day = by_day.setdefault(
            local.date().isoformat(), {"calls": 0, "reachedPerson": 0, "missed": 0}
        )
        day["calls"] += 1
        heat[local.weekday()][local.hour] += 1
        if call.callee_answered is not None:
            reached += 1
            talk += call.stop - call.callee_answered
            day["reachedPerson"] += 1
        else:
            day["missed"] += 1
        if call.receiving_no is not None:
            groups.setdefault(call.receiving_no, _Group()).add(call, limit)
            every.add(call, limit)
    return {
        "period": {"from": render(start, tz), "to": render(end, tz)},
        "groups": {name: groups[name].figures() for name in sorted(groups)},
        "allGroups": every.figures(),
        "calls": {
            "calls": count,
            "reachedPerson": reached,
            "missed": count - reached,
            "averageTalkTime": _seconds(talk, reached),
        },
        "byDay": {name: by_day[name] for name in sorted(by_day)},
        "byHourWeekday": heat,
    }


def _bucket(wait: int) -> int:
    """The bucket of a wait in microseconds: the last whose lower bound it reaches."""
    found = 0
    for index, low in enumerate(BUCKETS):
        if wait >= low * US_PER_SECOND:
            found = index
    return found


def _ratio(part: int, whole: int) -> float | None:
    """A ratio; null over zero calls (spec/stats.md)."""
    return None if whole == 0 else part / whole


def _seconds(total: int, count: int) -> float | None:
    """A mean duration in seconds, to the millisecond; null over zero calls."""
    return None if count == 0 else round(total / count / US_PER_SECOND, 3)
