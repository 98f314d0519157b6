"""The figures of stats.md (samtal.stats.figures, pure): every figure on hand-computed calls,
bucket edges, null ratios; the definitions of version 3 alone and together against an
independent computation over a simulated week; intervals on the nights the clock changes;
CSV equals JSON; every bad choice a BadFilter naming its parameter."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from samtal.aggregate import aggregate
from samtal.errors import BadFilter
from samtal.events import decode_batch
from samtal.period import parse_period
from samtal.simulate import TrafficSettings, event_lines
from samtal.stats.figures import (
    CSV_FIGURES,
    MAX_INTERVALS,
    Definitions,
    Row,
    counting,
    csv_text,
    figures,
    parse_definitions,
)
from samtal.times import parse_instant
from tests.helpers.figures import expected

STOCKHOLM = ZoneInfo("Europe/Stockholm")
FAR = parse_instant("2030-01-01T00:00:00Z")


def at(text: str) -> int:
    instant = parse_instant(text)
    assert instant is not None
    return instant


def record(start: str, group: str | None, answered: float | None, stop: float) -> dict[str, Any]:
    """A call as /cdr/historik renders it: starting at `start` (Stockholm), a person answering
    and the call stopping so many seconds later."""
    begin = datetime.fromisoformat(start).astimezone(STOCKHOLM)

    def after(seconds: float | None) -> str | None:
        if seconds is None:
            return None
        moment = datetime.fromtimestamp(begin.timestamp() + seconds, STOCKHOLM)
        return moment.isoformat(timespec="milliseconds")

    return {
        "callerNo": "+46701",
        "start": begin.isoformat(timespec="milliseconds"),
        "receivingNo": group,
        "received": None,
        "calleeNo": None if answered is None else "+46702",
        "calleeAnswered": after(answered),
        "stop": after(stop),
    }


def rows(records: list[dict[str, Any]]) -> list[Row]:
    """What the figures read of rendered records, as a customer's copy holds them."""
    out = []
    for r in records:
        start = at(r["start"])
        answered = None if r["calleeAnswered"] is None else at(r["calleeAnswered"]) - start
        out.append(Row(start, r["receivingNo"], answered, at(r["stop"]) - start))
    return out


def period(first: str, last: str) -> tuple[int, int]:
    found = parse_period(first, last, zone=STOCKHOLM, now=FAR)
    return found.start, found.end


# The week of 2018-03-19, whose Sunday has the clock change (02:00 -> 03:00).
WEEK = period("2018-03-19", "2018-03-25")
CALLS = [
    record("2018-03-19T09:00:00+01:00", "622", 6, 66),  # answered at once
    record("2018-03-19T09:30:00+01:00", "622", 20, 121),  # at the threshold: in time
    record("2018-03-19T10:00:00+01:00", "622", None, 10),  # abandoned at 10 s exactly
    record("2018-03-20T14:15:00.500+01:00", "700", None, 200),  # queued, nobody answered
    record("2018-03-25T03:00:00+02:00", None, 3, 33),  # direct, after the clock change
    record("2018-03-26T00:00:00+02:00", "622", 1, 2),  # the period's end: not in it
    record("2018-03-18T23:59:59.999+01:00", "622", 1, 2),  # before it
]
NO_WAITS = {"answered": [0] * 6, "abandoned": [0] * 6}


