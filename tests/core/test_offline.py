"""A file aggregated over several processes gives what one process gives, to the byte: the
records in record order and the rejections in line order, whatever the shares."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import decode_batch
from samtal.offline import aggregate_file
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


def _calls_in_two_shares() -> tuple[str, str]:
    """Two call ids that fall to different shares of two (forked shares hash as we do)."""
    first = "c-0"
    second = next(f"c-{n}" for n in range(1, 100) if hash(f"c-{n}") % 2 != hash(first) % 2)
    return first, second


def test_a_duplicate_naming_another_call_counts_once() -> None:
    # events.md: the first copy of an id counts, whichever call the later one names. The two
    # calls fall to different shares, so no share alone can tell; the file is done again on
    # one core.
    first, second = _calls_in_two_shares()

    def event(event_id: str, call: str, at: str, type_: str, **more: str) -> bytes:
        fields = {"id": event_id, "org": "acme", "call": call, "at": at, "type": type_}
        return orjson.dumps({**fields, **more})

    lines = [
        event(
            "a", first, "2017-01-04T08:00:00Z", "started", party="caller", number="1", dialed="2"
        ),
        event("b", first, "2017-01-04T08:00:05Z", "ended"),
        event(
            "c", second, "2017-01-04T09:00:00Z", "started", party="caller", number="3", dialed="2"
        ),
        # A copy of `b` naming the second call: ignored, so the second call does not stop.
        event("b", second, "2017-01-04T09:00:05Z", "ended"),
    ]
    data = b"\n".join(lines)
    records, rejections = aggregate_file(data, STOCKHOLM, workers=2)
    assert (records, [str(r) for r in rejections]) == _one_process(data)
    assert [orjson.loads(r)["callerNo"] for r in records] == ["1"]


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
    # The second line is the first of its share: it is still not the file's first line, so
    # its byte order mark makes it invalid, as on one core.
    first, second = _calls_in_two_shares()
    start = {"org": "acme", "at": "2017-01-04T08:00:00Z", "type": "started", "party": "caller"}
    lines = [
        orjson.dumps({**start, "id": "a", "call": first, "number": "1", "dialed": "2"}),
        b"\xef\xbb\xbf"
        + orjson.dumps({**start, "id": "b", "call": second, "number": "3", "dialed": "2"}),
    ]
    data = b"\xef\xbb\xbf" + b"\n".join(lines)
    records, rejections = aggregate_file(data, STOCKHOLM, workers=2)
    assert (records, [str(r) for r in rejections]) == _one_process(data)
    assert [r.line for r in rejections] == [2]
