"""The HTTP API end to end: a real server on an ephemeral port, a real database, real HTTP."""

from __future__ import annotations

import csv
import inspect
import io
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from samtal.api import _formats, calls, changes, create_app, erasures, events, history, stats
from samtal.api._params import COMPLETE_THROUGH
from samtal.records import FIELDS
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from tests.helpers import PRODUCT, T0, VECTORS, Clock, in_org
from tests.helpers.servers import Server, Service, assert_problem, start_app

HOUR = 3600.0


# -- the vectors, end to end ------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vector_over_http(service: Service, vector: dict[str, Any]) -> None:
    org = vector["name"]
    token = service.org(org, vector["tz"])
    posted = service.post(service.events(vector["events"], org))
    assert posted.status_code == 200, posted.text
    distinct = len({e["id"] for e in vector["events"]})
    assert posted.json() == {
        "accepted": distinct,
        "duplicates": len(vector["events"]) - distinct,
        "rejected": [],
    }
    got = service.get(token, **{"from": "2017-01-01", "to": "2017-12-31"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    # Byte for byte: the same values, the same field order, compact.
    assert got.content == orjson.dumps(vector["expected"])


# -- periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("from=2017-01-04&to=2017-01-04", 3),
        ("from=2017-01-04%2016:16&to=2017-01-04%2016:16", 3),
        ("from=2017-01-04+16:16:04&to=2017-01-04T16:16:04", 1),
        ("from=2017-01-04T16:16:03.004&to=2017-01-04%2016:16:03.004", 2),
        ("from=2017-01-04T16:16:03.0041&to=2017-01-04T16:17", 1),
        ("from=2017-01-04T15:16:03Z&to=2017-01-04T16:16:03%2B01:00", 2),
        ("from=2017-01-04T10:16:04-05:00&to=2017-01-05", 1),
        ("from=2017-01-03&to=2017-01-03", 0),
    ],
)
def test_period_forms(product: tuple[Service, str], query: str, count: int) -> None:
    service, token = product
    with service.server.client(token) as client:
        response = client.get(f"/cdr/historik?{query}")
    assert response.status_code == 200, response.text
    assert len(response.json()) == count


@pytest.mark.parametrize(
    "query",
    [
        "to=2017-01-04",
        "from=",
        "from=2017-01-04%2024:00",
        "from=2017-01-04%2008:00:60",
        "from=2017-02-30",
        "from=2017-01-04Z",
        "from=2017-01-04T08:00+01:00",
        "from=2017-01-05&to=2017-01-04",
        "from=04.01.2017",
        "from=2017-01-04%2008:00:00.1234567",
    ],
)
def test_rejected_periods(product: tuple[Service, str], query: str) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"/cdr/historik?{query}"), 400)


def test_a_future_from_without_to(product: tuple[Service, str]) -> None:
    service, token = product
    assert_problem(service.get(token, **{"from": "2017-03-02"}), 400, "in the future")
    assert service.get(token, **{"from": "2017-01-04"}).status_code == 200  # to = now


def test_daylight_saving_day(service: Service) -> None:
    vector = next(v for v in VECTORS if v["name"] == "daylight-saving-change")
    token = service.org("dst")
    service.post(service.events(vector["events"], "dst"))
    assert (
        service.get(token, **{"from": "2017-03-26", "to": "2017-03-26"}).json()
        == vector["expected"]
    )
    # 01:59 local is the last minute before the clocks jump: the call starts in it.
    assert (
        len(service.get(token, **{"from": "2017-03-26 01:59", "to": "2017-03-26 01:59"}).json())
        == 1
    )


# -- errors, credentials, tenants -------------------------------------------------------------


def test_credentials(product: tuple[Service, str]) -> None:
    service, token = product
    params = {"from": "2017-01-04"}
    for bad in (None, "nonsense"):
        response = service.get(bad, **params)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    with service.server.client() as client:
        response = client.get(
            "/cdr/historik", params=params, headers={"Authorization": "Basic dXNlcjpwdw=="}
        )
        assert_problem(response, 401)
    assert_problem(service.get(service.ingest, **params), 403, "read token")
    with service.server.client(token) as client:
        assert_problem(client.post("/events", content=b""), 403, "ingest token")
    token_id = next(t.id for t in service.store.tokens() if t.org == service.name("acme"))
    wait_for(
        lambda: (
            next(t for t in service.store.tokens() if t.id == token_id).last_used == service.clock()
        )
    )  # its use was noted
    service.store.revoke_token(token_id, now=service.clock())
    assert_problem(service.get(token, **params), 401, "revoked")


