"""What a second hostile pass sent the API (issue 13): poisoned text values, times far from
the server's clock, made-up methods, floods of bad tokens, and errors said in our words."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from samtal.settings import Settings
from samtal.store import MAX_CALL_EVENTS, open_store
from tests.helpers import PRODUCT, T0, Clock
from tests.helpers.servers import Service, assert_problem, start_app


def test_text_values_that_no_copy_could_hold_are_rejected_alone(service: Service) -> None:
    token = service.org("acme")
    good = service.events(PRODUCT["events"], "acme")
    started = next(e for e in good if e["type"] == "started")
    poisoned = [
        {**started, "id": "p\u0000-1", "call": "p-1"},
        {**started, "id": "p-2", "call": "p\u0007-2"},
        {**started, "id": "p-3", "call": "p-3", "number": "+46\u00007"},
        {**started, "id": "p-4", "call": "p-4", "dialed": "0\u00008"},
        {**started, "id": "p-5", "call": "p-5", "number": "4" * 303},
        {**started, "id": "p-6", "call": "p-6", "number": "+46 72"},
        {**started, "id": "p-7", "call": "p-7", "number": "=cmd()"},
    ]
    answer = service.post([*good[:4], *poisoned, *good[4:]])
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["accepted"] == len(good)
    rejected = {r["line"]: r["reason"] for r in report["rejected"]}
    assert sorted(rejected) == list(range(5, 12))  # each poisoned line, by its number
    assert rejected[5].startswith("`id` holds a control character (U+0000)")
    assert rejected[6].startswith("`call` holds a control character (U+0007)")
    assert rejected[7].startswith("`number` '+46\\x007' is not a number")
    assert rejected[8].startswith("`dialed` '0\\x008' is not a number")
    assert rejected[9] == "`number` is 303 characters long: a number has at most 64"
    assert "is not a number" in rejected[10] and "is not a number" in rejected[11]
    assert service.get(token, **{"from": "2017-01-04"}).json() == PRODUCT["expected"]


def test_an_unpaired_surrogate_is_said_so(service: Service) -> None:
    service.org("acme")
    org = service.name("acme").encode()
    good = (
        b'{"id":"s-0","org":"' + org + b'","call":"s","at":"2017-01-04T10:00:00Z","type":"ended"}'
    )
    line = b'{"id":"s-1","org":"' + org + b'","call":"s\\ud800"}'
    with service.server.client(service.ingest) as client:
        report = client.post("/events", content=line + b"\n" + good).json()
    assert report["rejected"] == [
        {
            "line": 1,
            "id": None,
            "reason": (
                "not valid JSON: it holds an unpaired surrogate (\\ud800): send valid Unicode"
            ),
        }
    ]


def test_events_past_the_most_a_call_keeps_are_rejected_by_line(service: Service) -> None:
    """A switch that loops on a call that never ends: past MAX_CALL_EVENTS the call's new events
    are rejected, each with its line and why, and the batch's other events are stored."""
    token = service.org("acme")
    loop = {"org": service.name("acme"), "call": "loop", "at": "2017-01-04T10:00:00.000+01:00"}
    events = [{**loop, "id": "l-0", "seq": 0, "type": "started", "party": "caller",
               "number": "+4670111", "dialed": "622"}]  # fmt: skip
    events += [
        {**loop, "id": f"l-{n}", "seq": n, "type": "ringing", "party": "user", "number": "+4670122"}
        for n in range(1, MAX_CALL_EVENTS + 2)
    ]
    good = service.events(PRODUCT["events"], "acme")
    with service.server.client(service.ingest) as client:
        answer = client.post("/events", content="\n".join(json.dumps(e) for e in events[:-2]))
        assert answer.json()["accepted"] == MAX_CALL_EVENTS
        late = [events[-2], good[0], events[-1], *good[1:]]
        report = client.post("/events", content="\n".join(json.dumps(e) for e in late)).json()
    assert report["accepted"] == len(good)
    assert [(r["line"], r["id"]) for r in report["rejected"]] == [(1, "l-10000"), (3, "l-10001")]
    assert "'loop' holds 10,000 events already" in report["rejected"][0]["reason"]
    assert service.get(token, **{"from": "2017-01-04"}).json() == PRODUCT["expected"]


