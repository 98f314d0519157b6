"""Instants: the parser in C and the cached one in Python agree with a plain one; the cached
local date and rendering agree with working them out for each instant."""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samtal.times import (
    MAX_INSTANT,
    MIN_INSTANT,
    PARSED_IN_C,
    US_PER_SECOND,
    local_day,
    parse_instant,
    parse_instant_python,
    render,
    to_datetime,
)

# Whole-hour, half-hour and quarter-hour offsets, clock changes, and zones whose offset had
# seconds before 1900 (Amsterdam +00:19:32, Dublin -00:25:21, Monrovia -00:44:30 until 1972).
ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Stockholm",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "America/St_Johns",
        "Europe/Amsterdam",
        "Europe/Dublin",
        "Africa/Monrovia",
        "Pacific/Kiritimati",
    )
]
_EPOCH_ORDINAL = datetime(1970, 1, 1, tzinfo=UTC).toordinal()


def _day_of(instant: int, zone: ZoneInfo) -> int:
    return to_datetime(instant, zone).date().toordinal() - _EPOCH_ORDINAL


# Around UTC midnights from 1888 to 2052 (local midnights of offsets with seconds among them),
# or anywhere.
_INSTANTS = st.one_of(
    st.builds(
        lambda day, second: (day * 86_400 + second) * US_PER_SECOND,
        st.integers(-30_000, 30_000),
        st.integers(-3 * 3600, 3 * 3600),
    ),
    st.integers(MIN_INSTANT + 86_400 * US_PER_SECOND, MAX_INSTANT - 86_400 * US_PER_SECOND),
)


@given(_INSTANTS, st.sampled_from(ZONES), st.integers(0, 60 * US_PER_SECOND - 1))
def test_the_local_day_is_the_instants_own(instant: int, zone: ZoneInfo, within: int) -> None:
    # Two instants of one minute: the second is answered from what the first left behind.
    first = instant - instant % (60 * US_PER_SECOND)
    assert local_day(first, zone) == _day_of(first, zone)
    assert local_day(first + within, zone) == _day_of(first + within, zone)
    assert local_day(instant, zone) == _day_of(instant, zone)


@given(_INSTANTS, st.sampled_from(ZONES), st.integers(0, 60 * US_PER_SECOND - 1))
def test_the_cached_rendering_is_the_instants_own(minute: int, zone: ZoneInfo, within: int) -> None:
    """cdr.md's form, `YYYY-MM-DDTHH:MM:SS.mmm±HH:MM`, is what the standard library writes for
    the instant in its zone, whatever the cache holds: twice, the second from the cache. An
    offset with seconds is written rounded up to a whole minute (`_at_whole_minutes`)."""
    instant = minute + within
    moment = to_datetime(instant, zone)
    expected = _at_whole_minutes(moment).isoformat(timespec="milliseconds")
    assert render(instant, zone) == expected
    assert render(instant, zone) == expected
    assert parse_instant(expected) == instant - instant % 1000


def _at_whole_minutes(moment: datetime) -> datetime:
    ahead = moment.utcoffset()
    assert ahead is not None
    seconds = int(ahead.total_seconds())
    minutes = math.ceil(seconds / 60)
    if minutes * 60 == seconds:
        return moment
    return moment.astimezone(timezone(timedelta(minutes=minutes)))


def test_an_offset_with_seconds_is_written_rounded_up_to_a_whole_minute() -> None:
    """Stockholm's local mean time ran 1:12:12 ahead of UTC, Monrovia's 0:43:08 behind (in
    1850). `±HH:MM:SS` is no RFC 3339 offset: the parser of events refused what the simulator
    wrote for such a day, and so would a customer's. The instant is kept; its clock runs under
    a minute ahead of the zone's, so the zone's midnight is still on its own date."""
    noon = int(datetime(1850, 1, 1, 12, tzinfo=UTC).timestamp()) * US_PER_SECOND
    assert render(noon, ZoneInfo("Europe/Stockholm")) == "1850-01-01T13:13:00.000+01:13"
    assert render(noon, ZoneInfo("Africa/Monrovia")) == "1850-01-01T11:17:00.000-00:43"
    midnight = int(datetime(1850, 1, 1, 22, 47, 48, tzinfo=UTC).timestamp()) * US_PER_SECOND
    assert render(midnight, ZoneInfo("Europe/Stockholm")) == "1850-01-02T00:00:48.000+01:13"
    for zone in ZONES:
        assert parse_instant(render(noon + 1234, zone)) == noon + 1000


