"""Instants in zones: the cached local date agrees with working it out for each instant."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from samtal.times import MAX_INSTANT, MIN_INSTANT, US_PER_SECOND, local_day, to_datetime

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


def test_a_date_that_changes_within_a_minute() -> None:
    # Amsterdam kept +00:19:32 in 1900: 2 June began at 23:40:28 UTC on 1 June, in the middle
    # of a UTC minute. Both sides of that minute keep their own date.
    zone = ZoneInfo("Europe/Amsterdam")
    minute = int(datetime(1900, 6, 1, 23, 40, tzinfo=UTC).timestamp()) * US_PER_SECOND
    before, after = minute + 27 * US_PER_SECOND, minute + 29 * US_PER_SECOND
    assert local_day(before, zone) == _day_of(before, zone)
    assert local_day(after, zone) == _day_of(after, zone) == _day_of(before, zone) + 1
