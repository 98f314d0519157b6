"""Precise questions (query.md, issue 14): each call's outcome, filters where the records are
stored, the completeness watermark a poller follows, and one call's path. Over real HTTP."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from samtal.events import decode_batch
from samtal.simulate import TrafficSettings, event_lines
from tests.helpers import PRODUCT, VECTORS, Clock, event_line
from tests.helpers.databases import ENGINES, database_url
from tests.helpers.servers import Service, assert_problem, start_app

DAY = {"from": "2017-01-04", "to": "2017-01-04"}


def _get(service: Service, token: str, **params: Any) -> httpx.Response:
    with service.server.client(token) as client:
        return client.get("/cdr/historik", params=params)


# -- outcome ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vectors_outcomes_in_every_format(service: Service, vector: dict[str, Any]) -> None:
    token = service.org("v", vector["tz"])
    assert service.post(service.events(vector["events"], "v")).status_code == 200
    period = {"from": "2017-01-01", "to": "2017-12-31", "view": "detailed"}
    detailed = _get(service, token, **period).json()
    assert [r["outcome"] for r in detailed] == vector["outcomes"]
    assert [list(r)[-3:] for r in detailed] == [["version", "seq", "outcome"]] * len(detailed)
    rows = list(csv.reader(io.StringIO(_get(service, token, **period, format="csv").text)))
    assert rows[0][-1] == "outcome" and [row[-1] for row in rows[1:]] == vector["outcomes"]
    with service.server.client(token) as client:
        fed = client.get("/cdr/changes").json()["records"]
    assert sorted(r["outcome"] for r in fed) == sorted(vector["outcomes"])
    # The plain view is version 1's, byte for byte.
    assert _get(service, token, **period | {"view": "plain"}).content == orjson.dumps(
        vector["expected"]
    )


# -- filters ----------------------------------------------------------------------------------


@pytest.fixture
def busy_day(service: Service) -> tuple[Service, str, list[dict[str, Any]]]:
    """A simulated working day of one organisation, and every record of it (detailed)."""
    token = service.org("day")
    traffic = TrafficSettings(orgs=1, days=1, seed=21, start=date(2017, 1, 4), calls_per_day=600)
    lines = service.events([orjson.loads(line) for line in event_lines(traffic)], "day")
    for start in range(0, len(lines), 2000):
        assert service.post(lines[start : start + 2000]).status_code == 200
    everything = _get(service, token, **DAY, view="detailed").json()
    assert len(everything) > 500
    return service, token, everything


def _seconds(record: dict[str, Any]) -> float:
    start, stop = (datetime.fromisoformat(record[f]) for f in ("start", "stop"))
    return (stop - start).total_seconds()


def _matches(value: str | None, wanted: str) -> bool:
    if wanted == "":
        return value is None
    if wanted.endswith("*"):
        return value is not None and value.startswith(wanted[:-1])
    return value == wanted


def _expected(records: list[dict[str, Any]], params: list[tuple[str, str]]) -> list[str]:
    """The ids of the records that the filters hold for, worked out here from the whole day."""
    wanted: dict[str, list[str]] = {}
    for name, value in params:
        wanted.setdefault(name, []).append(value)

    def holds(record: dict[str, Any]) -> bool:
        for name, values in wanted.items():
            if name in ("callerNo", "receivingNo", "calleeNo"):
                ok = any(_matches(record[name], v) for v in values)
            elif name == "number":
                fields = ("callerNo", "receivingNo", "calleeNo")
                ok = any(_matches(record[f], v) for v in values for f in fields)
            elif name == "outcome":
                ok = record["outcome"] in values
            elif name == "minDuration":
                ok = _seconds(record) >= float(values[0])
            else:
                ok = _seconds(record) <= float(values[0])
            if not ok:
                return False
        return True

    return [r["id"] for r in records if holds(r)]


def test_each_filter_alone_and_combined(
    busy_day: tuple[Service, str, list[dict[str, Any]]],
) -> None:
    service, token, everything = busy_day
    group = next(r["receivingNo"] for r in everything if r["receivingNo"])
    caller = next(r["callerNo"] for r in everything if r["callerNo"])
    callee = next(r["calleeNo"] for r in everything if r["calleeNo"])
    cases: list[list[tuple[str, str]]] = [
        [("receivingNo", group)],
        [("receivingNo", "")],  # null: no response group
        [("receivingNo", group), ("receivingNo", "")],  # either
        [("callerNo", caller)],
        [("callerNo", caller[:5] + "*")],
        [("calleeNo", callee)],
        [("calleeNo", "*")],  # any, not null
        [("number", callee)],
        [("number", group)],
        [("outcome", "abandoned")],
        [("outcome", "answered"), ("outcome", "voicemail")],
        [("minDuration", "60")],
        [("maxDuration", "10.5")],
        [("minDuration", "5"), ("maxDuration", "120")],
        [("receivingNo", group), ("outcome", "abandoned")],
        [("receivingNo", group), ("outcome", "answered"), ("minDuration", "30")],
        [("number", caller[:4] + "*"), ("outcome", "rejected"), ("outcome", "unanswered")],
    ]
    for params in cases:
        expected = _expected(everything, params)
        query = [*DAY.items(), ("view", "detailed"), *params]
        with service.server.client(token) as client:
            answer = client.get("/cdr/historik", params=query)
        assert answer.status_code == 200, (params, answer.text)
        got = [r["id"] for r in answer.json()]
        assert got == expected, params  # the same order as unfiltered
    assert sum(1 for _ in _expected(everything, [("outcome", "abandoned")])) > 0
    # Every view and format filters alike.
    query = [*DAY.items(), ("receivingNo", group), ("outcome", "abandoned")]
    with service.server.client(token) as client:
        plain = client.get("/cdr/historik", params=query).json()
        ndjson = client.get("/cdr/historik", params=[*query, ("format", "ndjson")]).text
        rows = list(
            csv.reader(
                io.StringIO(client.get("/cdr/historik", params=[*query, ("format", "csv")]).text)
            )
        )
    assert (
        len(plain)
        == len(ndjson.splitlines())
        == len(rows) - 1
        == len(_expected(everything, query[2:]))
    )


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("outcome=lost", "`outcome` 'lost' is not an outcome"),
        ("minDuration=abc", "`minDuration` 'abc' is not a duration"),
        ("maxDuration=-1", "`maxDuration` '-1' is not a duration"),
        ("minDuration=1e3", "`minDuration` '1e3' is not a duration"),
        ("minDuration=20&maxDuration=10", "`minDuration` (20 s) is greater than `maxDuration`"),
        ("callerNo=%2B46*72", "`callerNo` '+46*72' has a `*` before its end"),
        ("number=**", "`number` '**' has a `*` before its end"),
        ("minDuration=1&minDuration=2", "`minDuration` is given 2 times"),
        ("receivingNo=" + "9" * 70, "`receivingNo` is 70 characters long"),
    ],
)
def test_bad_filters_are_400s_naming_them(
    product: tuple[Service, str], query: str, said: str
) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"/cdr/historik?from=2017-01-04&{query}"), 400, said)


def test_the_feed_takes_no_filters(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get("/cdr/changes?outcome=answered"), 400, "takes no filters")


# -- one call ---------------------------------------------------------------------------------


def test_one_call_and_its_path(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        detailed = client.get("/cdr/historik?from=2017-01-04&view=detailed").json()
        for record in detailed:
            answer = client.get(f"/cdr/calls/{record['id']}")
            assert answer.status_code == 200
            call = answer.json()
            assert list(call) == [*record, "path"]
            assert {k: call[k] for k in record} == record
            path = call["path"]
            sent = [e for e in PRODUCT["events"] if e["call"] == record["id"]]
            assert [(step["type"], step["number"]) for step in path] == [
                (e["type"], e.get("number"))
                for e in sorted(sent, key=lambda e: (e["at"], e["seq"]))
            ]
            assert path[0]["type"] == "started" and path[0]["dialed"] == sent[0]["dialed"]
            assert list(path[0]) == ["at", "type", "party", "number", "dialed", "stops"]
            stops = [step for step in path if step["stops"]]
            assert len(stops) == 1 and stops[0]["at"] == record["stop"]
            entered = [step for step in path if step["type"] == "entered"]
            assert all(list(step)[-2:] == ["kind", "stops"] for step in entered)
        assert_problem(client.get("/cdr/calls/no-such-call"), 404, "no call 'no-such-call'")
    other = service.org("other")
    with service.server.client(other) as client:  # another organisation's: not found
        assert client.get(f"/cdr/calls/{detailed[0]['id']}").status_code == 404


@pytest.mark.parametrize("call_id", ["sip/trunk-1/4711", "a?b#c", "50%25", "x/../y", "/", " "])
def test_any_call_id_is_found_by_its_id_percent_encoded(service: Service, call_id: str) -> None:
    # events.md lets a call id hold any character but a control one; a `/` (decoded from its
    # %2F before routing) made the path another resource: "no such resource", never the call.
    token = service.org("acme")
    sent = [
        {**e, "call": call_id, "id": f"{call_id}.{e['id']}"}
        for e in PRODUCT["events"]
        if e["call"] == "c-622"
    ]
    assert service.post(service.events(sent, "acme")).json()["accepted"] == len(sent)
    with service.server.client(token) as client:
        answer = client.get(f"/cdr/calls/{quote(call_id, safe='')}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == call_id
        assert_problem(client.get(f"/cdr/calls/{quote(call_id + '/', safe='')}"), 404, "no call")


def test_a_call_in_progress_has_no_path_yet(service: Service) -> None:
    token = service.org("acme")
    started = [e for e in PRODUCT["events"] if e["call"] == "c-622"][:3]
    service.post(service.events(started, "acme"))
    with service.server.client(token) as client:
        assert client.get("/cdr/calls/c-622").status_code == 404


# -- the completeness watermark ---------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def settling(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A server whose calls settle 60 s after their last event, its clock in our hands."""
    for url in database_url(request.param, tmp_path):
        clock = Clock(1_483_527_600_000_000)  # 2017-01-04T12:00+01:00
        server, store, config = start_app(url, clock, settle_seconds=60, rate_limit="off")
        with server:
            ingest = store.create_token("ingest", org=None, now=clock())[1]
            yield Service(server, store, clock, config, ingest).tenant()
        store.close()


