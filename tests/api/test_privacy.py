"""privacy.md over real HTTP on both engines: retention per organisation, scoped tokens."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import sqlite3
import time
from contextlib import closing
from datetime import date
from typing import Any

import orjson
import psycopg

from samtal.records import FIELDS
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Store
from tests.helpers import PRODUCT, T0, Clock, in_org
from tests.helpers.servers import Server, Service, assert_problem, start_app

HOUR = 3600.0


def wait_for(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the server's duties did not happen in time"
        time.sleep(0.02)


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


# -- tokens with less power -------------------------------------------------------------------


def _token(service: Service, org: str, **narrowed: Any) -> str:
    made = service.store.create_token(
        "read", org=service.name(org), now=service.clock(), **narrowed
    )
    return made[1]


def test_each_scope_opens_its_endpoints_and_a_403_names_the_scope(service: Service) -> None:
    service.org("acme")
    assert service.post(service.events(PRODUCT["events"], "acme")).status_code == 200
    call = "c-622"  # one of the product description's calls
    records = ["/cdr/historik?from=2017-01-04", "/cdr/changes", f"/cdr/calls/{call}"]
    stats = ["/cdr/stats?from=2017-01-04"]
    for scopes, opened in [
        (("records",), records),
        (("stats",), stats),
        (("erase",), []),
        (("records", "stats"), records + stats),
    ]:
        token = _token(service, "acme", scopes=scopes)
        with service.server.client(token) as client:
            for path in records + stats:
                answer = client.get(path)
                if path in opened:
                    assert answer.status_code == 200, (scopes, path, answer.text)
                    continue
                needed = "stats" if path in stats else "records"
                assert_problem(
                    answer, 403, f"takes the scope `{needed}`", f"scopes: {', '.join(scopes)}"
                )
            # The scope is checked before the parameters: a 403, not a 400.
            if "stats" not in scopes:
                assert client.get("/cdr/stats?from=someday").status_code == 403
    with service.server.client("samtal_r_not-a-token") as client:
        assert client.get("/cdr/stats?from=2017-01-04").status_code == 401


def _day(service: Service, org: str) -> list[dict[str, Any]]:
    """A simulated day of `org`, posted; its events."""
    traffic = TrafficSettings(orgs=1, days=1, seed=5, start=date(2016, 10, 24), calls_per_day=300)
    lines = service.events([orjson.loads(line) for line in event_lines(traffic)], org)
    assert service.post(lines).status_code == 200
    return lines


def test_a_group_token_sees_only_its_groups(service: Service) -> None:
    """privacy.md: /cdr/historik, /cdr/stats and /cdr/calls behave as if the organisation had
    no other records; /cdr/changes is a 403."""
    full = service.org("dept")
    _day(service, "dept")
    day = {"from": "2016-10-24", "to": "2016-10-24"}
    everything = service.get(full, view="detailed", **day).json()
    groups = sorted({r["receivingNo"] for r in everything if r["receivingNo"]})
    assert len(groups) >= 3
    mine = tuple(groups[:2])
    token = _token(service, "dept", groups=mine)
    expected_records = [r for r in everything if r["receivingNo"] in mine]
    assert 0 < len(expected_records) < len(everything)
    got = service.get(token, view="detailed", **day)
    assert got.json() == expected_records
    # Its own filters narrow further; a group outside its own gives nothing, without an error.
    assert service.get(token, receivingNo=mine[0], **day).json() == [
        {k: r[k] for k in FIELDS} for r in expected_records if r["receivingNo"] == mine[0]
    ]
    assert service.get(token, receivingNo=groups[2], **day).json() == []
    as_csv = service.get(token, format="csv", **day).text.splitlines()
    assert len(as_csv) == 1 + len(expected_records)
    with service.server.client(token) as client, service.server.client(full) as whole:
        figures = client.get("/cdr/stats", params=day).json()
        filtered = whole.get("/cdr/stats", params={**day, "receivingNo": list(mine)}).json()
        assert figures == filtered and figures["calls"]["calls"] == len(expected_records)
        outside = next(r for r in everything if r["receivingNo"] not in mine)
        inside = expected_records[0]
        assert client.get(f"/cdr/calls/{inside['id']}").status_code == 200
        hidden = client.get(f"/cdr/calls/{outside['id']}")
        assert_problem(hidden, 404, "no call")
        assert hidden.json() == {
            **client.get("/cdr/calls/no-such-call").json(),
            "detail": hidden.json()["detail"],
        }
        assert_problem(client.get("/cdr/changes"), 403, "cannot follow the feed")


# -- pseudonyms -------------------------------------------------------------------------------


def _secret(url: str, org: str) -> bytes:
    """The organisation's secret, read from the database itself (not through samtal)."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            (secret,) = db.execute("SELECT secret FROM orgs WHERE name = ?", (org,)).fetchone()
    else:
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as db:
            row = db.execute("SELECT secret FROM orgs WHERE name = %s", (org,)).fetchone()
            assert row is not None
            (secret,) = row
    return bytes(secret)


