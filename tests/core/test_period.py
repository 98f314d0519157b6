"""`from` and `to` (api.md): every accepted form, each unit, zones and daylight saving."""

from __future__ import annotations

from datetime import datetime

import pytest

from samtal.errors import BadPeriod, BeforeRetention
from samtal.period import earliest_instant, parse_period
from samtal.times import from_datetime, zone

STOCKHOLM = zone("Europe/Stockholm")
NOW = from_datetime(datetime.fromisoformat("2017-03-15T12:00:00+01:00"))


def at(text: str) -> int:
    return from_datetime(datetime.fromisoformat(text))


def span(from_text: str | None, to_text: str | None = None, **kw: object) -> tuple[int, int]:
    found = parse_period(from_text, to_text, zone=STOCKHOLM, now=NOW, **kw)  # type: ignore[arg-type]
    return found.start, found.end


@pytest.mark.parametrize(
    ("from_text", "to_text", "start", "end"),
    [
        ("2017-01-04", "2017-01-04", "2017-01-04T00:00:00+01:00", "2017-01-05T00:00:00+01:00"),
        (
            "2017-01-04 08:00",
            "2017-01-04 17:00",
            "2017-01-04T08:00:00+01:00",
            "2017-01-04T17:01:00+01:00",
        ),
        (
            "2017-01-04T08:00",
            "2017-01-04T17:00:15",
            "2017-01-04T08:00:00+01:00",
            "2017-01-04T17:00:16+01:00",
        ),
        (
            "2017-01-04 08:00:15.250",
            "2017-01-04 08:00:15.250",
            "2017-01-04T08:00:15.250+01:00",
            "2017-01-04T08:00:15.251+01:00",
        ),
        (
            "2017-01-04 08:00:15.5",
            "2017-01-04 08:00:15.5",
            "2017-01-04T08:00:15.500+01:00",
            "2017-01-04T08:00:15.600+01:00",
        ),
        (
            "2017-01-04 08:00:15.123456",
            "2017-01-04 08:00:15.123456",
            "2017-01-04T08:00:15.123456+01:00",
            "2017-01-04T08:00:15.123457+01:00",
        ),
        (
            "2017-01-04T07:00:00Z",
            "2017-01-04T08:00:00+01:00",
            "2017-01-04T08:00:00+01:00",
            "2017-01-04T08:00:01+01:00",
        ),
        (
            "2017-01-04T08:00-05:00",
            "2017-01-04",
            "2017-01-04T14:00:00+01:00",
            "2017-01-05T00:00:00+01:00",
        ),
        ("2017-07-04", "2017-07-04", "2017-07-04T00:00:00+02:00", "2017-07-05T00:00:00+02:00"),
    ],
)
def test_each_form_names_a_whole_unit(from_text: str, to_text: str, start: str, end: str) -> None:
    assert span(from_text, to_text) == (at(start), at(end))


def test_daylight_saving_days_are_23_and_25_hours() -> None:
    spring = span("2017-03-26", "2017-03-26")
    autumn = span("2017-10-29", "2017-10-29")
    assert spring[1] - spring[0] == 23 * 3600 * 10**6
    assert autumn[1] - autumn[0] == 25 * 3600 * 10**6


def test_ambiguous_and_skipped_local_times() -> None:
    # 02:30 happens twice on 2017-10-29: the first (summer time) is meant.
    assert span("2017-10-29 02:30", "2017-10-29 02:30")[0] == at("2017-10-29T02:30:00+02:00")
    # 02:30 never happens on 2017-03-26: it is read with the offset before the change.
    assert span("2017-03-26 02:30", "2017-03-26 03:30")[0] == at("2017-03-26T02:30:00+01:00")


def test_an_empty_period_says_which_value_the_clocks_skipped_and_how_it_was_read() -> None:
    # 02:30 is read as 03:30 summer time, after `to`'s 03:00: the message said only that 03:00
    # is before 02:30.
    with pytest.raises(BadPeriod) as caught:
        span("2017-03-26 02:30", "2017-03-26 03:00")
    assert str(caught.value) == (
        "`to` (2017-03-26 03:00) is before `from` (2017-03-26 02:30): the period is empty; "
        "`from` is a time the clocks skipped in Europe/Stockholm, read with the offset before "
        "the change, as 2017-03-26T03:30:00.000+02:00"
    )
    with pytest.raises(BadPeriod) as caught:
        span("2017-03-26 03:30", "2017-03-26 02:10:00.5")
    assert str(caught.value).endswith(
        "; `to` is a time the clocks skipped in Europe/Stockholm, read with the offset before "
        "the change, as 2017-03-26T03:10:00.500+02:00"
    )
    with pytest.raises(BadPeriod) as caught:  # an offset given: nothing was skipped
        span("2017-03-26 04:00", "2017-03-26 02:30+01:00")
    assert "skipped" not in str(caught.value)


def test_to_defaults_to_now() -> None:
    assert span("2017-03-15") == (at("2017-03-15T00:00:00+01:00"), NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "2017-01-04 24:00",
        "2017-01-04 08:60",
        "2017-01-04 08:00:60",
        "2017-02-30",
        "2017-01-04Z",
        "2017-01-04+01:00",
        "2017-01-04 08",
        "04/01/2017",
        "2017-1-4",
        "2017-01-04 08:00:15.1234567",
        "2017-01-04t08:00",
        "2017-01-04 08:00 01:00",
        "",
        "2017-01-04 08:00+25:00",
        "yesterday",
    ],
)
def test_rejected_forms(bad: str) -> None:
    with pytest.raises(BadPeriod):
        span(bad, "2017-03-01")
    if bad:
        with pytest.raises(BadPeriod):
            span("2017-01-01", bad)


def test_from_is_required_and_the_period_not_empty() -> None:
    with pytest.raises(BadPeriod, match="`from` is required"):
        span(None, "2017-01-04")
    with pytest.raises(BadPeriod, match=r"`to` \(2017-01-03\) is before `from` \(2017-01-04\)"):
        span("2017-01-04", "2017-01-03")
    with pytest.raises(BadPeriod, match="in the future"):
        span("2017-03-16")


def test_retention_window() -> None:
    earliest = earliest_instant(zone=STOCKHOLM, now=NOW, retention_days=92)
    assert earliest == at("2016-12-13T00:00:00+01:00")
    assert span("2016-12-13", retention_days=92)[0] == earliest
    with pytest.raises(BeforeRetention, match=r"2016-12-13T00:00:00\.000\+01:00"):
        span("2016-12-12 23:59", retention_days=92)
