"""The traffic simulator: realistic, deterministic, streamed, and true to its own calls."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from itertools import islice, pairwise

import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import Event, decode_lines
from samtal.records import Record
from samtal.simulate import Call, TrafficSettings, event_lines
from samtal.times import parse_instant, render, to_datetime, zone


def run(settings: TrafficSettings) -> tuple[list[bytes], dict[tuple[str, str], Record]]:
    truth: dict[tuple[str, str], Record] = {}

    def seen(call: Call) -> None:
        truth[(call.org, call.id)] = call.truth()

    return list(event_lines(settings, on_call=seen)), truth


@pytest.mark.parametrize("messy", [False, True], ids=["clean", "duplicates-and-disorder"])
def test_aggregation_gives_the_truth_of_every_call(messy: bool) -> None:
    # Three organisations over the spring-forward weekend, with and without a messy delivery.
    settings = TrafficSettings(
        orgs=3,
        days=4,
        seed=7,
        start=date(2017, 3, 24),
        calls_per_day=400,
        duplicates=0.1 * messy,
        disorder=0.1 * messy,
    )
    lines, truth = run(settings)
    events = list(decode_lines(lines))
    assert all(isinstance(e, Event) for e in events)
    records = aggregate(e for e in events if isinstance(e, Event))
    assert len(truth) > 1000
    assert {(r.org, r.call): r for r in records} == truth


def test_the_same_seed_and_start_give_the_same_traffic() -> None:
    settings = TrafficSettings(
        orgs=2,
        days=1,
        seed=3,
        start=date(2017, 1, 4),
        calls_per_day=200,
        duplicates=0.05,
        disorder=0.05,
    )
    first, _ = run(settings)
    assert run(settings)[0] == first
    other, _ = run(
        TrafficSettings(orgs=2, days=1, seed=4, start=date(2017, 1, 4), calls_per_day=200)
    )
    assert other != first


def test_a_day_is_the_same_in_every_period_that_holds_it() -> None:
    # `samtal demo` simulates the seven days before today, into the database it made the day
    # before. Its calls were named c-0000001... from the period's start, so a period one day
    # later named other calls the same: every event a duplicate, yesterday stored empty.
    def calls(start: date, days: int) -> dict[tuple[str, str], Record]:
        settings = TrafficSettings(orgs=2, days=days, seed=1, start=start, calls_per_day=150)
        return run(settings)[1]

    week = calls(date(2026, 11, 27), 7)
    next_week = calls(date(2026, 11, 28), 7)
    day_two = parse_instant("2026-11-28T00:00:00+01:00")
    last_day = parse_instant("2026-12-04T00:00:00+01:00")
    common = {key: r for key, r in week.items() if r.start >= day_two}
    assert common and len(common) < len(week)
    assert {key: r for key, r in next_week.items() if key in common} == common
    assert all(r.start >= last_day for key, r in next_week.items() if key not in common)
    # Periods that do not meet name no call alike.
    assert not week.keys() & calls(date(2026, 12, 4), 1).keys()


def test_duplicates_and_disorder_happen_as_asked() -> None:
    base = TrafficSettings(orgs=1, days=1, seed=5, start=date(2017, 1, 4), calls_per_day=500)
    clean, _ = run(base)
    messy, _ = run(TrafficSettings(**{**base.__dict__, "duplicates": 0.2, "disorder": 0.2}))
    assert 1.15 < len(messy) / len(clean) < 1.25
    ats = [parse_instant(orjson.loads(line)["at"]) for line in messy]
    late = sum(1 for a, b in pairwise(ats) if b is not None and a is not None and b < a)
    assert late > len(clean) * 0.1
    # Nothing is later than a minute: each event is at most 60 s behind the latest seen so far.
    latest = 0
    for at in ats:
        assert at is not None
        latest = max(latest, at)
        assert latest - at <= 60_000_000


def test_clean_traffic_is_in_time_order_with_seq_per_call() -> None:
    lines, _ = run(
        TrafficSettings(orgs=2, days=1, seed=1, start=date(2017, 1, 4), calls_per_day=300)
    )
    events = [orjson.loads(line) for line in lines]
    ats = [parse_instant(e["at"]) for e in events]
    assert ats == sorted(ats)  # type: ignore[type-var]
    seqs: dict[str, list[int]] = {}
    for e in events:
        seqs.setdefault(f"{e['org']}/{e['call']}", []).append(e["seq"])
    assert all(s == list(range(len(s))) for s in seqs.values())


def test_every_kind_of_call_happens() -> None:
    lines, truth = run(
        TrafficSettings(orgs=1, days=2, seed=11, start=date(2017, 1, 9), calls_per_day=2000)
    )
    shapes = Counter()
    for line in lines:
        e = orjson.loads(line)
        shapes[(e["type"], e.get("party"), e.get("kind"))] += 1
    for shape in [
        ("started", "caller", None),
        ("entered", "function", "ATTENDANT"),
        ("entered", "function", "ACD"),
        ("entered", "function", "ACD_LIGHT"),
        ("entered", "function", "HUNT_GROUP"),
        ("entered", "function", "IVR"),
        ("entered", "function", "VOICEMAIL"),
        ("ringing", "user", None),
        ("ringing", "external", None),
        ("answered", "user", None),
        ("answered", "external", None),
        ("answered", "function", None),
        ("transferred", "user", None),
        ("transferred", "caller", None),
        ("hangup", "caller", None),
        ("hangup", "user", None),
        ("hangup", "external", None),
        ("hangup", "function", None),
        ("ended", None, None),
    ]:
        assert shapes[shape] > 0, shape
    records = list(truth.values())
    outcomes = {
        "withheld": sum(r.caller_no is None for r in records),
        "answered in a group": sum(
            r.receiving_no is not None and r.callee_answered is not None for r in records
        ),
        "missed in a group": sum(
            r.receiving_no is not None and r.received is None for r in records
        ),
        "queued, never answered": sum(
            r.received is not None and r.callee_answered is None for r in records
        ),
        "nobody rung": sum(r.callee_no is None for r in records),
        "direct or outgoing": sum(
            r.receiving_no is None and r.callee_no is not None for r in records
        ),
    }
    assert all(n > 0 for n in outcomes.values()), outcomes
    assert {r.receiving_no for r in records} >= {None, "9000", "711", "712", "720", "622", "623"}


def test_a_working_day_profile() -> None:
    # Two weeks of one organisation: working days near the asked volume, weekends quiet,
    # the busy hour in the morning, nights nearly silent.
    settings = TrafficSettings(orgs=1, days=14, seed=2, start=date(2017, 1, 2), calls_per_day=2000)
    tz = zone(settings.tz)
    by_day: Counter[date] = Counter()
    by_hour: Counter[int] = Counter()
    _, truth = run(settings)
    for record in truth.values():
        local = to_datetime(record.start, tz)
        by_day[local.date()] += 1
        by_hour[local.hour] += 1
    working = [n for d, n in by_day.items() if d.weekday() < 5]
    weekend = [n for d, n in by_day.items() if d.weekday() >= 5]
    assert len(working) == 10 and len(weekend) == 4
    assert 1900 < sum(working) / 10 < 2100
    assert max(weekend) < 300
    assert by_hour.most_common(1)[0][0] == 9
    assert sum(by_hour[h] for h in range(0, 6)) < 0.01 * sum(by_hour.values())


@pytest.mark.parametrize(("day", "hours"), [(date(2017, 3, 26), 23), (date(2017, 10, 29), 25)])
def test_daylight_saving_days(day: date, hours: int) -> None:
    settings = TrafficSettings(orgs=1, days=1, seed=9, start=day, calls_per_day=20000)
    tz = zone(settings.tz)
    lines, truth = run(settings)
    for line in lines[:: max(1, len(lines) // 2000)]:
        at = orjson.loads(line)["at"]
        assert render(parse_instant(at), tz) == at  # type: ignore[arg-type]
    starts = sorted(r.start for r in truth.values())
    first_local = to_datetime(starts[0], tz)
    assert first_local.date() == day
    assert to_datetime(starts[-1], tz).date() == day
    # Instants, not wall clocks: Python subtracts datetimes of one zone by their wall clock.
    assert starts[-1] - starts[0] < hours * 3600 * 1_000_000
    assert all(to_datetime(s, tz).date() == day for s in starts)


def test_it_streams() -> None:
    # The first lines come out after only the first few calls were simulated.
    simulated = 0

    def seen(_: Call) -> None:
        nonlocal simulated
        simulated += 1

    stream = event_lines(
        TrafficSettings(orgs=5, days=30, seed=1, start=date(2017, 1, 2), calls_per_day=2000),
        on_call=seen,
    )
    assert len(list(islice(stream, 100))) == 100
    assert simulated < 50


def test_cli_simulate_defaults_to_days_before_today(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "samtal", "simulate", "--days", "2", "--calls-per-day", "300"],
        capture_output=True,
        check=True,
    )
    first = orjson.loads(done.stdout.split(b"\n", 1)[0])
    start = date.fromisoformat(first["at"][:10])
    assert date.today() - timedelta(days=2) <= start <= date.today() - timedelta(days=1)