def _mark(service: Service, token: str) -> str:
    answer = _get(service, token, **DAY)
    assert answer.status_code == 200
    return answer.headers["samtal-complete-through"]


def test_an_open_call_holds_the_watermark_back(settling: Service) -> None:
    service = settling
    token = service.org("acme")
    settle = lambda: service.store.settle(now=service.clock(), settle=60_000_000)  # noqa: E731
    assert _mark(service, token) == "2017-01-04T11:59:00.000+01:00"  # nothing open: now - 60 s
    product = service.events(PRODUCT["events"], "acme")
    service.clock.advance(4 * 3600 + 20 * 60)  # 16:20
    service.post(product)  # the three calls of 16:16, received now
    service.clock.advance(30)
    settle()
    assert _mark(service, token) == "2017-01-04T16:16:03.004+01:00"  # not settled: 30 s
    service.clock.advance(31)
    settle()
    assert _mark(service, token) == "2017-01-04T16:20:01.000+01:00"  # settled: now - 60 s
    # A call that started and has not ended holds it back, however long.
    opened = {**product[0], "id": "o-1", "call": "open", "at": "2017-01-04T16:30:00.000+01:00"}
    service.post([opened])
    service.clock.advance(3600)  # 17:21:01
    settle()
    assert _mark(service, token) == "2017-01-04T16:30:00.000+01:00"
    ended = {"id": "o-2", "org": opened["org"], "call": "open", "type": "ended",
             "at": "2017-01-04T16:31:00.000+01:00"}  # fmt: skip
    service.post([ended])
    service.clock.advance(30)
    settle()
    assert _mark(service, token) == "2017-01-04T16:30:00.000+01:00"  # ended, not yet settled
    service.clock.advance(31)
    settle()
    assert _mark(service, token) == "2017-01-04T17:21:02.000+01:00"
    with service.server.client(token) as client:
        assert client.get("/cdr/changes").json()["completeThrough"] == (
            "2017-01-04T17:21:02.000+01:00"
        )


