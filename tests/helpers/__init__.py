"""What tests share, beside the fixtures in `conftest.py`: the spec's vectors, a settable
clock, ready-made calls, and running the `samtal` command. No test module imports another;
they import from here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from samtal.events import Event, decode_one
from samtal.store import Change, Store

#: 2017-03-01T00:00:00Z: the vectors' era, in microseconds.
T0 = 1_488_326_400_000_000
#: How far ahead of a test clock an event may lie (SAMTAL_MAX_FUTURE_SECONDS): the vectors'
#: calls run to July 2017, after T0, and are not "in the future" for the tests.
AHEAD = 400 * 86_400
#: The vectors as copied into this repository, and the spec they are copied from (when this
#: checkout sits beside `shared/`).
VECTORS_HERE = Path(__file__).resolve().parents[1] / "vectors"
VECTORS_SHARED = Path(__file__).resolve().parents[3] / "shared" / "spec" / "vectors"
#: The contract as copied into this repository (docs/), and where it comes from.
DOCS_HERE = Path(__file__).resolve().parents[2] / "docs" / "spec"
DOCS_SHARED = VECTORS_SHARED.parent


def _load_vectors() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(VECTORS_HERE.glob("*.json"))]


#: Every worked vector of the spec, by name.
VECTORS = _load_vectors()
PRODUCT = next(v for v in VECTORS if v["name"] == "product-description")


class Clock:
    """A clock tests move by hand; microseconds since the epoch."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


def samtal(
    *args: str, cwd: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `samtal` command as a user would, in `cwd`; what it did (never raises)."""
    return subprocess.run(
        [sys.executable, "-m", "samtal", *args],
        cwd=cwd,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def events_of(vector: dict[str, Any], org: str = "acme") -> list[Event]:
    """A vector's events, decoded, in organisation `org`."""
    out = []
    for n, raw in enumerate(vector["events"], 1):
        event = decode_one(orjson.dumps({**raw, "org": org}), n)
        assert isinstance(event, Event)
        out.append(event)
    return out


def period(store: Store, org: str, start: int = 0, end: int = 2**62) -> list[dict[str, Any]]:
    """The records of `org` in [start, end), parsed."""
    return [
        orjson.loads(r) for chunk in store.records(org=org, start=start, end=end) for r in chunk
    ]


def feed(store: Store, org: str = "acme", after: int = 0, limit: int = 1000) -> list[Change]:
    """One page of `org`'s change feed."""
    return store.changes(org=org, after=after, limit=limit).changes


def disappearing(org: str = "acme") -> tuple[list[Event], Event]:
    """A call with a record, and the late `answered` by another person that takes it away
    (changes.md, "Records can disappear")."""
    rows = [
        ("e1", "00", "started", {"party": "caller", "number": "+46701", "dialed": "622"}),
        ("e2", "01", "entered", {"party": "function", "number": "622", "kind": "HUNT_GROUP"}),
        ("e3", "02", "ringing", {"party": "user", "number": "U"}),
        ("e4", "05", "answered", {"party": "user", "number": "U"}),
        ("e5", "30", "hangup", {"party": "user", "number": "U"}),
        ("e6", "03.5", "answered", {"party": "user", "number": "V"}),
    ]
    events = []
    for n, (event_id, at, type_, fields) in enumerate(rows, 1):
        raw = {"org": org, "id": event_id, "call": "c-4", "type": type_, **fields}
        raw["at"] = f"2017-01-04T10:00:{at}+01:00"
        event = decode_one(orjson.dumps(raw), n)
        assert isinstance(event, Event)
        events.append(event)
    return events[:-1], events[-1]


def event_line(event: Event) -> bytes:
    """An event as the switch would send it: one NDJSON line (without its newline)."""
    raw = {
        "org": event.org,
        "id": event.id,
        "call": event.call,
        "at": event.at,
        "type": event.type,
        "party": event.party,
        "number": event.number,
        "kind": event.kind,
        "dialed": event.dialed,
        "target": event.target,
        "seq": event.seq,
    }
    return orjson.dumps({k: v for k, v in raw.items() if v is not None})


def in_org(events: list[dict[str, Any]], org: str) -> list[dict[str, Any]]:
    """Raw events moved into organisation `org`."""
    return [{**e, "org": org} for e in events]