def _pseudonym(secret: bytes, number: str) -> str:
    mac = hmac.new(secret, number.encode("utf-8"), hashlib.sha256).digest()
    return "p:" + base64.b32encode(mac).decode().rstrip("=").lower()[:16]


def _masked(record: dict[str, Any], secret: bytes) -> dict[str, Any]:
    return {
        name: _pseudonym(secret, value) if name in ("callerNo", "calleeNo") and value else value
        for name, value in record.items()
    }


def test_a_pseudonymizing_token_never_sees_a_persons_number(service: Service) -> None:
    """privacy.md: pseudonyms recomputed here with hmac from each organisation's secret read
    from the database; the same across records, different across organisations; no raw
    number in the bytes of any answer, in any format; filters take the pseudonym."""
    full = service.org("open")
    service.org("other")
    _day(service, "open")
    _day(service, "other")
    masked = _token(service, "open", pseudonymize=True)
    other = _token(service, "other", pseudonymize=True)
    secret = _secret(service.settings.database_url, service.name("open"))
    day = {"from": "2016-10-24", "to": "2016-10-24"}
    everything = service.get(full, view="detailed", **day).json()
    people = {r[f] for r in everything for f in ("callerNo", "calleeNo") if r[f]}
    groups = {r["receivingNo"] for r in everything if r["receivingNo"]}
    raw = sorted(people - groups)
    assert len(raw) > 50

    def assert_clean(body: bytes) -> None:
        leaked = [number for number in raw if number.encode() in body]
        assert not leaked, leaked[:3]

    got = service.get(masked, view="detailed", **day)
    assert got.json() == [_masked(r, secret) for r in everything]
    assert_clean(got.content)
    for params in (
        {},
        {"format": "csv"},
        {"format": "ndjson"},
        {"format": "csv", "view": "detailed"},
    ):
        answer = service.get(masked, **day, **params)
        assert answer.status_code == 200 and answer.content
        assert_clean(answer.content)
    as_csv = list(csv.reader(io.StringIO(service.get(masked, format="csv", **day).text)))
    assert as_csv[1:] == [
        ["" if v is None else v for k, v in _masked(r, secret).items() if k in FIELDS]
        for r in everything
    ]
    # The same number, another organisation: another pseudonym.
    caller = next(r["callerNo"] for r in everything if r["callerNo"] in raw)
    theirs = service.get(other, callerNo=_pseudonym(secret, caller), **day).json()
    assert theirs == []
    # Filters take the pseudonym; the raw number matches nothing, without an error.
    mine = [r for r in everything if r["callerNo"] == caller]
    by_pseudonym = service.get(masked, view="detailed", callerNo=_pseudonym(secret, caller), **day)
    assert by_pseudonym.json() == [_masked(r, secret) for r in mine]
    assert service.get(masked, callerNo=caller, **day).json() == []
    anyone = service.get(masked, number=_pseudonym(secret, caller), **day).json()
    assert len(anyone) == len([r for r in everything if caller in (r["callerNo"], r["calleeNo"])])
    with service.server.client(masked) as client, service.server.client(full) as whole:
        # Statistics: the same figures as the full token's, filters by pseudonym.
        stats = client.get("/cdr/stats", params={**day, "callerNo": _pseudonym(secret, caller)})
        assert stats.json() == whole.get("/cdr/stats", params={**day, "callerNo": caller}).json()
        assert_clean(stats.content)
        # One call's path: people's numbers, dialed and target as pseudonyms; functions kept.
        record = next(r for r in everything if r["calleeNo"])
        path = client.get(f"/cdr/calls/{record['id']}")
        assert_clean(path.content)
        plain = whole.get(f"/cdr/calls/{record['id']}").json()
        for shown, item in zip(path.json()["path"], plain["path"], strict=True):
            for name in ("number", "dialed", "target"):
                if item.get(name) is None or (name == "number" and item["party"] == "function"):
                    assert shown.get(name) == item.get(name)
                else:
                    assert shown[name] == _pseudonym(secret, item[name])
        # The feed.
        feed = client.get("/cdr/changes", params={"limit": 10_000})
        assert_clean(feed.content)
        assert feed.json()["records"] == [
            _masked(r, secret)
            for r in whole.get("/cdr/changes", params={"limit": 10_000}).json()["records"]
        ]
        # An error: nothing but what the token sent.
        assert_clean(client.get("/cdr/historik", params={"from": "someday"}).content)


# -- erasure ----------------------------------------------------------------------------------


