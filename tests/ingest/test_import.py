"""Loading a stream: decoded ahead in a process of its own once it is longer than a batch, with
the same report and the same records as one decoded in the importing process."""

from __future__ import annotations

from datetime import date

from samtal.aggregate import aggregate
from samtal.events import decode_batch
from samtal.ingest import import_lines
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
    assert [(r.line, r.unknown_org) for r in report.rejected] == [(702, None), (703, "org-9")]
    distinct = {(e.org, e.id) for e in decoded.events if e.org != "org-9"}
    assert report.accepted == len(distinct) > 1000
    assert report.accepted + report.duplicates == len(decoded.events) - 1
    for name in ("org-1", "org-2"):
        truth = [r.render(STOCKHOLM) for r in aggregate(e for e in decoded.events if e.org == name)]
        assert period(store, name) == truth and len(truth) > 100
