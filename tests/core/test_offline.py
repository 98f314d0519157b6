"""A file aggregated over several processes gives what one process gives, to the byte: the
records in record order and the rejections in line order, whatever the shares."""

from __future__ import annotations

import subprocess
import sys
from array import array
from datetime import date
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samtal.aggregate import aggregate
from samtal.events import Event, decode_batch
from samtal.offline import _id_hashes_in_c, _id_hashes_python, aggregate_file
from samtal.records import dumps
from samtal.simulate import TrafficSettings, event_lines
from samtal.times import zone

STOCKHOLM = zone("Europe/Stockholm")


def _messy_file() -> bytes:
    """Three organisations' two simulated days, duplicated and disordered, with a BOM, blank lines,
    a line cut short, a bad value, a stray byte order mark and a line that is not an
    object among the events."""
    settings = TrafficSettings(
        orgs=3,
        days=2,
        seed=11,
        start=date(2017, 3, 24),
        calls_per_day=300,
        duplicates=0.1,
        disorder=0.1,
    )
    lines = [line.rstrip(b"\n") for line in event_lines(settings)]
    lines[5:5] = [b"", b"   ", b'{"id": "cut', b"[1, 2]"]
    lines[40] = lines[40].replace(b'"type":"', b'"type":"x')
    lines[60] = b"\xef\xbb\xbf" + lines[60]  # a byte order mark only opens a stream
    return b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"


def _one_process(data: bytes) -> tuple[list[bytes], list[str]]:
    """The definition: decode every line, aggregate, render."""
    decoded = decode_batch(data.splitlines())
    records = [dumps(record.render(STOCKHOLM)) for record in aggregate(decoded.events)]
    return records, [str(r) for r in decoded.rejections]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_shares_give_what_one_process_gives(workers: int) -> None:
    data = _messy_file()
    records, rejections = aggregate_file(data, STOCKHOLM, workers=workers)
    expected_records, expected_rejections = _one_process(data)
    assert len(expected_records) > 500 and len(expected_rejections) == 4
    assert records == expected_records
    assert [str(r) for r in rejections] == expected_rejections


def _event(event_id: str, call: str, at: str, type_: str, **more: str) -> bytes:
    fields = {"id": event_id, "org": "acme", "call": call, "at": at, "type": type_}
    return orjson.dumps({**fields, **more})


def _every_seam(data: bytes) -> None:
    """Shares of `data` cut at every line (as many shares as lines, and every number below)
    give what one process gives."""
    expected = _one_process(data)
    for workers in range(2, data.count(b"\n") + 3):
        records, rejections = aggregate_file(data, STOCKHOLM, workers=workers)
        assert (records, [str(r) for r in rejections]) == expected, f"{workers} shares"


def _cut_everywhere(lines: list[bytes]) -> list[tuple[str, str]]:
    """`lines` as a file cut at every line (`_every_seam`); each record's caller and stop (the
    local time of day)."""
    data = b"\n".join(lines) + b"\n"
    _every_seam(data)
    records = [orjson.loads(r) for r in aggregate_file(data, STOCKHOLM, workers=2)[0]]
    return [(r["callerNo"], r["stop"][11:19]) for r in records]


def test_a_duplicate_naming_another_call_counts_once_wherever_the_shares_meet() -> None:
    # events.md: the first copy of an id counts, whichever call the later one names. When the
    # copies lie in two shares, neither share alone can tell.
    lines = [
        _event(
            "a", "c1", "2017-01-04T08:00:00Z", "started", party="caller", number="1", dialed="2"
        ),
        _event("b", "c1", "2017-01-04T08:00:05Z", "ended"),
        _event(
            "c", "c2", "2017-01-04T09:00:00Z", "started", party="caller", number="3", dialed="2"
        ),
        # A copy of `b` naming the second call: ignored, so the second call does not stop.
        _event("b", "c2", "2017-01-04T09:00:05Z", "ended"),
    ]
    data = b"\n".join(lines)
    _every_seam(data)
    records, _ = aggregate_file(data, STOCKHOLM, workers=2)
    assert [orjson.loads(r)["callerNo"] for r in records] == ["1"]


def test_a_call_across_shares_and_its_ids_elsewhere_give_one_record_each() -> None:
    # The call `c1` runs across the seams; `d` is sent again in `c1` (the first copy counts);
    # `y` is first in `c2`, a call at a seam only for the id `x` it shares with `c1`, and
    # again in `c3`, which no other share holds: `c3` does not stop, wherever the shares meet.
    started = {"party": "caller", "dialed": "2"}
    lines = [
        _event("a", "c1", "2017-01-04T08:00:00Z", "started", number="1", **started),
        _event("r", "c1", "2017-01-04T08:00:01Z", "ringing", party="user", number="5"),
        _event("x", "c1", "2017-01-04T08:00:02Z", "answered", party="user", number="5"),
        _event("c", "c2", "2017-01-04T08:30:00Z", "started", number="3", **started),
        _event("x", "c2", "2017-01-04T08:30:01Z", "ended"),
        _event("y", "c2", "2017-01-04T08:30:02Z", "ended"),
        _event("e", "c3", "2017-01-04T08:40:00Z", "started", number="4", **started),
        _event("y", "c3", "2017-01-04T08:40:03Z", "ended"),
        _event("d", "c1", "2017-01-04T08:50:00Z", "ended"),
        _event("d", "c1", "2017-01-04T08:50:09Z", "ended"),
    ]
    assert _cut_everywhere(lines) == [("1", "09:50:00"), ("3", "09:30:02")]