def _follow(
    client: Any, after: int = 0, copy: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, dict[str, Any]], int]:
    """A copy kept with the feed from `after`: upsert records, delete tombstones."""
    copy = {} if copy is None else copy
    while True:
        page = client.get("/cdr/changes", params={"after": after, "limit": 500}).json()
        for record in page["records"]:
            if record.get("deleted"):
                copy.pop(record["id"], None)
            else:
                copy[record["id"]] = record
        after = page["next"]
        if not page["more"]:
            return copy, after


def test_erasure_by_number_over_http(service: Service) -> None:
    """privacy.md: against the test's own selection of the posted events; a follower of the
    feed ends equal to the detailed view; re-sent events stay out; a new call of the number is
    kept; the audit trail keeps only the keyed hash; a bad request erases nothing."""
    reader = service.org("erasing")
    lines = _day(service, "erasing")
    eraser = _token(service, "erasing", scopes=("erase",))
    day = {"from": "2016-10-24", "to": "2016-10-24"}
    callers: dict[str, int] = {}
    for e in lines:
        if e["type"] == "started" and e.get("number"):
            callers[e["number"]] = callers.get(e["number"], 0) + 1
    number = max(callers, key=lambda n: callers[n])  # the most frequent caller
    chosen = {
        e["call"] for e in lines if number in (e.get("number"), e.get("dialed"), e.get("target"))
    }
    with service.server.client(reader) as client, service.server.client(eraser) as erasing:
        copy, after = _follow(client)
        before = service.get(reader, view="detailed", **day).json()
        assert chosen & {r["id"] for r in before}
        # Bad requests: each a 400 (or 413) that erases nothing.
        for body, status in [
            (b"", 400), (b"[]", 400), (b'{"calls": ["a"], "number": "1"}', 400),
            (b'{"number": "1", "colour": "red"}', 400),
            (b'{"number": "1", "from": "someday"}', 400),
            (b'{"calls": []}', 400), (b'{"number": "not a number"}', 400),
            (b'{"calls": ["' + b"x" * 70_000 + b'"]}', 413),
            # One member twice: which was meant? Either reading erases the wrong calls.
            (b'{"number": "1", "number": "' + number.encode() + b'"}', 400),
        ]:  # fmt: skip
            refused = erasing.post(
                "/cdr/erasures", content=body, headers={"Content-Type": "application/json"}
            )
            assert refused.status_code == status, (body[:40], refused.text)
        assert service.get(reader, view="detailed", **day).json() == before
        assert erasing.get("/cdr/erasures").json() == []
        # The read token may not erase; the eraser may not read.
        assert_problem(client.post("/cdr/erasures", json={"number": number}), 403, "`erase`")
        assert_problem(erasing.get("/cdr/historik", params=day), 403, "`records`")
        done = erasing.post("/cdr/erasures", json={"number": number})
        assert done.status_code == 201, done.text
        erasure = done.json()
        assert erasure["calls"] == len(chosen)
        assert erasure["by"].startswith("token ") and erasure["selector"]["from"] is None
        secret = _secret(service.settings.database_url, service.name("erasing"))
        mac = hmac.new(secret, number.encode(), hashlib.sha256).digest()
        assert (
            erasure["selector"]["number"]
            == "hash:" + base64.b32encode(mac).decode().rstrip("=").lower()
        )
        assert number.encode() not in erasing.get("/cdr/erasures").content
        assert erasing.get("/cdr/erasures").json() == [erasure]
        after_view = service.get(reader, view="detailed", **day).json()
        assert after_view == [r for r in before if r["id"] not in chosen]
        # A follower of the feed erases them too, and ends equal to the detailed view.
        tombs = [
            r
            for r in client.get("/cdr/changes", params={"after": after, "limit": 10_000}).json()[
                "records"
            ]
        ]
        assert {t["id"] for t in tombs} == chosen & {r["id"] for r in before}
        assert all(t["deleted"] and t["reason"] == "erased" for t in tombs)
        copy, _ = _follow(client, after, copy)  # the copy made before, brought up to date
        assert sorted(copy.values(), key=lambda r: r["seq"]) == sorted(
            after_view, key=lambda r: r["seq"]
        )
        # Re-sent, the erased calls stay out (their events count as duplicates).
        resent = service.post([e for e in lines if e["call"] in chosen])
        assert resent.json()["accepted"] == 0
        assert service.get(reader, view="detailed", **day).json() == after_view
        # A new call of the number is a new call, kept.
        first = sorted(chosen)[0]
        fresh = [
            {**e, "call": "new-" + first, "id": "new-" + e["id"]}
            for e in lines
            if e["call"] == first
        ]
        assert service.post(fresh).json()["accepted"] == len(fresh)
        assert "new-" + first in {
            r["id"] for r in service.get(reader, view="detailed", **day).json()
        }