@pytest.mark.slow
def test_a_five_minute_poller_that_follows_the_watermark_misses_nothing(settling: Service) -> None:
    """The product description's customer: every five minutes, ask from the last answer's
    Samtal-Complete-Through. Calls start and stop across its polls; events come late and out
    of order (but within the settle time); at the end its copy is the whole day's records."""
    service = settling
    token = service.org("acme")
    traffic = TrafficSettings(
        orgs=1, days=1, seed=8, start=date(2017, 1, 4), calls_per_day=300, disorder=0.05
    )
    events = decode_batch(list(event_lines(traffic))).events
    rng = random.Random(8)
    arrive = sorted(events, key=lambda e: e.instant + rng.randint(0, 20_000_000))  # up to 20 s
    service.clock.now = events[0].instant - 1
    copy: dict[str, dict[str, Any]] = {}
    mark = "2017-01-04"
    polls, sent = 0, 0
    end = max(e.instant for e in events) + 3600_000_000
    while service.clock.now < end:
        service.clock.advance(300)
        due = [e for e in arrive[sent:] if e.instant <= service.clock.now - 20_000_000]
        if due:
            lines = [orjson.loads(event_line(e)) for e in due]
            assert service.post(service.events(lines, "acme")).status_code == 200
            sent += len(due)
        service.store.settle(now=service.clock(), settle=60_000_000)
        answer = _get(service, token, **{"from": mark, "view": "detailed"})
        assert answer.status_code == 200, answer.text
        for record in answer.json():
            copy[record["id"]] = record
        new_mark = answer.headers["samtal-complete-through"]
        assert datetime.fromisoformat(new_mark) >= datetime.fromisoformat(
            mark if "T" in mark else mark + "T00:00:00+01:00"
        )  # it never moves back
        mark = new_mark
        polls += 1
    assert sent == len(arrive) and polls > 100
    whole = _get(service, token, **DAY, view="detailed").json()
    assert len(whole) > 250
    assert sorted(copy) == sorted(r["id"] for r in whole)
    assert {r["id"]: r for r in whole} == copy