def test_tenants_see_only_their_own(service: Service) -> None:
    acme, bolag = service.org("acme"), service.org("bolag")
    service.post(service.events(PRODUCT["events"], "acme"))
    other = next(v for v in VECTORS if v["name"] == "direct-answered")
    service.post(service.events(other["events"], "bolag"))
    period = {"from": "2017-01-01", "to": "2017-12-31"}
    assert service.get(acme, **period).json() == PRODUCT["expected"]
    assert service.get(bolag, **period).json() == other["expected"]


def test_a_partial_batch(service: Service) -> None:
    token = service.org("acme")
    events = service.events(PRODUCT["events"], "acme")
    body = "\n".join(
        [
            json.dumps(events[0]),
            "not json",
            json.dumps({**events[1], "type": "rang"}),
            *(json.dumps(e) for e in events[1:]),
            json.dumps({**events[2], "org": service.name("acme2")}),
            "",
        ]
    ).encode()
    with service.server.client(service.ingest) as client:
        response = client.post(
            "/events", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert response.status_code == 200
    report = response.json()
    assert report["accepted"] == 17 and report["duplicates"] == 0
    assert report["rejected"] == [
        {"line": 2, "id": None, "reason": report["rejected"][0]["reason"]},
        {"line": 3, "id": "c-622-1", "reason": report["rejected"][1]["reason"]},
        {"line": 20, "id": "c-622-2", "reason": f"unknown organisation '{service.name('acme2')}'"},
    ]
    assert report["rejected"][0]["reason"].startswith("not valid JSON")
    assert report["rejected"][1]["reason"].startswith("`type` 'rang' is unknown")
    assert service.get(token, **{"from": "2017-01-04"}).json() == PRODUCT["expected"]


def test_a_json_array_body(service: Service) -> None:
    token = service.org("acme")
    events = service.events(PRODUCT["events"], "acme")
    with service.server.client(service.ingest) as client:
        response = client.post(
            "/events",
            content=orjson.dumps([*events[:5], {"id": 1}]),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert response.json()["rejected"] == [
            {"line": 6, "id": None, "reason": "`id` must be a string, not a number"}
        ]
        assert (
            client.post(
                "/events",
                content=orjson.dumps(events[5:]),
                headers={"Content-Type": "application/json"},
            ).status_code
            == 200
        )
    assert service.get(token, **{"from": "2017-01-04"}).json() == PRODUCT["expected"]


def test_redelivery_changes_nothing(product: tuple[Service, str]) -> None:
    service, token = product
    before = service.get(token, **{"from": "2017-01-04"}).content
    again = service.post(service.events(PRODUCT["events"], "acme"))
    assert again.json() == {"accepted": 0, "duplicates": 17, "rejected": []}
    assert service.get(token, **{"from": "2017-01-04"}).content == before
    assert len(service.store.changes(org=service.name("acme"), after=0, limit=100).changes) == 3


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"x", {"Content-Type": "text/plain"}, 415),
        (b"{}", {"Content-Type": "application/xml"}, 415),
        (b'{"a": 1}', {"Content-Type": "application/json"}, 400),
        (b"<html>hello</html>", {"Content-Type": "application/x-ndjson"}, 400),
        (b"\xff\xfe\x00", {}, 400),
        (b"", {}, 400),  # an empty body is not a delivery: the body is required
        (b"\n \r\n", {"Content-Type": "application/x-ndjson"}, 400),
    ],
)
def test_bodies_that_are_refused_whole(
    service: Service, body: bytes, headers: dict[str, str], status: int
) -> None:
    with service.server.client(service.ingest) as client:
        assert_problem(client.post("/events", content=body, headers=headers), status)


