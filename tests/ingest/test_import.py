"""Loading a stream: decoded ahead in a process of its own once it is longer than a batch, with
the same report and the same records as one decoded in the importing process."""

from __future__ import annotations

from datetime import date

from samtal.aggregate import aggregate
from samtal.events import decode_batch
from samtal.ingest import IMPORT_REJECTIONS_SHOWN, IMPORT_UNKNOWN_NAMED, import_lines
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Store
from samtal.times import zone
from tests.helpers import T0, period

STOCKHOLM = zone("Europe/Stockholm")


def _stream() -> list[bytes]:
    """A simulated day of two organisations, with duplicates, a BOM, a blank
    line, a line cut short and a line of an organisation nobody added."""
    settings = TrafficSettings(
        orgs=2, days=1, seed=5, start=date(2017, 1, 4), calls_per_day=150, duplicates=0.1
    )
    lines = list(event_lines(settings))
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[700:700] = [b"\n", b'{"id": "cut\n', lines[10].replace(b'"org-1"', b'"org-9"')]
    return lines


def test_a_stream_decoded_in_a_process_of_its_own(store: Store) -> None:
    lines = _stream()
    for name in ("org-1", "org-2"):
        store.add_org(name, "Europe/Stockholm", now=T0)
    # Batches of 300 lines: more than one, so a decoding process takes them.
    report = import_lines(store, iter(lines), now=lambda: T0, batch=300)

    decoded = decode_batch(lines)
    # The line cut short, then the unknown organisation's line, by their numbers in the stream.
    assert [str(r) for r in decoded.rejections] == [
        "line 702: not valid JSON: JSON is malformed: invalid character (byte 11)"
    ]
    assert [str(r) for r in report.shown] == [str(r) for r in decoded.rejections]
    assert (report.invalid, report.unknown, report.rejected) == (1, {"org-9": 1}, 2)
    distinct = {(e.org, e.id) for e in decoded.events if e.org != "org-9"}
    assert report.accepted == len(distinct) > 1000
    assert report.accepted + report.duplicates == len(decoded.events) - 1
    for name in ("org-1", "org-2"):
        truth = [r.render(STOCKHOLM) for r in aggregate(e for e in decoded.events if e.org == name)]
        assert period(store, name) == truth and len(truth) > 100


def test_an_import_sums_up_its_rejections_in_bounded_memory(store: Store) -> None:
    """A file of many rejected lines (an organisation not added yet, a broken export) is summed
    up, not kept line by line: the first invalid lines by number, every line counted, the
    unknown organisations by name up to a bound. Batches of 300 lines, so that a decoding
    process takes them and, on PostgreSQL, several writers finish them in any order."""
    store.add_org("org-1", "Europe/Stockholm", now=T0)
    good = [line for line in _stream()[1:700] if b'"org-1"' in line]
    lines: list[bytes] = []
    invalid: list[int] = []
    unknown = IMPORT_UNKNOWN_NAMED + 100
    for n in range(unknown):
        lines.append(good[n % len(good)].replace(b'"org-1"', f'"nobody-{n}"'.encode()))
        if n % 4 == 0:
            lines.append(b"{")
            invalid.append(len(lines))
    lines += good
    report = import_lines(store, iter(lines), now=lambda: T0, batch=300)

    assert len(invalid) > IMPORT_REJECTIONS_SHOWN
    assert [r.line for r in report.shown] == invalid[:IMPORT_REJECTIONS_SHOWN]
    assert report.invalid == len(invalid)
    assert len(report.unknown) == IMPORT_UNKNOWN_NAMED
    assert set(report.unknown.values()) == {1}
    assert report.unknown_unnamed == unknown - IMPORT_UNKNOWN_NAMED
    assert report.rejected == len(invalid) + unknown
    assert report.accepted + report.duplicates == len(good)