def test_the_command_gives_the_same_records_on_any_number_of_processes(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(_messy_file())

    def run(*options: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "samtal", "aggregate", "--outcome", *options, str(path)]
        return subprocess.run(command, capture_output=True, check=False)

    one, two = run("--workers", "1"), run("--workers", "2")
    assert one.returncode == two.returncode == 1  # some lines were invalid
    assert one.stdout == two.stdout and one.stderr == two.stderr
    records = orjson.loads(one.stdout)
    assert len(records) > 500 and all(list(r)[-1] == "outcome" for r in records)
    assert one.stderr.decode().splitlines()[-1] == "4 invalid line(s) skipped"


def test_a_byte_order_mark_opens_only_the_file() -> None:
    # The second line is the first of its share when the shares meet there: it is still not
    # the file's first line, so its byte order mark makes it invalid, as on one core.
    start = {"org": "acme", "at": "2017-01-04T08:00:00Z", "type": "started", "party": "caller"}
    lines = [
        orjson.dumps({**start, "id": "a", "call": "c1", "number": "1", "dialed": "2"}),
        b"\xef\xbb\xbf"
        + orjson.dumps({**start, "id": "b", "call": "c2", "number": "3", "dialed": "2"}),
    ]
    data = b"\xef\xbb\xbf" + b"\n".join(lines)
    _every_seam(data)
    _, rejections = aggregate_file(data, STOCKHOLM, workers=2)
    assert [r.line for r in rejections] == [2]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    workers=st.integers(2, 6),
    moves=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.booleans()), max_size=8
    ),
)
def test_any_cut_of_a_messy_day_gives_what_one_process_gives(
    seed: int, workers: int, moves: list[tuple[int, int, bool]]
) -> None:
    # A simulated day sent twice in part and out of order, and some lines moved to another
    # place and to another call (or to a call of their own), keeping their ids: copies of an
    # id in two calls, calls whose events lie far apart, calls made of a copy alone, wherever
    # the shares happen to meet.
    settings_ = TrafficSettings(
        orgs=2, days=1, seed=seed, start=date(2017, 3, 24), calls_per_day=40,
        duplicates=0.2, disorder=0.2,
    )  # fmt: skip
    lines = [line.rstrip(b"\n") for line in event_lines(settings_)]
    for n, (source, target, alone) in enumerate(moves):
        moved = orjson.loads(lines[source % len(lines)])
        moved["call"] = f"alone-{n}" if alone else orjson.loads(lines[target % len(lines)])["call"]
        lines.insert(target % len(lines), orjson.dumps(moved))
    data = b"\n".join(lines) + b"\n"
    records, rejections = aggregate_file(data, STOCKHOLM, workers=workers)
    assert (records, [str(r) for r in rejections]) == _one_process(data)


def test_a_call_made_of_a_copy_alone_is_left_out_wherever_the_shares_meet() -> None:
    # `x` is first in `c1`; its copies name `c2` and then `c9`, whose only event it is. Where
    # `c1` lies in another share than the copies, the share of the copies leaves out the copy
    # in `c9` as its own duplicate, and `c9` has nothing: no record, no error.
    started = {"party": "caller", "dialed": "2"}
    lines = [
        _event("a", "c1", "2017-01-04T08:00:00Z", "started", number="1", **started),
        _event("x", "c1", "2017-01-04T08:00:05Z", "ended"),
        _event("b", "c2", "2017-01-04T08:10:00Z", "started", number="3", **started),
        _event("x", "c2", "2017-01-04T08:10:05Z", "ended"),
        _event("x", "c9", "2017-01-04T08:10:06Z", "ended"),
        _event("z", "c2", "2017-01-04T08:10:09Z", "ended"),
    ]
    assert _cut_everywhere(lines) == [("1", "09:00:05"), ("3", "09:10:09")]


_HASHES = st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 7])))


@given(_HASHES, _HASHES)
def test_the_hashes_two_shares_hold_are_found_in_c_as_with_sets(
    seen: list[int], mine: list[int]
) -> None:
    # The parent finds the calls at the seams with `common` where the extension was built.
    common = pytest.importorskip("samtal._speedups").common
    earlier = set(seen)
    assert common(array("q", seen), array("q", mine)) == [h for h in mine if h in earlier]


@given(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=20))
def test_each_events_id_is_hashed_in_c_as_python_hashes_it(keys: list[tuple[str, str]]) -> None:
    # A share hands over a hash of each event's (org, id), made in C where it was built.
    in_c = _id_hashes_in_c()
    if in_c is None:
        pytest.skip("samtal._speedups was not built here (no C compiler?): Python hashes")
    events = [Event(org, event_id, "c", "", "ended") for org, event_id in keys]
    assert in_c(events) == _id_hashes_python(events) == array("q", map(hash, keys))


def test_the_command_reads_stdin_from_where_it_stands(tmp_path: Path) -> None:
    # A file on disk is mapped rather than read; one handed over as stdin after a line was
    # read from it (as `(read -r header; samtal aggregate) < file` does) is read from there.
    started = {"party": "caller", "number": "1", "dialed": "2"}
    lines = [
        _event("a", "c1", "2017-01-04T08:00:00Z", "started", **started),
        _event("b", "c1", "2017-01-04T08:00:05Z", "ended"),
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    command = [sys.executable, "-m", "samtal", "aggregate"]
    with path.open("rb") as whole:
        assert (
            len(orjson.loads(subprocess.run(command, stdin=whole, capture_output=True).stdout)) == 1
        )
    with path.open("rb", buffering=0) as rest:  # unbuffered: it stands right after line 1
        rest.readline()
        answer = subprocess.run(command, stdin=rest, capture_output=True, check=True)
    assert orjson.loads(answer.stdout) == []  # the call's `started` was read before