def test_every_figure_by_hand() -> None:
    found = figures(rows(CALLS), start=WEEK[0], end=WEEK[1], tz=STOCKHOLM)
    heat = [[0] * 24 for _ in range(7)]
    heat[0][9], heat[0][10], heat[1][14], heat[6][3] = 2, 1, 1, 1
    assert found == {
        "period": {"from": "2018-03-19T00:00:00.000+01:00", "to": "2018-03-26T00:00:00.000+02:00"},
        "definitions": {
            "sl": 20,
            "slBase": "offered",
            "shortAbandon": 0,
            "days": None,
            "hours": None,
            "interval": None,
        },
        "groups": {
            "622": {
                "offered": 3,
                "answered": 2,
                "abandoned": 1,
                "shortAbandoned": 0,
                "answerRate": 2 / 3,
                "serviceLevel": 2 / 3,
                "averageSpeedOfAnswer": 13.0,
                "averageTimeToAbandon": 10.0,
                "waits": {"answered": [1, 0, 1, 0, 0, 0], "abandoned": [0, 1, 0, 0, 0, 0]},
            },
            "700": {
                "offered": 1,
                "answered": 0,
                "abandoned": 1,
                "shortAbandoned": 0,
                "answerRate": 0.0,
                "serviceLevel": 0.0,
                "averageSpeedOfAnswer": None,
                "averageTimeToAbandon": 200.0,
                "waits": {"answered": [0] * 6, "abandoned": [0, 0, 0, 0, 0, 1]},
            },
        },
        "allGroups": {
            "offered": 4,
            "answered": 2,
            "abandoned": 2,
            "shortAbandoned": 0,
            "answerRate": 0.5,
            "serviceLevel": 0.5,
            "averageSpeedOfAnswer": 13.0,
            "averageTimeToAbandon": 105.0,
            "waits": {"answered": [1, 0, 1, 0, 0, 0], "abandoned": [0, 1, 0, 0, 0, 1]},
        },
        "calls": {"calls": 5, "reachedPerson": 3, "missed": 2, "averageTalkTime": 63.667},
        "byDay": {
            "2018-03-19": {"calls": 3, "reachedPerson": 2, "missed": 1},
            "2018-03-20": {"calls": 1, "reachedPerson": 0, "missed": 1},
            "2018-03-25": {"calls": 1, "reachedPerson": 1, "missed": 0},
        },
        "byHourWeekday": heat,
    }


def test_a_queue_holding_a_call_is_not_an_answer() -> None:
    """The version 3 correction: `received` set by an ACD queue, nobody answering."""
    queued = record("2018-03-19T09:00:00+01:00", "711", None, 95)
    queued["received"] = "2018-03-19T09:00:01.000+01:00"
    group = figures(rows([queued]), start=WEEK[0], end=WEEK[1], tz=STOCKHOLM)["groups"]["711"]
    assert (group["answered"], group["abandoned"], group["answerRate"]) == (0, 1, 0.0)


def test_a_threshold_and_the_edges_of_buckets() -> None:
    waits = [0, 9.999, 10, 19.999, 20, 29.999, 30, 59.999, 60, 119.999, 120, 3600]
    calls = rows([record("2018-03-19T09:00:00+01:00", "g", w, w + 1) for w in waits])
    found = figures(calls, start=WEEK[0], end=WEEK[1], tz=STOCKHOLM, definitions=Definitions(30))
    group = found["groups"]["g"]
    assert group["waits"]["answered"] == [2, 2, 2, 2, 2, 2]
    assert group["serviceLevel"] == 7 / 12  # the first seven: up to and including 30 s
    assert found["definitions"]["sl"] == 30


def test_ratios_over_zero_calls_are_null() -> None:
    found = figures([], start=WEEK[0], end=WEEK[1], tz=STOCKHOLM)
    assert found["groups"] == {} and found["byDay"] == {}
    assert found["allGroups"] == {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "shortAbandoned": 0,
        "answerRate": None,
        "serviceLevel": None,
        "averageSpeedOfAnswer": None,
        "averageTimeToAbandon": None,
        "waits": NO_WAITS,
    }
    assert found["calls"] == {"calls": 0, "reachedPerson": 0, "missed": 0, "averageTalkTime": None}
    assert found["byHourWeekday"] == [[0] * 24 for _ in range(7)]


def test_short_abandons_leave_the_group_figures_only() -> None:
    calls = [
        record("2018-03-19T09:00:00+01:00", "g", None, 4.999),  # short
        record("2018-03-19T09:01:00+01:00", "g", None, 5),  # not short: at the threshold
        record("2018-03-19T09:02:00+01:00", "h", None, 1),  # h has only a short abandon
        record("2018-03-19T09:03:00+01:00", "g", 2, 3),  # answered within 5 s: never short
    ]
    found = figures(
        rows(calls),
        start=WEEK[0],
        end=WEEK[1],
        tz=STOCKHOLM,
        definitions=Definitions(short_abandon=5),
    )
    g, h = found["groups"]["g"], found["groups"]["h"]
    assert (g["offered"], g["answered"], g["abandoned"], g["shortAbandoned"]) == (2, 1, 1, 1)
    assert g["averageTimeToAbandon"] == 5.0 and g["waits"]["abandoned"] == [1, 0, 0, 0, 0, 0]
    assert (h["offered"], h["shortAbandoned"], h["answerRate"]) == (0, 1, None)
    assert found["allGroups"]["shortAbandoned"] == 2
    assert found["calls"]["calls"] == 4 and found["calls"]["missed"] == 3  # calls: unchanged


