"""`samtal stats` (spec/stats.md): every figure on hand-computed calls (bucket edges, a day with
a clock change, null ratios over zero calls); a week of simulated traffic against a computation
written here independently; and the command on a copy `samtal sync` made."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from samtal.aggregate import aggregate
from samtal.cli import main
from samtal.events import decode_batch
from samtal.period import parse_period
from samtal.records import Record
from samtal.simulate import TrafficSettings, event_lines
from samtal.stats import figures
from samtal.times import parse_instant
from tests.helpers.servers import Live

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def at(text: str) -> int:
    instant = parse_instant(text)
    assert instant is not None
    return instant


def call(start: str, group: str | None, received: float | None, answered: float | None,
         stop: float) -> Record:  # fmt: skip
    """A call starting at `start`; the others in seconds after it."""
    begin = at(start)

    def after(seconds: float | None) -> int | None:
        return None if seconds is None else begin + round(seconds * 1_000_000)

    end = after(stop)
    assert end is not None
    return Record("o", "c", "+46701", begin, group, after(received), "x", after(answered), end)


# The week of 2018-03-19, whose Sunday has the clock change (02:00 -> 03:00).
WEEK = parse_period("2018-03-19", "2018-03-25", zone=STOCKHOLM, now=at("2019-01-01T00:00:00Z"))
CALLS = [
    call("2018-03-19T09:00:00+01:00", "622", 5, 6, 66),  # answered at once
    call("2018-03-19T09:30:00+01:00", "622", 20, 21, 121),  # at the threshold: in time
    call("2018-03-19T10:00:00+01:00", "622", None, None, 10),  # abandoned at 10 s exactly
    call("2018-03-20T14:15:00.500+01:00", "700", 120, None, 200),  # 120 s: the last bucket
    call("2018-03-25T03:00:00+02:00", None, None, 3, 33),  # direct, after the clock change
    call("2018-03-26T00:00:00+02:00", "622", 1, 1, 2),  # the period's end: not in it
    call("2018-03-18T23:59:59.999+01:00", "622", 1, 1, 2),  # before it
]


def test_every_figure_by_hand() -> None:
    found = figures(CALLS, start=WEEK.start, end=WEEK.end, tz=STOCKHOLM)
    heat = [[0] * 24 for _ in range(7)]
    heat[0][9], heat[0][10], heat[1][14], heat[6][3] = 2, 1, 1, 1
    assert found == {
        "period": {"from": "2018-03-19T00:00:00.000+01:00", "to": "2018-03-26T00:00:00.000+02:00"},
        "groups": {
            "622": {
                "offered": 3,
                "answered": 2,
                "abandoned": 1,
                "answerRate": 2 / 3,
                "serviceLevel": 2 / 3,
                "averageSpeedOfAnswer": 12.5,
                "averageTimeToAbandon": 10.0,
                "waits": {"answered": [1, 0, 1, 0, 0, 0], "abandoned": [0, 1, 0, 0, 0, 0]},
            },
            "700": {
                "offered": 1,
                "answered": 1,
                "abandoned": 0,
                "answerRate": 1.0,
                "serviceLevel": 0.0,
                "averageSpeedOfAnswer": 120.0,
                "averageTimeToAbandon": None,
                "waits": {"answered": [0, 0, 0, 0, 0, 1], "abandoned": [0] * 6},
            },
        },
        "allGroups": {
            "offered": 4,
            "answered": 3,
            "abandoned": 1,
            "answerRate": 0.75,
            "serviceLevel": 0.5,
            "averageSpeedOfAnswer": 48.333,
            "averageTimeToAbandon": 10.0,
            "waits": {"answered": [1, 0, 1, 0, 0, 1], "abandoned": [0, 1, 0, 0, 0, 0]},
        },
        "calls": {"calls": 5, "reachedPerson": 3, "missed": 2, "averageTalkTime": 63.333},
        "byDay": {
            "2018-03-19": {"calls": 3, "reachedPerson": 2, "missed": 1},
            "2018-03-20": {"calls": 1, "reachedPerson": 0, "missed": 1},
            "2018-03-25": {"calls": 1, "reachedPerson": 1, "missed": 0},
        },
        "byHourWeekday": heat,
    }


def test_a_threshold_and_the_edges_of_buckets() -> None:
    waits = [0, 9.999, 10, 19.999, 20, 29.999, 30, 59.999, 60, 119.999, 120, 3600]
    calls = [call("2018-03-19T09:00:00+01:00", "g", w, w, w + 1) for w in waits]
    found = figures(calls, start=WEEK.start, end=WEEK.end, tz=STOCKHOLM, threshold=30)
    group = found["groups"]["g"]
    assert group["waits"]["answered"] == [2, 2, 2, 2, 2, 2]
    assert group["serviceLevel"] == 7 / 12  # the first seven: up to and including 30 s


def test_ratios_over_zero_calls_are_null() -> None:
    found = figures([], start=WEEK.start, end=WEEK.end, tz=STOCKHOLM)
    assert found["groups"] == {} and found["byDay"] == {}
    assert found["allGroups"] == {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "answerRate": None,
        "serviceLevel": None,
        "averageSpeedOfAnswer": None,
        "averageTimeToAbandon": None,
        "waits": {"answered": [0] * 6, "abandoned": [0] * 6},
    }
    assert found["calls"] == {"calls": 0, "reachedPerson": 0, "missed": 0, "averageTalkTime": None}
    assert found["byHourWeekday"] == [[0] * 24 for _ in range(7)]


def independent(records: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The figures again, another way: from the rendered records, with datetime arithmetic."""

    def seconds(a: str, b: str) -> float:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    def bucket(wait: float) -> int:
        return sum(wait >= low for low in (10, 20, 30, 60, 120))

    offered: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["receivingNo"] is not None:
            offered[r["receivingNo"]].append(r)
    offered["*"] = [r for r in records if r["receivingNo"] is not None]
    out: dict[str, Any] = {}
    for name, group in offered.items():
        answered = [seconds(r["start"], r["received"]) for r in group if r["received"]]
        abandoned = [seconds(r["start"], r["stop"]) for r in group if not r["received"]]
        out[name] = {
            "offered": len(group),
            "answered": len(answered),
            "abandoned": len(abandoned),
            "answerRate": len(answered) / len(group) if group else None,
            "serviceLevel": sum(w <= threshold for w in answered) / len(group) if group else None,
            "averageSpeedOfAnswer": round(sum(answered) / len(answered), 3) if answered else None,
            "averageTimeToAbandon": round(sum(abandoned) / len(abandoned), 3)
            if abandoned
            else None,
            "waits": {
                "answered": [Counter(map(bucket, answered))[b] for b in range(6)],
                "abandoned": [Counter(map(bucket, abandoned))[b] for b in range(6)],
            },
        }
    talks = [seconds(r["calleeAnswered"], r["stop"]) for r in records if r["calleeAnswered"]]
    days: dict[str, Counter[str]] = defaultdict(Counter)
    heat = [[0] * 24 for _ in range(7)]
    for r in records:
        local = datetime.fromisoformat(r["start"])  # rendered in the zone already
        days[local.date().isoformat()]["calls"] += 1
        days[local.date().isoformat()]["reachedPerson" if r["calleeAnswered"] else "missed"] += 1
        heat[local.weekday()][local.hour] += 1
    return {
        "groups": {k: v for k, v in sorted(out.items()) if k != "*"},
        "allGroups": out["*"],
        "calls": {
            "calls": len(records),
            "reachedPerson": len(talks),
            "missed": len(records) - len(talks),
            "averageTalkTime": round(sum(talks) / len(talks), 3) if talks else None,
        },
        "byDay": {
            d: {"calls": c["calls"], "reachedPerson": c["reachedPerson"], "missed": c["missed"]}
            for d, c in sorted(days.items())
        },
        "byHourWeekday": heat,
    }