def test_bodies_over_the_limit(store_url: str) -> None:
    clock = Clock()
    server, store, _ = start_app(store_url, clock, max_body_bytes=2000)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    body = "".join(json.dumps(e) + "\n" for e in in_org(PRODUCT["events"], "acme")).encode()
    assert len(body) > 2000
    with server, server.client(ingest) as client:
        assert_problem(client.post("/events", content=body), 413, "2,000 bytes")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            yield from (body[i : i + 500] for i in range(0, len(body), 500))

        assert_problem(client.post("/events", content=chunks()), 413)
        small = b"".join(body.splitlines(keepends=True)[:3])  # no call is complete in these
        assert client.post("/events", content=small).json()["accepted"] == 3
    assert store.changes(org="acme", after=0, limit=10).changes == []  # the 413s stored nothing
    store.close()


def test_unknown_paths_and_methods_are_problems(service: Service) -> None:
    with service.server.client() as client:
        assert_problem(client.get("/nope"), 404)
        refused = client.delete("/cdr/historik")
        assert_problem(refused, 405, "this endpoint takes GET, not DELETE: see /docs")
        assert refused.headers["allow"] == "GET"


def test_head_answers_as_get_without_the_body(product: tuple[Service, str]) -> None:
    """RFC 9110: HEAD wherever GET is served; the same status and headers, no body."""
    service, token = product
    call = service.get(token, view="detailed", **{"from": "2017-01-04"}).json()[0]["id"]
    volatile = {"date", "content-length", "ratelimit", "transfer-encoding"}
    with service.server.client(token) as client, service.server.client() as anonymous:
        for who, path, params in (
            (client, "/cdr/historik", {"from": "2017-01-04"}),
            (client, "/cdr/historik", {"from": "2017-01-04", "format": "csv"}),
            (client, "/cdr/historik", {"from": "someday"}),
            (client, "/cdr/stats", {"from": "2017-01-04"}),
            (client, "/cdr/changes", {}),
            (client, f"/cdr/calls/{call}", {}),
            (client, "/cdr/calls/no-such-call", {}),
            (anonymous, "/cdr/historik", {"from": "2017-01-04"}),
            (anonymous, "/healthz", {}),
            (anonymous, "/openapi.json", {}),
        ):
            got, head = who.get(path, params=params), who.head(path, params=params)
            assert got.content, path
            assert (head.status_code, head.content) == (got.status_code, b""), path
            assert {k: v for k, v in head.headers.items() if k not in volatile} == {
                k: v for k, v in got.headers.items() if k not in volatile
            }, path
        # A path with no GET: its 405 names HEAD.
        refused = anonymous.head("/events")
        assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
        # The problem+json body is not sent to a HEAD; a GET of it shows what it says.
        assert_problem(anonymous.get("/events"), 405, "this endpoint takes POST, not GET")


# -- lifetime: restarts, retention, idle calls ------------------------------------------------


def test_data_survives_a_restart(store_url: str) -> None:
    clock = Clock()
    server, store, config = start_app(store_url, clock)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    read = store.create_token("read", org="acme", now=clock())[1]
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    with server, server.client(ingest) as client:
        body = "".join(json.dumps(e) + "\n" for e in in_org(PRODUCT["events"], "acme"))
        assert client.post("/events", content=body).status_code == 200
    store.close()
    reopened = open_store(config.database_url)  # a new process would do just this
    with (
        Server(create_app(config, store=reopened, clock=clock)) as again,
        again.client(read) as client,
    ):
        assert (
            client.get("/cdr/historik", params={"from": "2017-01-04"}).json() == PRODUCT["expected"]
        )
    reopened.close()


