"""privacy.md over real HTTP on both engines: retention per organisation, scoped tokens."""

from __future__ import annotations

import json

from samtal.store import Store
from tests.api.test_api import HOUR, wait_for
from tests.helpers import PRODUCT, T0, Clock, in_org
from tests.helpers.servers import Server, assert_problem, start_app


def _post(server: Server, ingest: str, org: str) -> dict[str, object]:
    body = "".join(json.dumps(e) + "\n" for e in in_org(PRODUCT["events"], org))
    with server.client(ingest) as client:
        answer: dict[str, object] = client.post("/events", content=body).json()
    return answer


def _tokens(store: Store, clock: Clock, *orgs: str) -> tuple[str, dict[str, str]]:
    for org in orgs:
        store.add_org(org, "Europe/Stockholm", now=clock())
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    return ingest, {org: store.create_token("read", org=org, now=clock())[1] for org in orgs}


def test_an_organisation_that_keeps_less_loses_only_its_own_calls(store_url: str) -> None:
    """The product description's calls are 56 days old on 2017-03-01. `short` keeps 30 days,
    `long` the installation's 92: the 400 before the window, the purge of whole calls and the
    feed follow each one's own retention, and new events before it are rejected."""
    clock = Clock(T0)
    server, store, _ = start_app(store_url, clock, duty_interval_seconds=0.02, retention_days=92)
    ingest, read = _tokens(store, clock, "long", "short")
    with server:
        for org in ("long", "short"):
            assert _post(server, ingest, org)["accepted"] == 17
        store.set_retention("short", 30)
        wait_for(lambda: store.changes(org="short", after=0, limit=10).changes == [])
        assert len(store.changes(org="long", after=0, limit=10).changes) == 3
        with server.client(read["short"]) as short, server.client(read["long"]) as long:
            assert_problem(
                short.get("/cdr/historik", params={"from": "2017-01-04"}),
                400,
                "2017-01-30T00:00:00.000+01:00",
                "data is kept 30 days",
            )
            assert_problem(
                short.get("/cdr/stats", params={"from": "2017-01-04"}),
                400,
                "2017-01-30T00:00:00.000+01:00",
            )
            assert short.get("/cdr/historik", params={"from": "2017-01-30"}).json() == []
            got = long.get("/cdr/historik", params={"from": "2017-01-04"}).json()
            assert got == PRODUCT["expected"]
            # A purge is not a deletion: the feed shows no tombstone, only nothing.
            assert short.get("/cdr/changes").json()["records"] == []
        # The same events again: `long` has them (duplicates), `short` refuses them by line.
        again = _post(server, ingest, "short")
        assert again["accepted"] == 0
        rejected = again["rejected"]
        assert isinstance(rejected, list) and len(rejected) == 17
        assert "before retention" in rejected[0]["reason"]
        assert "2017-01-30T00:00:00.000+01:00" in rejected[0]["reason"]
        assert _post(server, ingest, "long")["duplicates"] == 17
        # Back to the installation's: the window opens again (what was purged stays gone).
        store.set_retention("short", None)
        clock.advance(HOUR)
        with server.client(read["short"]) as short:
            assert short.get("/cdr/historik", params={"from": "2017-01-04"}).json() == []
    store.close()