def simulated_week() -> list[dict[str, Any]]:
    traffic = TrafficSettings(orgs=1, days=7, seed=5, start=date(2018, 3, 19), calls_per_day=600)
    records = aggregate(decode_batch(list(event_lines(traffic))).events)
    return [r.render(STOCKHOLM) for r in records]


WEEK_RECORDS: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def week() -> list[dict[str, Any]]:
    if not WEEK_RECORDS:
        WEEK_RECORDS.extend(simulated_week())
    return WEEK_RECORDS


def approx(value: Any) -> Any:
    """Floats compared closely (means are rounded to the millisecond; sums of floats differ
    a hair)."""
    if isinstance(value, float):
        return pytest.approx(value, abs=0.0011)
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx(v) for v in value]
    return value


# Each definition alone, then together: (text parameters, the independent computation's own).
CHOICES: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({}, {}),
    ({"sl": "15"}, {"sl": 15}),
    ({"sl": "2.5"}, {"sl": 2.5}),
    ({"sl_base": "answered"}, {"base": "answered"}),
    ({"short_abandon": "8"}, {"short": 8}),
    ({"days": "1-5"}, {"days": [1, 2, 3, 4, 5]}),
    ({"days": "1,3,6-7"}, {"days": [1, 3, 6, 7]}),
    ({"hours": "08:00-17:00"}, {"hours": ("08:00", "17:00")}),
    ({"hours": "12:30-24:00"}, {"hours": ("12:30", "24:00")}),
    ({"interval": "hour"}, {"interval": "hour"}),
    ({"interval": "15min"}, {"interval": "15min"}),
    ({"interval": "day"}, {"interval": "day"}),
    ({"interval": "week"}, {"interval": "week"}),
    (
        {"sl": "30", "sl_base": "answered", "short_abandon": "5", "days": "1-5",
         "hours": "08:00-17:00", "interval": "30min"},
        {"sl": 30, "base": "answered", "short": 5, "days": [1, 2, 3, 4, 5],
         "hours": ("08:00", "17:00"), "interval": "30min"},
    ),
    (
        {"short_abandon": "3", "days": "6-7", "interval": "day"},
        {"short": 3, "days": [6, 7], "interval": "day"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("given", "own"), CHOICES, ids=[str(c[0]) for c in CHOICES])
def test_a_simulated_week_against_an_independent_computation(
    week: list[dict[str, Any]], given: dict[str, str], own: dict[str, Any]
) -> None:
    start, end = WEEK
    found = figures(
        rows(week), start=start, end=end, tz=STOCKHOLM, definitions=parse_definitions(**given)
    )
    first = datetime.fromisoformat(found.pop("period")["from"])
    last = datetime.fromisoformat("2018-03-26T00:00:00+02:00")
    assert found.pop("definitions") == parse_definitions(**given).echo()
    assert found == approx(expected(week, start=first, end=last, tz=STOCKHOLM, **own))
    assert found["allGroups"]["offered"] > 20 and len(found["groups"]) >= 4  # not a vacuous week


@pytest.mark.parametrize("interval", ["15min", "30min", "hour", "day", "week"])
def test_intervals_add_up_to_the_whole(week: list[dict[str, Any]], interval: str) -> None:
    found = figures(
        rows(week), start=WEEK[0], end=WEEK[1], tz=STOCKHOLM,
        definitions=parse_definitions(interval=interval),
    )  # fmt: skip
    parts = found["intervals"]
    for figure in ("offered", "answered", "abandoned", "shortAbandoned"):
        assert sum(p["allGroups"][figure] for p in parts) == found["allGroups"][figure]
    for figure in ("calls", "reachedPerson", "missed"):
        assert sum(p["calls"][figure] for p in parts) == found["calls"][figure]
    for name, group in found["groups"].items():
        assert (
            sum(p["groups"].get(name, {"offered": 0})["offered"] for p in parts)
            == (group["offered"])
        )
    starts = [datetime.fromisoformat(p["start"]) for p in parts]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert [list(p) for p in parts[:1]] == [["start", "groups", "allGroups", "calls"]]


def night(day: str, interval: str, first: str, last: str) -> list[str]:
    """The interval starts of a night, with a call at every quarter hour of it."""
    start, end = period(first, last)
    quarters = range(start, end, 15 * 60 * 1_000_000)
    calls = [Row(q, "g", None, 1_000_000) for q in quarters]
    found = figures(
        calls, start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval=interval)
    )  # type: ignore[arg-type]
    assert sum(p["calls"]["calls"] for p in found["intervals"]) == len(calls)
    return [p["start"][11:] for p in found["intervals"]]


