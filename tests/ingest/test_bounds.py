"""The time bounds of events.md for a batch of many organisations: each event is judged by its
own organisation's zone and retention, however many organisations share them."""

from __future__ import annotations

from samtal.events import decode_batch
from samtal.ingest import Bounds, ingest
from samtal.store import Store
from tests.helpers import T0

#: The retention of the installation in these tests, in days.
DAYS = 30


def _line(org: str, event_id: str, at: str) -> bytes:
    return (
        f'{{"id":"{event_id}","org":"{org}","call":"{event_id}","at":"{at}","type":"ended"}}\n'
    ).encode()


def test_each_organisation_keeps_by_its_own_zone_and_retention(store: Store) -> None:
    # T0 is 2017-03-01T00:00Z. Thirty days back from 1 March is 30 January: local midnight of
    # that day in Stockholm is 2017-01-29T23:00Z, in Auckland (+13:00) 2017-01-29T11:00Z.
    # Seven days back (acme's own) is 22 February: 2017-02-21T23:00Z in Stockholm.
    many = [f"org-{n}" for n in range(5)]
    for name in many:
        store.add_org(name, "Europe/Stockholm", now=T0)
    store.add_org("kiwi", "Pacific/Auckland", now=T0)
    store.add_org("acme", "Europe/Stockholm", now=T0)
    store.set_retention("acme", 7)
    lines = [
        *(_line(name, f"{name}-in", "2017-01-29T23:00:00Z") for name in many),
        *(_line(name, f"{name}-out", "2017-01-29T22:59:59Z") for name in many),
        _line("kiwi", "kiwi-in", "2017-01-29T11:00:00Z"),
        _line("kiwi", "kiwi-out", "2017-01-29T10:59:59Z"),
        _line("acme", "acme-in", "2017-02-21T23:00:00Z"),
        _line("acme", "acme-out", "2017-02-21T22:59:59Z"),
    ]
    bounds = Bounds(T0, 3600 * 10**6, DAYS)
    report = ingest(store, decode_batch(lines), now=T0, bounds=bounds)

    assert sorted(r.id or "" for r in report.rejected) == sorted(
        [f"{name}-out" for name in many] + ["kiwi-out", "acme-out"]
    )
    assert report.accepted == len(many) + 2
    acme = [r.reason for r in report.rejected if r.id == "acme-out"]
    assert acme == [
        "`at` (2017-02-21T22:59:59Z) is before retention: its organisation keeps calls from "
        "2017-02-22T00:00:00.000+01:00 on (7 days)"
    ]


def test_the_bounds_of_many_organisations_are_each_ones_own(store: Store) -> None:
    """`earliest_of`, which works a rule out once for all who share it, gives each
    organisation what `earliest` gives it alone."""
    store.add_org("a", "Europe/Stockholm", now=T0)
    store.add_org("b", "Europe/Stockholm", now=T0)
    store.add_org("c", "Pacific/Auckland", now=T0)
    store.add_org("d", "Europe/Stockholm", now=T0)
    store.set_retention("d", 3)
    orgs = store.orgs_named(["a", "b", "c", "d"])
    for days in (0, DAYS):
        bounds = Bounds(T0, 0, days)
        together = bounds.earliest_of(orgs.values())
        assert together == {name: bounds.earliest(org) for name, org in orgs.items()}
        assert (together["a"] is None) == (days == 0)
        assert together["d"] is not None  # its own retention, whatever the installation's
        assert len({together["a"], together["c"], together["d"]}) == (3 if days else 2)