def approx(value: Any) -> Any:
    """Floats compared to the millisecond (means are rounded; sums of floats differ a hair)."""
    if isinstance(value, float):
        return pytest.approx(value, abs=0.0011)
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx(v) for v in value]
    return value


def test_a_simulated_week_against_an_independent_computation() -> None:
    traffic = TrafficSettings(orgs=1, days=7, seed=5, start=date(2018, 3, 19), calls_per_day=600)
    records = aggregate(decode_batch(list(event_lines(traffic))).events)
    period = parse_period("2018-03-19", "2018-03-25", zone=STOCKHOLM, now=WEEK.end + 10**12)
    found = figures(records, start=period.start, end=period.end, tz=STOCKHOLM, threshold=15)
    rendered = [r.render(STOCKHOLM) for r in records if period.start <= r.start < period.end]
    expected = independent(rendered, threshold=15)
    del found["period"]
    assert found == approx(expected)
    assert found["allGroups"]["offered"] > 1000 and len(found["groups"]) >= 4


def test_the_command_on_a_synced_copy(live: Live, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    runner = CliRunner()
    synced = runner.invoke(
        main, ["sync", "--from", live.url, "--into", target], env={"SAMTAL_TOKEN": live.read}
    )
    assert synced.exit_code == 0, synced.output
    period = ["--from", "2017-01-04", "--to", "2017-01-05"]
    as_json = runner.invoke(main, ["stats", "--db", target, *period, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    found = json.loads(as_json.output)
    served = [r for r in live.detailed() if r["start"] < "2017-01-06"]
    expected = independent(served, threshold=20)
    del found["period"]
    assert found == approx(expected)
    page = tmp_path / "report.html"
    made = runner.invoke(main, ["stats", "--db", target, *period, "--out", str(page)])
    assert made.exit_code == 0, made.output
    text = page.read_text()
    assert text.count("<svg") == 4
    assert "2017-01-04 to 2017-01-06 (Europe/Stockholm)" in text
    assert "<script" not in text and "<link" not in text
    assert re.findall(r'(?:src|href)="(?!#)', text) == []  # nothing fetched from anywhere
    assert "<td>All groups</td>" in text