def test_hours_on_the_night_the_clock_goes_back() -> None:
    """2018-10-28: 02:00 +02:00 and 02:00 +01:00 start two intervals (stats.md)."""
    starts = night("2018-10-28", "hour", "2018-10-28 01:00", "2018-10-28 03:59")
    assert starts == [
        "01:00:00.000+02:00",
        "02:00:00.000+02:00",
        "02:00:00.000+01:00",
        "03:00:00.000+01:00",
    ]


def test_half_hours_on_the_night_the_clock_goes_forward() -> None:
    """2018-03-25: 02:00 to 03:00 does not exist; its boundaries are not made up."""
    starts = night("2018-03-25", "30min", "2018-03-25 01:00", "2018-03-25 03:59")
    assert starts == [
        "01:00:00.000+01:00",
        "01:30:00.000+01:00",
        "03:00:00.000+02:00",
        "03:30:00.000+02:00",
    ]


def test_days_of_23_and_25_hours_and_weeks_from_monday() -> None:
    start, end = period("2018-10-27", "2018-10-29")
    days = figures([], start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval="day"))
    assert [p["start"] for p in days["intervals"]] == [
        "2018-10-27T00:00:00.000+02:00",
        "2018-10-28T00:00:00.000+02:00",
        "2018-10-29T00:00:00.000+01:00",
    ]
    start, end = period("2018-03-21 12:00", "2018-03-27")
    weeks = figures(
        [], start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval="week")
    )
    assert [p["start"] for p in weeks["intervals"]] == [
        "2018-03-19T00:00:00.000+01:00",  # the Monday at or before `from`
        "2018-03-26T00:00:00.000+02:00",
    ]
    empty = weeks["intervals"][0]
    assert empty["allGroups"]["offered"] == 0 and empty["calls"]["calls"] == 0


def test_more_than_ten_thousand_intervals_is_refused() -> None:
    start, end = period("2018-01-01", "2018-12-31")
    with pytest.raises(BadFilter, match="`interval` 15min makes more than 10,000"):
        figures([], start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval="15min"))
    hourly = figures(
        [], start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval="hour")
    )
    assert len(hourly["intervals"]) == 8760 <= MAX_INTERVALS

    # Two thousand years of hours are refused before any is worked out (a fuzzer's request
    # once looped for minutes here).
    with pytest.raises(BadFilter, match="`interval` hour makes more than 10,000"):
        figures(
            [], start=period("0004-01-01", "2017-01-01")[0], end=end, tz=STOCKHOLM,
            definitions=Definitions(interval="hour"),
        )  # fmt: skip


def test_intervals_in_local_mean_time_start_within_their_hour() -> None:
    """Stockholm's clock ran 1:12:12 ahead of UTC before 1879: its hours, as figures cuts them
    on whole minutes of UTC, start at :00:12 of that clock, the first the one the period's
    midnight falls in. Written, as every time is,
    at the offset rounded up to a whole minute (+01:13), they start at :01:00."""
    start, end = period("1850-01-01", "1850-01-01")
    hourly = figures(
        [], start=start, end=end, tz=STOCKHOLM, definitions=Definitions(interval="hour")
    )
    starts = [part["start"] for part in hourly["intervals"]]
    assert len(starts) == 25
    assert starts[0] == "1849-12-31T23:01:00.000+01:13"
    assert starts[-1] == "1850-01-01T23:01:00.000+01:13"


def test_csv_equals_json(week: list[dict[str, Any]]) -> None:
    for interval in (None, "day"):
        found = figures(
            rows(week), start=WEEK[0], end=WEEK[1], tz=STOCKHOLM,
            definitions=Definitions(short_abandon=4, interval=interval),  # type: ignore[arg-type]
        )  # fmt: skip
        table = list(csv.reader(io.StringIO(csv_text(found), newline="")))
        assert table[0] == ["interval", "group", *CSV_FIGURES]
        parts = found.get("intervals") or [{"start": None, **found}]
        want = [
            [part["start"] or "", name, *("" if g[f] is None else str(g[f]) for f in CSV_FIGURES)]
            for part in parts
            for name, g in [*sorted(part["groups"].items()), ("*", part["allGroups"])]
        ]
        assert table[1:] == want
        assert table[-1][1] == "*"
    assert csv_text(found).count("\r\n") == len(table)