def test_a_line_that_is_not_utf8_is_rejected_alone(service: Service) -> None:
    """A byte that is not UTF-8 spoils its line, not the batch: the line is rejected with its
    number and the rest stored, as `samtal import` and JetStream take such a stream. Only a body
    with no line of JSON at all, or an array (one document), is refused whole."""
    token = service.org("acme")
    good = service.events(PRODUCT["events"], "acme")
    lines = [json.dumps(e).encode() for e in good]
    spoiled = (
        json.dumps({**good[0], "id": "u-1", "call": "u-1"}).encode().replace(b"u-1", b"u\xff1")
    )
    with service.server.client(service.ingest) as client:
        answer = client.post("/events", content=b"\n".join([*lines[:2], spoiled, *lines[2:]]))
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["accepted"] == len(good)
        [rejected] = report["rejected"]
        assert rejected["line"] == 3 and rejected["id"] is None
        assert rejected["reason"].startswith("not UTF-8 text: byte 0xFF at column ")
        assert service.get(token, **{"from": "2017-01-04"}).json() == PRODUCT["expected"]
        for body, media in (
            ("\n".join(json.dumps(e) for e in good).encode("utf-16"), "application/x-ndjson"),
            (b"[" + spoiled + b"]", "application/json"),
        ):
            refused = client.post("/events", content=body, headers={"Content-Type": media})
            assert_problem(refused, 400, "the body is not UTF-8 text")
        # gzip sent without its header: said so, rather than "not UTF-8".
        packed = gzip.compress(b"\n".join(lines))
        undeclared = client.post("/events", content=packed)
        assert_problem(undeclared, 400, "the body is gzip", "`Content-Encoding: gzip`")


def test_times_far_from_the_servers_clock_are_rejected(tmp_path: object) -> None:
    """events.md, "Time bounds": not more than SAMTAL_MAX_FUTURE_SECONDS ahead, and not
    before the retention window (never when everything is kept)."""
    clock = Clock(T0)  # 2017-03-01T00:00Z
    server, store, _ = start_app(
        f"sqlite:///{tmp_path}/bounds.db", clock, retention_days=30, max_future_seconds=3600
    )
    store.add_org("acme", "Europe/Stockholm", now=clock())
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    base = {"org": "acme", "type": "ended"}
    lines = [
        {**base, "id": "ok", "call": "a", "at": "2017-02-20T10:00:00Z"},
        {**base, "id": "old", "call": "b", "at": "2017-01-20T10:00:00Z"},  # before the window
        {**base, "id": "soon", "call": "c", "at": "2017-03-01T00:59:59Z"},
        {**base, "id": "later", "call": "d", "at": "2017-03-01T01:00:01Z"},  # > an hour ahead
    ]
    with server, server.client(ingest) as client:
        body = "".join(json.dumps(line) + "\n" for line in lines)
        report = client.post("/events", content=body).json()
    store.close()
    assert report["accepted"] == 2
    reasons = {r["id"]: r["reason"] for r in report["rejected"]}
    assert reasons["old"] == (
        "`at` (2017-01-20T10:00:00Z) is before retention: its organisation keeps calls from "
        "2017-01-30T00:00:00.000+01:00 on (30 days)"
    )
    assert reasons["later"] == (
        "`at` (2017-03-01T01:00:01Z) is in the future: more than 3,600 s after the server's "
        "clock (2017-03-01T01:00:00.000+01:00)"
    )