def wait_for(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the server's duties did not happen in time")
        time.sleep(0.02)


def test_the_server_closes_idle_calls(store_url: str) -> None:
    vector = next(v for v in VECTORS if v["name"] == "no-record-yet")
    clock = Clock(T0 + 14 * 24 * 3600 * 1_000_000)  # 2017-03-15: after the calls of 03-08
    server, store, _ = start_app(store_url, clock, duty_interval_seconds=0.02)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    read = store.create_token("read", org="acme", now=clock())[1]
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    with server, server.client(ingest) as client:
        client.post("/events", content="".join(json.dumps(e) + "\n" for e in vector["events"]))
        with server.client(read) as reader:

            def records() -> list[Any]:
                return reader.get("/cdr/historik", params={"from": "2017-03-08"}).json()

            time.sleep(0.1)
            assert records() == []  # no stop yet, and not idle long enough
            clock.advance(12 * HOUR)
            wait_for(lambda: records() != [])
            assert [(r["start"], r["stop"]) for r in records()] == [
                ("2017-03-08T09:00:00.000+01:00", "2017-03-08T09:00:07.000+01:00")
            ]
    store.close()


def test_the_server_purges_expired_calls(store_url: str) -> None:
    clock = Clock(T0)  # 2017-03-01: the product description's calls are 56 days old
    server, store, _ = start_app(store_url, clock, duty_interval_seconds=0.02, retention_days=92)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    read = store.create_token("read", org="acme", now=clock())[1]
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    with server, server.client(ingest) as client:
        body = "".join(json.dumps(e) + "\n" for e in in_org(PRODUCT["events"], "acme"))
        assert client.post("/events", content=body).json()["accepted"] == 17
        with server.client(read) as reader:
            assert len(reader.get("/cdr/historik", params={"from": "2017-01-04"}).json()) == 3
            assert_problem(
                reader.get("/cdr/historik", params={"from": "2016-11-28"}),
                400,
                "2016-11-29T00:00:00.000+01:00",
            )
            clock.advance(40 * 24 * HOUR)  # now 2017-04-10: the window starts 2017-01-08
            wait_for(lambda: store.changes(org="acme", after=0, limit=10).changes == [])
            response = reader.get("/cdr/historik", params={"from": "2017-01-04"})
            assert_problem(response, 400, "2017-01-08T00:00:00.000+01:00")
    store.close()


# -- the API describes itself -----------------------------------------------------------------


def test_openapi_and_docs(service: Service) -> None:
    with service.server.client() as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}
    history = spec["paths"]["/cdr/historik"]["get"]
    assert {p["name"] for p in history["parameters"]} == {
        "from",
        "to",
        "view",
        "format",
        *("callerNo", "receivingNo", "calleeNo", "number", "outcome"),
        *("minDuration", "maxDuration"),
    }
    assert "Samtal-Complete-Through" in history["responses"]["200"]["headers"]
    assert "/cdr/calls/{id}" in spec["paths"]
    assert {"200", "400", "401", "403", "406"} <= set(history["responses"])
    assert set(history["responses"]["200"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "text/csv",
    }
    assert "application/problem+json" in history["responses"]["400"]["content"]
    post = spec["paths"]["/events"]["post"]
    assert {"200", "400", "401", "403", "413", "415"} <= set(post["responses"])
    assert set(post["requestBody"]["content"]) == {"application/x-ndjson", "application/json"}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# -- formats (spec/changes.md) ----------------------------------------------------------------


@pytest.mark.parametrize("view", ["plain", "detailed"])
def test_ndjson_and_csv_hold_exactly_the_json_values(
    product: tuple[Service, str], view: str
) -> None:
    service, token = product
    period = {"from": "2017-01-04", "to": "2017-01-04", "view": view}
    with service.server.client(token) as client:
        as_json = client.get("/cdr/historik", params=period).json()
        ndjson = client.get("/cdr/historik", params={**period, "format": "ndjson"})
        as_csv = client.get("/cdr/historik", params={**period, "format": "csv"})
    fields = list(FIELDS) if view == "plain" else ["id", *FIELDS, "version", "seq", "outcome"]
    assert [list(r) for r in as_json] == [fields] * 3
    assert [{f: r[f] for f in FIELDS} for r in as_json] == PRODUCT["expected"]
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert ndjson.content.endswith(b"\n")
    assert [json.loads(line) for line in ndjson.content.splitlines()] == as_json
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.content.count(b"\r\n") == len(as_json) + 1
    rows = list(csv.reader(io.StringIO(as_csv.text, newline="")))
    assert rows[0] == fields
    assert rows[1:] == [["" if r[f] is None else str(r[f]) for f in fields] for r in as_json]
    assert any(value == "" for row in rows[1:] for value in row)  # nulls are empty fields


def test_an_unknown_view_is_a_400(product: tuple[Service, str]) -> None:
    service, token = product
    response = service.get(token, **{"from": "2017-01-04", "view": "full"})
    assert_problem(response, 400, "`view`")


@pytest.mark.parametrize(
    ("accept", "query", "status", "media"),
    [
        ("text/csv", "", 200, "text/csv; charset=utf-8"),
        ("application/x-ndjson", "", 200, "application/x-ndjson"),
        ("text/*", "", 200, "text/csv; charset=utf-8"),
        ("text/html, */*;q=0.5", "", 200, "application/json"),
        ("text/csv;q=0, */*", "", 200, "application/json"),
        ("application/xml", "", 406, "application/problem+json"),
        ("application/xml", "&format=csv", 200, "text/csv; charset=utf-8"),
        ("", "&format=xml", 400, "application/problem+json"),
    ],
)
def test_the_format_is_negotiated(
    product: tuple[Service, str], accept: str, query: str, status: int, media: str
) -> None:
    service, token = product
    with service.server.client(token) as client:
        response = client.get(
            f"/cdr/historik?from=2017-01-04{query}", headers={"Accept": accept} if accept else {}
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == media


def test_a_short_answer_goes_in_one_piece_and_a_long_one_streams(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer of few records is sent whole, with its length; a long one streams from its
    first page. Both are the same bytes, in every format, as the stream would have been."""
    token = service.org("day")
    traffic = TrafficSettings(orgs=1, days=1, seed=5, start=date(2017, 1, 4), calls_per_day=1500)
    lines = service.events([orjson.loads(line) for line in event_lines(traffic)], "day")
    for start in range(0, len(lines), 2000):
        assert service.post(lines[start : start + 2000]).status_code == 200
    periods = {
        "a day": {"from": "2017-01-04", "to": "2017-01-04"},
        "an hour": {"from": "2017-01-04 10:00", "to": "2017-01-04 10:59"},
        "nothing": {"from": "2017-01-01", "to": "2017-01-01"},
    }

    def answers() -> dict[tuple[str, str], httpx.Response]:
        with service.server.client(token) as client:
            return {
                (name, format_): client.get("/cdr/historik", params={**period, "format": format_})
                for name, period in periods.items()
                for format_ in ("json", "ndjson", "csv")
            }

    got, under = answers(), _formats.ONE_PIECE_UNDER
    monkeypatch.setattr(_formats, "ONE_PIECE_UNDER", 0)  # every answer streamed
    streamed = answers()
    assert len(got["a day", "json"].json()) > under
    assert 0 < len(got["an hour", "json"].json()) < under
    assert got["nothing", "json"].json() == []
    for (name, format_), answer in got.items():
        assert answer.status_code == 200 and answer.content == streamed[name, format_].content
        whole = name != "a day"  # an empty answer is always whole
        assert ("content-length" in answer.headers) is whole, (name, format_)
        assert ("content-length" in streamed[name, format_].headers) is (name == "nothing")
        assert answer.headers[COMPLETE_THROUGH] == streamed[name, format_].headers[COMPLETE_THROUGH]


def test_no_dependency_or_endpoint_runs_on_a_worker_thread(tmp_path: Path) -> None:
    """FastAPI runs a plain function (a dependency or an endpoint) on a worker thread, at every
    request: three hops a feed request, which with 1,000 organisations' followers took 8% of the
    event loop's samples for a lookup of the app's state and two checks of the query. Every
    one of the app's is `async` (and does not block)."""
    store = open_store(f"sqlite:///{tmp_path}/app.db")
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/app.db"), store=store)

    def calls_of(dependant: Dependant) -> Iterator[Any]:
        yield dependant.call
        for below in dependant.dependencies:
            yield from calls_of(below)

    # The app's own routes, and its routers' (which FastAPI keeps apart once included).
    routers = [
        app,
        *(module.router for module in (calls, changes, erasures, events, history, stats)),
    ]
    found = {
        call
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for call in calls_of(route.dependant)
    } | {depends.dependency for router in routers[1:] for depends in router.dependencies}
    assert len(found) > 20
    on_threads = [
        getattr(call, "__qualname__", repr(call))
        for call in found
        if not inspect.iscoroutinefunction(call)
        and not inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
    ]
    assert on_threads == []
    store.close()