BAD = [
    ({"sl": "0"}, "`sl` '0' must be more than 0"),
    ({"sl": "3601"}, "at most 3600"),
    ({"sl": "-1"}, "`sl` '-1' is not a number of seconds"),
    ({"sl": "1e3"}, "`sl` '1e3' is not a number"),
    ({"sl_base": "all"}, "`slBase` 'all' is unknown"),
    ({"short_abandon": "x"}, "`shortAbandon` 'x' is not a number"),
    ({"days": "0-5"}, "`days` '0-5' is not a list of ISO weekdays"),
    ({"days": "5-1"}, "the range 5-1 runs backwards"),
    ({"days": "1,,2"}, "`days` '1,,2'"),
    ({"hours": "8-17"}, "`hours` '8-17' is not a time range"),
    ({"hours": "17:00-08:00"}, "the end must be after the start"),
    ({"hours": "08:00-24:30"}, "is not a real time of day"),
    ({"hours": "08:60-09:00"}, "is not a real time of day"),
    ({"interval": "minute"}, "`interval` 'minute' is unknown"),
]


@pytest.mark.parametrize(("given", "says"), BAD, ids=[str(b[0]) for b in BAD])
def test_every_bad_choice_names_its_parameter(given: dict[str, str], says: str) -> None:
    with pytest.raises(BadFilter) as raised:
        parse_definitions(**given)
    assert says in str(raised.value)


def test_the_definitions_echo_as_the_spec_shows() -> None:
    chosen = parse_definitions(days="1-5", hours="08:00-17:00")
    assert chosen.echo() == {
        "sl": 20,
        "slBase": "offered",
        "shortAbandon": 0,
        "days": [1, 2, 3, 4, 5],
        "hours": "08:00-17:00",
        "interval": None,
    }
    assert parse_definitions(sl="2.5").echo()["sl"] == 2.5


@pytest.mark.parametrize(
    ("tz", "choices", "minutes"),
    [
        ("Europe/Stockholm", {}, 60),
        ("Europe/Stockholm", {"interval": "30min"}, 30),
        ("Europe/Stockholm", {"interval": "15min"}, 15),
        ("Europe/Stockholm", {"hours": "08:30-17:00"}, 30),
        ("Europe/Stockholm", {"hours": "08:10-17:00", "interval": "day"}, 1),
        ("Asia/Kolkata", {}, 30),
        ("Asia/Kathmandu", {"interval": "hour"}, 15),
        ("Australia/Lord_Howe", {}, 30),  # +10:30 in winter, +11 in summer
    ],
)
def test_the_granule_every_local_boundary_falls_on(
    tz: str, choices: dict[str, str], minutes: int
) -> None:
    start, end = period("2018-01-01", "2018-12-31")
    assert counting(parse_definitions(**choices), ZoneInfo(tz), start, end).granule == (
        minutes * 60 * 1_000_000
    )


def test_a_zone_a_quarter_hour_off_against_an_independent_computation() -> None:
    kathmandu = ZoneInfo("Asia/Kathmandu")
    traffic = TrafficSettings(
        orgs=1, days=3, seed=2, start=date(2018, 3, 19), calls_per_day=500, tz="Asia/Kathmandu"
    )
    records = aggregate(decode_batch(list(event_lines(traffic))).events)
    rendered = [r.render(kathmandu) for r in records]
    chosen = parse_period("2018-03-19", "2018-03-21", zone=kathmandu, now=FAR)
    first, last = chosen.start, chosen.end
    found = figures(
        rows(rendered), start=first, end=last, tz=kathmandu,
        definitions=parse_definitions(interval="hour", hours="08:15-16:45"),
    )  # fmt: skip
    del found["period"], found["definitions"]
    begin = datetime(2018, 3, 19, tzinfo=kathmandu)
    after = datetime(2018, 3, 22, tzinfo=kathmandu)
    want = expected(rendered, start=begin, end=after, tz=kathmandu, interval="hour",
                    hours=("08:15", "16:45"))  # fmt: skip
    assert found == approx(want)
    assert found["intervals"][9]["start"] == "2018-03-19T09:00:00.000+05:45"
