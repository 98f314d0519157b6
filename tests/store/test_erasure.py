"""Erasure (privacy.md) in the store, on every engine: by call and by number, tombstones that
say why, an audit trail that keeps no number, and erased calls that never come back."""

from __future__ import annotations

import orjson

from samtal.privacy import number_hash
from samtal.store import Store
from tests.helpers import PRODUCT, T0, events_of, feed, period

NUMBER = "+4672111111"


def _calls_with(number: str) -> set[str]:
    return {e.call for e in events_of(PRODUCT) if number in (e.number, e.dialed, e.target)}


def test_erasure_by_number_takes_every_call_it_appears_in(store: Store) -> None:
    store.add_org("acme", "Europe/Stockholm", now=T0)
    store.add_org("bolag", "Europe/Stockholm", now=T0)
    store.ingest(events_of(PRODUCT) + events_of(PRODUCT, "bolag"), now=T0)
    before = {c.call: c for c in feed(store)}
    chosen = _calls_with(NUMBER)
    assert 0 < len(chosen) < len(before)
    erasure = store.erase("acme", number=NUMBER, by="cli", now=T0 + 1)
    assert erasure.calls == len(chosen)
    assert erasure.selector == {
        "number": number_hash(store.org("acme").secret, NUMBER), "from": None, "to": None
    }  # fmt: skip
    # The records are gone; the others stay; another organisation's are untouched.
    kept = [r for r in PRODUCT["expected"] if NUMBER not in (r["callerNo"], r["calleeNo"])]
    assert period(store, "acme") == kept
    assert period(store, "bolag") == PRODUCT["expected"]
    # Each erased call's tombstone: a new version and seq, after every other.
    after = {c.call: c for c in feed(store)}
    latest = max(c.seq for c in before.values())
    for call in chosen:
        tomb = orjson.loads(after[call].json())
        assert tomb == {
            "id": call, "deleted": True, "version": before[call].version + 1,
            "seq": tomb["seq"], "reason": "erased",
        }  # fmt: skip
        assert tomb["seq"] > latest
    # Re-sent, its events are acknowledged as duplicates and stay out.
    again = store.ingest(events_of(PRODUCT), now=T0 + 2)
    assert (again.accepted, again.duplicates) == (0, len(PRODUCT["events"]))
    assert period(store, "acme") == kept
    assert {c.call: c.seq for c in feed(store)} == {c: a.seq for c, a in after.items()}
    # Erasing again, or an unknown call, erases nothing and is no error.
    assert store.erase("acme", number=NUMBER, by="cli", now=T0 + 3).calls == 0
    assert store.erase("acme", calls=["no-such", *chosen], by="token 1", now=T0 + 4).calls == 0
    trail = store.erasures("acme")
    assert [(e.by, e.calls) for e in trail] == [("token 1", 0), ("cli", 0), ("cli", len(chosen))]
    assert trail[0].selector == {"calls": ["no-such", *chosen]}
    assert NUMBER not in repr(trail)


def test_erasure_by_call_and_a_new_call_of_the_number(store: Store) -> None:
    store.add_org("acme", "Europe/Stockholm", now=T0)
    store.ingest(events_of(PRODUCT), now=T0)
    first = sorted(_calls_with(NUMBER))[0]
    assert store.erase("acme", calls=[first], by="cli", now=T0 + 1).calls == 1
    assert first not in {r["id"] for r in _detailed(store)}
    # A new call of the same number (another id) is a new call, kept as usual.
    renamed = {
        "events": [
            {**raw, "call": "new-call", "id": f"{raw['id']}-new"}
            for raw in PRODUCT["events"]
            if raw["call"] == first
        ]
    }
    assert store.ingest(events_of(renamed), now=T0 + 2).accepted == len(renamed["events"])
    assert "new-call" in {r["id"] for r in _detailed(store)}


def _detailed(store: Store) -> list[dict[str, object]]:
    return [
        orjson.loads(r)
        for page in store.records(org="acme", start=0, end=2**62, detailed=True)
        for r in page
    ]
