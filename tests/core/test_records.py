"""A record's JSON and CSV row, made in C where it was built, are the definition's to the byte:
the seven fields rendered (`Record.render`) and written compactly (`dumps`) or as a row
(`csv_row`)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samtal.records import JSON_IN_C, Record, csv_row, dumps
from samtal.times import MAX_INSTANT, MIN_INSTANT, US_PER_HOUR, US_PER_SECOND, hour_offsets

# Clock changes on the hour (Stockholm, New York), by half an hour (Lord Howe), in the middle of
# a UTC hour (Kathmandu in 1985), and offsets with seconds before 1900 (Amsterdam, Dublin).
ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Stockholm",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "Europe/Amsterdam",
        "Europe/Dublin",
    )
]


def _at(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=UTC).timestamp()) * US_PER_SECOND  # type: ignore[misc]


# Around the clock changes of 2017 in those zones, in 1900 (Amsterdam's seconds), at the ends
# of the range, or anywhere; to the microsecond.
_AROUND = [
    _at(2017, 3, 26, 1),
    _at(2017, 10, 29, 1),
    _at(2017, 3, 12, 7),
    _at(2017, 4, 1, 15),
    _at(2017, 9, 30, 15, 30),
    _at(1900, 6, 1, 23, 40),
    _at(1985, 12, 31, 18, 30),
    MIN_INSTANT,
    MAX_INSTANT - 1,
]
_INSTANTS = st.one_of(
    st.builds(
        lambda around, us: min(max(around + us, MIN_INSTANT), MAX_INSTANT - 1),
        st.sampled_from(_AROUND),
        st.integers(-7200 * US_PER_SECOND, 7200 * US_PER_SECOND),
    ),
    st.integers(MIN_INSTANT, MAX_INSTANT - 1),
)
# Numbers as switches send them, and text JSON escapes (quotes, controls, non-ASCII).
_NUMBERS = st.one_of(
    st.none(),
    st.sampled_from(["+4672000001", "622", "*99#", "a.b_c-d", "1,2"]),
    st.sampled_from(['say "hi"', "back\\slash", "tab\there", "caf\u00e9", "del\x7f", "\u2028"]),
    st.text(max_size=8),
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    start = draw(_INSTANTS)
    later = st.integers(start, min(start + 4 * 3600 * US_PER_SECOND, MAX_INSTANT - 1))
    return Record(
        org="acme",
        call="c",
        caller_no=draw(_NUMBERS),
        start=start,
        receiving_no=draw(_NUMBERS),
        received=draw(st.none() | later),
        callee_no=draw(_NUMBERS),
        callee_answered=draw(st.none() | later),
        stop=draw(later),
    )


@given(records(), st.sampled_from(ZONES))
def test_a_records_json_and_csv_are_its_rendering(record: Record, zone: ZoneInfo) -> None:
    assert record.json(zone) == dumps(record.render(zone))
    assert record.csv(zone) == csv_row(record.render(zone).values())


_DEFINITIONS = {
    "record_json": (lambda fields: dumps(fields), '"\\'),
    "record_csv": (lambda fields: csv_row(fields.values()), '"\\,'),
}


@pytest.mark.parametrize("writer", list(_DEFINITIONS))
@given(record=records(), zone=st.sampled_from(ZONES))
def test_the_c_writers_write_the_same_or_decline(
    writer: str, record: Record, zone: ZoneInfo
) -> None:
    """Straight to the extension: each writes its definition's bytes, and declines (None) only
    a number its form would escape (JSON: a quote or a backslash; CSV: those or a comma; both:
    a control or non-ASCII character) or a time in an hour whose offset changes or has
    seconds."""
    write = getattr(pytest.importorskip("samtal._speedups"), writer)
    definition, refused = _DEFINITIONS[writer]
    hours = hour_offsets(zone)
    times = (record.start, record.received, record.callee_answered, record.stop)
    offsets = [None if at is None else hours[at // US_PER_HOUR] for at in times]
    made = write(
        record.caller_no,
        record.receiving_no,
        record.callee_no,
        record.start,
        offsets[0],
        record.received,
        offsets[1],
        record.callee_answered,
        offsets[2],
        record.stop,
        offsets[3],
    )
    numbers = (record.caller_no, record.receiving_no, record.callee_no)
    plain = all(
        n is None or (re.fullmatch(r"[ -~]*", n) and not set(refused) & set(n)) for n in numbers
    )
    in_one_offset = all(
        o is not None for o, at in zip(offsets, times, strict=True) if at is not None
    )
    assert (made is not None) == bool(plain and in_one_offset)
    if made is not None:
        assert made == definition(record.render(zone))


def test_the_times_c_does_not_write_are_rendered_all_the_same() -> None:
    # Amsterdam kept +00:19:32 in 1900, an offset with seconds, written rounded up to a whole
    # minute (+00:20: the same instant, RFC 3339's form); Kathmandu went from +05:30 to
    # +05:45 at 18:30 UTC on 31 December 1985, in the middle of a UTC hour.
    amsterdam = _at(1900, 6, 1, 23, 59, 59)
    record = Record("acme", "c", "1", amsterdam, None, None, "2", None, amsterdam)
    assert b'"start":"1900-06-02T00:19:59.000+00:20"' in record.json(ZoneInfo("Europe/Amsterdam"))
    change = _at(1985, 12, 31, 18, 30)
    before, after = change - US_PER_SECOND, change + US_PER_SECOND
    record = Record("acme", "c", "1", before, None, None, "2", None, after)
    written = record.json(ZoneInfo("Asia/Kathmandu"))
    assert written == dumps(record.render(ZoneInfo("Asia/Kathmandu")))
    assert b'"start":"1985-12-31T23:59:59.000+05:30"' in written
    assert b'"stop":"1986-01-01T00:15:01.000+05:45"' in written
    row = record.csv(ZoneInfo("Asia/Kathmandu"))
    assert row == b"1,1985-12-31T23:59:59.000+05:30,,,2,,1986-01-01T00:15:01.000+05:45\r\n"


def test_ci_writes_records_in_c() -> None:
    """CI has a C compiler, so the extension is built and writes the records there."""
    if not JSON_IN_C and not os.environ.get("CI"):
        pytest.skip("samtal._speedups was not built here (no C compiler?): Python writes")
    assert JSON_IN_C