def _method_labels(text: str) -> set[str]:
    return {
        sample.labels["method"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "method" in sample.labels
    }


def test_made_up_methods_do_not_grow_the_metrics(service: Service) -> None:
    with httpx.Client(base_url=service.server.url) as client:
        for n in range(50):
            client.request(f"MADEUP{n}", "/cdr/historik")
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {service.ingest}"})
    methods = _method_labels(scrape.text)
    assert "other" in methods
    assert not any(m.startswith("MADEUP") for m in methods)


def test_a_head_of_any_size_is_refused_early(service: Service) -> None:
    """One client sending a header without end is cut off after a few kB of it, and the
    server goes on answering: no request's head is kept whole whatever its size (uvicorn's
    httptools protocol kept a 50 MB header, and the memory it took)."""
    host, port = service.server.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: samtal\r\nX-Endless: ")
        with contextlib.suppress(OSError):  # refused: the server closed the connection
            while sent < 64 * 2**20:
                conn.sendall(b"a" * 2**16)
                sent += 2**16
        answer = b""
        with contextlib.suppress(OSError):
            answer = conn.recv(200)
    assert sent < 64 * 2**20, "the server took a 64 MB header"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
    assert httpx.get(service.server.url + "/healthz").status_code == 200


def test_a_head_that_does_not_come_closes_its_connection(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that connects and sends nothing, or half a head, or the first bytes of its
    next head on a kept-alive connection, is cut off once the head is late; uvicorn kept each
    such connection for ever (a thousand of them held the server's file descriptors). A
    head that comes in pieces within the time is answered."""
    from samtal.api import _transport

    monkeypatch.setattr(_transport, "HEAD_TIMEOUT_SECONDS", 1.0)
    host, port = service.server.url.removeprefix("http://").split(":")
    ask = b"GET /healthz HTTP/1.1\r\nHost: samtal\r\n\r\n"

    def closed_within(conn: socket.socket, seconds: float) -> bool:
        conn.settimeout(seconds)
        with contextlib.suppress(ConnectionResetError):
            return conn.recv(100) == b""
        return True

    for first in (b"", b"GET /healthz HTTP/1.1\r\nHost: sam"):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(first)
            assert closed_within(conn, 5)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(ask)
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += conn.recv(1000)
        conn.sendall(ask[:10])  # the next head, begun and never ended
        assert closed_within(conn, 5)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        for piece in (ask[:10], ask[10:25], ask[25:]):  # over 0.4 s: slow, not late
            conn.sendall(piece)
            time.sleep(0.2)
        assert conn.recv(1000).startswith(b"HTTP/1.1 200 OK")


def test_a_stalled_body_is_answered_408_and_lets_go_of_its_bytes(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose upload stops midway (a switch cut off, a half-open connection) held the
    bytes it had sent of the in-flight budget for as long as its connection lived, so that
    other batches were turned away (503) for hours. After BODY_IDLE_SECONDS without a byte it
    is answered 408, its connection closed, and its bytes let go."""
    from samtal.api import events

    monkeypatch.setattr(events, "BODY_IDLE_SECONDS", 1.0)
    server, store, _ = start_app(f"sqlite:///{tmp_path}/stall.db", Clock(), max_inflight_bytes=1000)
    store.add_org("acme", "Europe/Stockholm", now=T0)
    ingest = store.create_token("ingest", org=None, now=T0)[1]
    batch = "".join(json.dumps({**e, "org": "acme"}) + "\n" for e in PRODUCT["events"][:3])
    assert 1000 - 600 < len(batch) <= 1000  # alone it fits; beside the stalled 600, not
    with server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as stalled:
            stalled.sendall(
                b"POST /events HTTP/1.1\r\nHost: samtal\r\nContent-Type: application/x-ndjson"
                b"\r\nAuthorization: Bearer " + ingest.encode() + b"\r\nContent-Length: 5000"
                b"\r\n\r\n" + b"x" * 600
            )
            time.sleep(0.3)
            with server.client(ingest) as client:
                turned = client.post("/events", content=batch)
                assert turned.status_code == 503, turned.text  # the stalled body holds 600
                answer = b""
                while b"request-timeout" not in answer:
                    answer += stalled.recv(1000)
                assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
                assert b"connection: close" in answer.lower()
                taken = client.post("/events", content=batch)
                assert taken.status_code == 200, taken.text
    store.close()


def test_an_unexpected_error_closes_its_connection_and_the_next_request_is_answered(
    tmp_path: object,
) -> None:
    """A request that meets a bug gets a 500 in problem+json, and uvicorn then closes the
    connection: the 500 says so, so that a client keeping the connection alive asks its next
    request on a new one. (It did not: the next request on it was reset, as CI once saw.)"""
    from samtal.api import create_app
    from tests.helpers.servers import Server

    clock = Clock()
    config = Settings(database_url=f"sqlite:///{tmp_path}/bug.db", retention_days=0)
    store = open_store(config.database_url)
    app = create_app(config, store=store, clock=clock)

    async def a_bug() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/a-bug", a_bug)  # a route of this test's: samtal has no known bug
    with Server(app) as server, httpx.Client(base_url=server.url) as client:
        answer = client.get("/a-bug")
        assert assert_problem(answer, 500, "the error is logged")["title"] == "Internal error"
        assert answer.headers["connection"] == "close"
        assert client.get("/healthz").status_code == 200  # on a new connection
    store.close()


def test_a_flood_of_bad_tokens_is_refused_before_any_lookup(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the limit, an address's made-up tokens get a 429 before any lookup. Others at the
    same address (a NAT, a proxy) whose tokens are valid are not held back by them: before,
    one script retrying with a revoked token locked every integration behind its office's
    address out."""
    from samtal.api import _auth

    clock = Clock()
    server, store, _ = start_app(
        f"sqlite:///{tmp_path}/auth.db", clock, auth_failure_limit="5/minute"
    )
    store.add_org("acme", "UTC", now=clock())
    made, good = store.create_token("read", org="acme", now=clock())
    with server:
        with server.client("samtal_r_made-up") as client:
            answers = [client.get("/cdr/changes").status_code for _ in range(8)]
        assert answers[:5] == [401] * 5 and answers[5:] == [429] * 3
        with server.client(good) as client:
            assert client.get("/cdr/changes").status_code == 200
        with server.client("samtal_r_made-up-too") as client:
            refused = client.get("/cdr/changes")
        assert_problem(refused, 429, "too many failed authentications")
        assert int(refused.headers["retry-after"]) >= 1
        # Revoked after the valid tokens were read: refused at once all the same.
        store.revoke_token(made.id, now=clock())
        with server.client(good) as client:
            assert_problem(client.get("/cdr/changes"), 401, "revoked")
        # A token made since then gets in once they are read again (KNOWN_EVERY seconds).
        monkeypatch.setattr(_auth, "KNOWN_EVERY", 0.0)
        newer = store.create_token("read", org="acme", now=clock())[1]
        with server.client(newer) as client:
            assert client.get("/cdr/changes").status_code == 200
    store.close()


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (None, "send an API token: `Authorization: Bearer <token>`"),
        ("samtal_r_abc", "holds no `Bearer ` before the token"),
        ("Basic YTpi", "uses the 'Basic' scheme"),
        ("Token samtal_r_abc", "uses the 'Token' scheme"),
    ],
)
def test_a_missing_bearer_says_what_is_wrong(
    service: Service, header: str | None, said: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=service.server.url) as client:
        assert_problem(client.get("/cdr/changes", headers=headers), 401, said)


def test_two_tokens_in_one_request_are_refused(product: tuple[Service, str]) -> None:
    """Two `Authorization` headers: the first was used. A proxy that checks the last, or a
    client that added one to another's, then sees its request answered for a token it did not
    mean; the request is refused, whichever tokens they are, before either is looked up."""
    service, token = product
    said = "the `Authorization` header is given 2 times: send one token"
    with httpx.Client(base_url=service.server.url) as client:
        for second in (service.ingest, token, "samtal_r_nothing"):
            headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {second}")]
            assert_problem(client.get("/cdr/changes", headers=headers), 400, said)
            assert_problem(client.post("/events", headers=headers, content=b"{}"), 400, said)


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("from=2017-01-04&frm=x", "unknown query parameter `frm`: this endpoint takes"),
        ("from=2017-01-04&format=xml", "`format` must be json, ndjson or csv, not 'xml'"),
        ("from=2017-01-04&view=full", "`view` must be plain or detailed, not 'full'"),
        ("", "`from` is required"),
    ],
)
def test_errors_are_said_in_our_words(product: tuple[Service, str], query: str, said: str) -> None:
    service, token = product
    with service.server.client(token) as client:
        body = assert_problem(client.get(f"/cdr/historik?{query}"), 400, said)
    assert "Input should be" not in body["detail"] and "'frm'" not in body["detail"]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("after=x", "`after` must be a whole number, not 'x'"),
        ("limit=0", "`limit` must be at least 1, not '0'"),
        ("wait=61", "`wait` must be at most 60, not '61'"),
    ],
)
def test_feed_parameters_are_said_in_our_words(
    product: tuple[Service, str], query: str, said: str
) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"/cdr/changes?{query}"), 400, said)


@pytest.mark.parametrize(
    ("path", "query", "said"),
    [
        ("/cdr/historik", "from=2017-01-04&from=2017-01-01", "`from` is given 2 times"),
        ("/cdr/historik", "from=2017-01-04&to=2017-01-05&to=2017-01-06&to=x", "`to` is given 3"),
        ("/cdr/historik", "from=2017-01-04&format=csv&format=json", "`format` is given 2 times"),
        ("/cdr/stats", "from=2017-01-04&interval=day&interval=hour", "`interval` is given 2"),
        ("/cdr/changes", "after=5&after=0", "`after` is given 2 times: give it once"),
    ],
)
def test_a_parameter_given_twice_is_refused(
    product: tuple[Service, str], path: str, query: str, said: str
) -> None:
    """Two `from`s have no one meaning: the answer would be to a question the client may not
    have asked."""
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"{path}?{query}"), 400, said)


def test_a_filter_given_twice_holds_for_either_value(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        answers = [
            client.get(f"/cdr/historik?from=2017-01-04&{outcomes}")
            for outcomes in (
                "outcome=answered",
                "outcome=abandoned",
                "outcome=answered&outcome=abandoned",
            )
        ]
    assert [answer.status_code for answer in answers] == [200] * 3
    counts = [len(answer.json()) for answer in answers]
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == counts[0] + counts[1], counts


def test_the_documentation_lists_what_is_sent(service: Service) -> None:
    with httpx.Client(base_url=service.server.url) as client:
        document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    history = document["paths"]["/cdr/historik"]["get"]["responses"]
    assert "400" in history and "application/problem+json" in history["400"]["content"]


def test_settings_take_the_new_bounds() -> None:
    assert Settings().max_future_seconds == 86400
    assert Settings().auth_failure_limit == "30/minute"