def test_a_date_that_changes_within_a_minute() -> None:
    # Amsterdam kept +00:19:32 in 1900: 2 June began at 23:40:28 UTC on 1 June, in the middle
    # of a UTC minute. Both sides of that minute keep their own date.
    zone = ZoneInfo("Europe/Amsterdam")
    minute = int(datetime(1900, 6, 1, 23, 40, tzinfo=UTC).timestamp()) * US_PER_SECOND
    before, after = minute + 27 * US_PER_SECOND, minute + 29 * US_PER_SECOND
    assert local_day(before, zone) == _day_of(before, zone)
    assert local_day(after, zone) == _day_of(after, zone) == _day_of(before, zone) + 1


# events.md's `at`, read plainly: one pattern, then the standard library's calendar.
_AT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def _plain_instant(text: str) -> int | None:
    found = _AT.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, oh, om = found.groups()
    if int(oh or 0) > 23 or int(om or 0) > 59:
        return None
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset = timedelta(hours=int(oh or 0), minutes=int(om or 0)) * (-1 if sign == "-" else 1)
    micro = int(((fraction or "") + "000000")[:6])
    since = moment - datetime(1970, 1, 1) - offset
    return since // timedelta(microseconds=1) + micro


def _at_texts(strict: bool) -> st.SearchStrategy[str]:
    """`at` texts: `strict`, each part in its form with values at and past its bounds (hour 24,
    second 60, offset minutes 60); otherwise each part drawn from good and bad forms."""
    digits = st.text("0123456789", min_size=1, max_size=4)
    date = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
    # Milliseconds (the form most switches send, read by a path of its own) or any fraction.
    fraction = st.one_of(
        st.just(""),
        st.text("0123456789", min_size=3, max_size=3).map(".".__add__),
        st.text("0123456789", min_size=1, max_size=10).map(".".__add__),
    )
    zulu = st.sampled_from(["Z", "z"])
    signs = st.sampled_from("+-")
    hours = st.sampled_from([0, 9, 23, 24])
    sixty = st.sampled_from([0, 7, 59, 60])
    offset = st.builds("{}{:02d}:{:02d}".format, signs, hours, sixty)
    if not strict:
        date = st.one_of(date, st.builds("{}-{}-{}".format, digits, digits, digits))
        fraction = st.one_of(fraction, st.just("."))
        zulu = st.sampled_from(["Z", "z", "", "+01", "+0100", " Z"])
    return st.builds(
        "{}{}{:02d}:{:02d}:{:02d}{}{}".format,
        date,
        st.sampled_from(["T", "t"] if strict else ["T", "t", " ", "_"]),
        hours,
        sixty,
        sixty,
        fraction,
        st.one_of(zulu, offset),
    )


@settings(max_examples=1000)  # cheap examples; each bound is a small share of them
@given(st.one_of(_at_texts(strict=True), _at_texts(strict=False), st.text(max_size=40)))
def test_the_parsers_agree_with_a_plain_one(text: str) -> None:
    plain = _plain_instant(text)
    assert parse_instant(text) == plain  # in C where it was built
    # The cached one twice: the second answer comes from what the first left in the caches.
    assert parse_instant_python(text) == plain
    assert parse_instant_python(text) == plain


@pytest.mark.parametrize(
    "text",
    [
        "２０１７-01-09T00:00:00Z",  # fullwidth digits, which `[0-9]` does not take
        "2017-01-09T00:00:00\u00e9",
        "2017-01-09T00:00:00.Z",
        "2017-01-09T00:00:00.1234567890Z",
        "2017-01-09T00:00:00+01:00 ",
        "0000-01-01T00:00:00Z",
        "2016-02-29T00:00:00Z",
        "2017-02-29T00:00:00Z",
        "9999-12-31T23:59:59.999999999-23:59",
    ],
)
def test_the_parsers_agree_at_the_edges(text: str) -> None:
    assert parse_instant(text) == parse_instant_python(text) == _plain_instant(text)


def test_ci_parses_instants_in_c() -> None:
    """The build makes the C parser wherever a compiler is at hand; CI has one, so there it
    must be the one in use (or the tests above would hold only the Python one)."""
    if not PARSED_IN_C and not os.environ.get("CI"):
        pytest.skip("samtal._speedups was not built here (no C compiler?): Python parses")
    assert PARSED_IN_C
    assert parse_instant is not parse_instant_python
