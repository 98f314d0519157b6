"""What a hostile or unlucky input must not do: each case of the hardening issue, over real HTTP.

The rules these pin: nothing accepted is lost, a bad event never blocks good ones, and the
server never answers 5xx to a client's input.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from samtal.aggregate import aggregate as aggregate_events
from samtal.api import create_app
from samtal.events import decode_batch
from samtal.ingest import import_lines
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Store, open_store
from samtal.times import parse_instant
from tests.helpers import AHEAD, PRODUCT, T0, VECTORS, Clock, samtal
from tests.helpers.servers import Server


def lines(events: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def within(seconds: float, check: Any) -> None:
    """`check()` becomes true within `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)


# -- 1. a stalled reader must slow only itself -------------------------------------------------


class StalledReader:
    """A client that asks for a long period, reads 2 KB of the answer and then stops reading."""

    def __init__(self, url: str, token: str, query: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.sendall(
            f"GET /cdr/historik?{query} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        got = b""
        while len(got) < 2048:
            got += self.sock.recv(2048 - len(got))
        assert got.startswith(b"HTTP/1.1 200")

    def rest(self) -> int:
        """Read the rest of the answer; its size in bytes."""
        self.sock.settimeout(30)
        size = 0
        while chunk := self.sock.recv(1 << 16):
            size += len(chunk)
            if chunk.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked body
                break
        self.sock.close()
        return size


@dataclass
class Busy:
    server: Server
    store: Store
    clock: Clock
    ingest: str
    wal: Path | None  # SQLite's write-ahead log


@contextmanager
def running(
    store_url: str, *, traffic: TrafficSettings | None = None, **server: Any
) -> Iterator[Busy]:
    """A server on a fresh database with an ingest token (and org-1's `traffic`, if given)."""
    clock = Clock(T0)
    config = Settings(
        database_url=store_url,
        retention_days=0,
        max_future_seconds=AHEAD,
        duty_interval_seconds=3600.0,
    )
    store = open_store(config.database_url)
    if traffic is not None:
        store.add_org("org-1", "Europe/Stockholm", now=clock())
        import_lines(store, event_lines(traffic), now=clock)
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    wal = (
        Path(store_url.removeprefix("sqlite:///") + "-wal")
        if store_url.startswith("sqlite")
        else None
    )
    with Server(create_app(config, store=store, clock=clock), **server) as started:
        yield Busy(started, store, clock, ingest, wal)
    store.close()


@pytest.fixture
def busy(store_url: str) -> Iterator[Busy]:
    """A server holding three weekdays of one organisation's calls, with a tiny send buffer."""
    traffic = TrafficSettings(orgs=1, days=3, seed=3, start=date(2017, 1, 4), calls_per_day=2000)
    with running(store_url, traffic=traffic, send_buffer=4096) as made:
        yield made


@pytest.mark.slow
def test_a_stalled_reader_freezes_nobody(busy: Busy) -> None:
    server, store, clock, ingest = busy.server, busy.store, busy.clock, busy.ingest
    old_token = store.create_token("read", org="org-1", now=clock())
    stalled = StalledReader(server.url, old_token[1], "from=2017-01-01&to=2017-01-31")
    try:
        # A token revoked now is refused at once.
        store.revoke_token(old_token[0].id, now=clock())
        with server.client(old_token[1]) as client:
            within(2, lambda: client.get("/cdr/historik?from=2017-01-04").status_code == 401)
        # A token made now is taken at once.
        fresh = store.create_token("read", org="org-1", now=clock())[1]
        with server.client(fresh) as client:
            within(2, lambda: client.get("/cdr/historik?from=2017-01-04").status_code == 200)
            # A call whose POST was answered is visible at once.
            store.add_org("acme", "Europe/Stockholm", now=clock())
            acme = store.create_token("read", org="acme", now=clock())[1]
            with server.client(ingest) as poster:
                body = lines([{**e, "org": "acme"} for e in PRODUCT["events"]])
                assert poster.post("/events", content=body).status_code == 200
            with server.client(acme) as reader:
                within(
                    2,
                    lambda: (
                        reader.get("/cdr/historik?from=2017-01-04").json() == PRODUCT["expected"]
                    ),
                )
        # Under write load, SQLite's WAL can still be checkpointed to its end: the stalled
        # answer holds no snapshot that would keep the frames written since in the log.
        traffic = TrafficSettings(orgs=1, days=2, seed=4, start=date(2017, 1, 9))
        batch: list[bytes] = []
        with server.client(ingest) as poster:
            for line in event_lines(traffic):
                batch.append(line)
                if len(batch) == 2000:
                    assert poster.post("/events", content=b"".join(batch)).status_code == 200
                    batch.clear()
        if busy.wal is not None:
            db = sqlite3.connect(busy.wal.with_name(busy.wal.name.removesuffix("-wal")))
            try:
                blocked, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                db.close()
            assert (blocked, copied) == (0, frames) and frames > 0, (blocked, frames, copied)
    finally:
        remaining = stalled.rest()
    # The stall was real: most of the answer was still to come while the checks ran.
    assert remaining > 500_000


# -- 2 and 3. an event whose time cannot be rendered costs nobody else anything ---------------


def poisoned(org: str) -> list[dict[str, Any]]:
    """Two events valid in form whose instants no record could be rendered at."""
    call = {"org": org, "call": "poison"}
    return [
        {**call, "id": "p1", "at": "9999-12-31T23:30:00Z", "type": "started"}
        | {"party": "caller", "number": "+46701", "dialed": "100"},
        {**call, "id": "p2", "at": "0001-01-01T00:00:01+01:00", "type": "ended"},
    ]


@pytest.fixture
def service(store_url: str) -> Iterator[Busy]:
    with running(store_url) as made:
        yield made


def read_token(service: Busy, org: str) -> str:
    service.store.add_org(org, "Europe/Stockholm", now=service.clock())
    return service.store.create_token("read", org=org, now=service.clock())[1]


def test_an_unrenderable_time_is_rejected_alone(service: Busy) -> None:
    token = read_token(service, "acme")
    good = [{**e, "org": "acme"} for e in PRODUCT["events"]]
    body = lines(good[:5] + poisoned("acme") + good[5:])
    with service.server.client(service.ingest) as client:
        response = client.post("/events", content=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["accepted"], report["duplicates"]) == (17, 0)
    assert [(r["line"], r["id"]) for r in report["rejected"]] == [(6, "p1"), (7, "p2")]
    assert all("0001-01-02 to 9999-12-30" in r["reason"] for r in report["rejected"])
    with service.server.client(token) as client:
        assert client.get("/cdr/historik?from=2017-01-04").json() == PRODUCT["expected"]


def test_import_and_aggregate_skip_an_unrenderable_time(tmp_path: Path) -> None:
    good = [{**e, "org": "acme"} for e in PRODUCT["events"]]
    events = tmp_path / "events.ndjson"
    events.write_bytes(lines(good[:5] + poisoned("acme") + good[5:]))
    aggregated = samtal("aggregate", str(events), cwd=tmp_path)
    assert aggregated.returncode == 1, aggregated.stderr
    assert json.loads(aggregated.stdout) == PRODUCT["expected"]
    assert "line 6:" in aggregated.stderr and "line 7:" in aggregated.stderr
    db = ["--db", f"sqlite:///{tmp_path / 'i.db'}"]
    assert samtal("org", "add", "acme", *db, cwd=tmp_path).returncode == 0
    imported = samtal("import", str(events), *db, cwd=tmp_path)
    assert imported.returncode == 1
    assert "accepted 17, duplicates 0, rejected 2" in imported.stdout


def test_a_poisoned_call_from_an_older_version_stops_no_duty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """samtal 0.1 stored the events of an open call whatever their time: a database may hold
    such a call. Idle closing and purging must go on around it."""
    clock = Clock(T0 + 14 * 24 * 3600 * 1_000_000)  # 2017-03-15
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    read = store.create_token("read", org="acme", now=clock())[1]
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # what 0.1 wrote for the poisoned call
        db.execute(
            "INSERT INTO events (org, id, call, instant, seq, type, party, number, dialed, at) "
            "VALUES ('acme', 'p1', 'poison', ?, NULL, 'started', 'caller', '+46701', '100', "
            "'9999-12-31T23:30:00Z')",
            (parse_instant("9999-12-31T23:30:00Z"),),
        )
        db.execute(
            "INSERT INTO calls (org, call, age, record_ms, open, last_seen) "
            "VALUES ('acme', 'poison', ?, NULL, 1, ?)",
            (parse_instant("9999-12-31T23:30:00Z"), clock()),
        )
    config = Settings(
        database_url=url,
        retention_days=0,
        max_future_seconds=AHEAD,
        duty_interval_seconds=0.02,
    )
    store = open_store(url)
    idle = next(v for v in VECTORS if v["name"] == "no-record-yet")
    with (
        Server(create_app(config, store=store, clock=clock)) as server,
        server.client(ingest) as poster,
        server.client(read) as reader,
    ):
        assert poster.post("/events", content=lines(idle["events"])).status_code == 200
        # A new event of the poisoned call is accepted too, and costs nothing else.
        late = {"org": "acme", "call": "poison", "id": "p3", "at": "2017-03-15T10:00:00Z"}
        late |= {"type": "ringing", "party": "user", "number": "200"}
        assert poster.post("/events", content=lines([late])).json()["accepted"] == 1
        clock.advance(13 * 3600)
        within(10, lambda: reader.get("/cdr/historik?from=2017-03-08").json() != [])
    store.close()
    assert "'poison'" in caplog.text and "cannot make its record" in caplog.text


# -- 4. a record whose call turns out not to have stopped disappears --------------------------


def test_a_record_that_should_disappear_does(service: Busy) -> None:
    token = read_token(service, "acme")
    call = {"org": "acme", "call": "c-4"}

    def event(n: int, at: str, type_: str, **fields: Any) -> dict[str, Any]:
        return {**call, "id": f"e{n}", "at": f"2017-01-04T10:00:{at}+01:00", "type": type_} | fields

    events = [
        event(1, "00", "started", party="caller", number="+46701", dialed="622"),
        event(2, "01", "entered", party="function", number="622", kind="HUNT_GROUP"),
        event(3, "02", "ringing", party="user", number="U"),
        event(4, "05", "answered", party="user", number="U"),
        event(5, "30", "hangup", party="user", number="U"),
    ]
    late = event(6, "03.5", "answered", party="user", number="V")
    with service.server.client(service.ingest) as poster, service.server.client(token) as reader:
        assert poster.post("/events", content=lines(events)).status_code == 200
        (record,) = reader.get("/cdr/historik?from=2017-01-04").json()
        assert record["calleeNo"] == "U"
        assert poster.post("/events", content=lines([late])).json()["accepted"] == 1
        assert reader.get("/cdr/historik?from=2017-01-04").json() == []
    assert aggregate_events(decode_batch(lines([*events, late]).splitlines()).events) == []


# -- 5. deep nesting and extreme periods --------------------------------------------------------


def assert_problem(response: httpx.Response, status: int, *parts: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    for part in parts:
        assert part in body["detail"], body["detail"]
    return body


def test_deep_nesting_is_one_line_verdict(service: Busy) -> None:
    token = read_token(service, "acme")
    good = [{**e, "org": "acme"} for e in PRODUCT["events"]]
    deep = json.dumps({**good[0], "id": "deep"})[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000
    body = lines(good[:3]) + deep.encode() + b"}\n" + lines(good[3:])
    with service.server.client(service.ingest) as client:
        report = client.post("/events", content=body).json()
        assert report["accepted"] == 17
        assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
            (4, "JSON nested too deeply to read: an event nests at most a few levels")
        ]
        as_array = client.post(
            "/events", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
        )
        assert_problem(as_array, 400, "nested too deeply")
    with service.server.client(token) as client:
        assert client.get("/cdr/historik?from=2017-01-04").json() == PRODUCT["expected"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=2017-01-04&to=9999-12-31", 200),
        ("from=2017-01-04&to=9999-12-31T23:59:59.999999Z", 200),
        ("from=2017-01-04&to=9999-12-31T23:59:59.999999-23:59", 200),
        ("from=9999-12-31&to=9999-12-31", 200),
        ("from=0001-01-01&to=0001-01-01", 200),
        ("from=0001-01-01T00:00%2B23:59&to=2017-01-04", 200),
        ("from=9999-12-31", 400),
    ],
)
def test_extreme_periods(service: Busy, query: str, status: int) -> None:
    token = read_token(service, "acme")
    with service.server.client(service.ingest) as client:
        client.post("/events", content=lines([{**e, "org": "acme"} for e in PRODUCT["events"]]))
    with service.server.client(token) as client:
        response = client.get(f"/cdr/historik?{query}")
    assert response.status_code == status, response.text
    if status == 200 and query.startswith("from=2017"):
        assert response.json() == PRODUCT["expected"]
    # The statistics of the same period: the same answer, the period echoed where it can be
    # shown (a fuzzer once found from=0001-01-01 a 500 here).
    with service.server.client(token) as client:
        figures = client.get(f"/cdr/stats?{query}")
    assert figures.status_code == status, figures.text
    if status == 200:
        calls = len(PRODUCT["expected"]) if "2017" in query else 0
        assert figures.json()["calls"]["calls"] == calls


# -- 6. smaller defects --------------------------------------------------------------------------


def test_echoed_input_is_cut(service: Busy) -> None:
    token = read_token(service, "acme")
    with service.server.client(token) as client:
        body = assert_problem(client.get("/cdr/historik", params={"from": "9" * 10_000}), 400)
    assert len(body["detail"]) < 400 and "10,000 characters" in body["detail"]
    with service.server.client(service.ingest) as client:
        event = {**PRODUCT["events"][0], "org": "x" * 100_000}
        report = client.post("/events", content=lines([event])).json()
    assert len(report["rejected"][0]["reason"]) < 200


@pytest.mark.parametrize("seq", ["1e400", "9" * 5000, "-1", "1.5"])
def test_a_bad_seq_is_named(service: Busy, seq: str) -> None:
    read_token(service, "acme")
    event = json.dumps({**PRODUCT["events"][0], "org": "acme"})[:-1] + f', "seq": {seq}}}'
    with service.server.client(service.ingest) as client:
        report = client.post("/events", content=event.encode()).json()
    (rejection,) = report["rejected"]
    assert rejection["reason"].startswith("`seq`"), rejection


def test_gzip_bodies(tmp_path: Path) -> None:
    clock = Clock(T0)
    config = Settings(
        max_future_seconds=AHEAD,
        database_url=f"sqlite:///{tmp_path / 'gz.db'}",
        retention_days=0,
        max_body_bytes=10_000,
    )
    store = open_store(config.database_url)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    body = lines([{**e, "org": "acme"} for e in PRODUCT["events"]])
    server = Server(create_app(config, store=store, clock=clock))
    with server, server.client(ingest) as client:

        def post(content: bytes, encoding: str = "gzip") -> httpx.Response:
            return client.post("/events", content=content, headers={"Content-Encoding": encoding})

        # Two gzip members, as `cat a.gz b.gz` makes.
        halves = gzip.compress(body[:1000]) + gzip.compress(body[1000:])
        assert post(halves).json() == {"accepted": 17, "duplicates": 0, "rejected": []}
        assert post(gzip.compress(body)).json()["duplicates"] == 17
        bomb = gzip.compress(b" " * 50_000_000)  # 49 kB that unpack to 50 MB
        assert_problem(post(bomb), 413, "decompressed")
        assert_problem(post(b"not gzip at all"), 400, "not valid gzip")
        assert_problem(post(gzip.compress(body)[:-20]), 400, "ends early")
        assert_problem(post(body, "br"), 415, "content encoding 'br'")
    store.close()


def test_bodies_held_at_once_are_bounded(tmp_path: Path) -> None:
    clock = Clock(T0)
    config = Settings(
        max_future_seconds=AHEAD,
        database_url=f"sqlite:///{tmp_path / 'mem.db'}",
        retention_days=0,
        max_body_bytes=20_000,
        max_inflight_bytes=14_000,
    )
    store = open_store(config.database_url)
    store.add_org("acme", "Europe/Stockholm", now=clock())
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    body = lines([{**e, "org": "acme"} for e in PRODUCT["events"]])
    assert 2500 < len(body) < 3000
    first, rest = (body * 5)[:12_000], (body * 5)[12_000:]
    release = threading.Event()

    def slow() -> Iterator[bytes]:  # a client sending half its body, then pausing
        yield first
        release.wait(10)
        yield rest

    server = Server(create_app(config, store=store, clock=clock))
    with server, server.client(ingest) as slow_client, server.client(ingest) as other:
        done: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: done.append(slow_client.post("/events", content=slow()))
        )
        sender.start()
        try:
            time.sleep(0.3)  # the first 12,000 bytes are held by the server now
            refused = other.post("/events", content=body)
            assert_problem(refused, 503, "try again")
            assert refused.headers["retry-after"] == "1"
        finally:
            release.set()
            sender.join(10)
        # The slow body is taken whole although it is over the limit: it was alone.
        assert done[0].json() == {"accepted": 17, "duplicates": 68, "rejected": []}
        # Once let go, the bytes are free again.
        assert other.post("/events", content=body).json()["duplicates"] == 17
    store.close()


@pytest.mark.slow
def test_a_client_gone_mid_upload_is_one_log_line(tmp_path: Path) -> None:
    env = {"SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'gone.db'}"}
    ingest = samtal("token", "create", "--ingest", cwd=tmp_path, env=env).stdout.split()[-1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        within(30, lambda: _answers(f"http://127.0.0.1:{port}/healthz"))
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ingest}\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
                + b"x" * 1000
            )
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        server.terminate()
        _, log = server.communicate(timeout=20)
    assert "Traceback" not in log and "ERROR" not in log, log
    assert log.count("went away") == 1, log


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("name", ["", " acme", "ac me", "a\nb", "x" * 65, "acme/1", "åäö"])
def test_organisation_names_are_checked(tmp_path: Path, name: str) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'o.db'}"]
    added = samtal("org", "add", *db, "--", name, cwd=tmp_path)
    assert added.returncode == 1
    assert "cannot name an organisation: use 1 to 64 ASCII letters" in added.stderr
    assert len(added.stderr) < 300
    assert samtal("org", "list", *db, cwd=tmp_path).stdout == ""


def test_names_made_before_the_rule_keep_working(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # what 0.1 let an operator add
        db.execute("INSERT INTO orgs (name, tz, created) VALUES ('old name', 'UTC', 0)")
    store = open_store(url)
    store.create_token("read", org="old name", now=T0)
    from samtal.ingest import ingest

    events = decode_batch(lines([{**e, "org": "old name"} for e in PRODUCT["events"]]).split(b"\n"))
    assert ingest(store, events, now=T0).accepted == 17
    store.close()


def test_import_sums_up_unknown_organisations(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'i.db'}"]
    events = tmp_path / "events.ndjson"
    other = [{**e, "org": "bolag"} for e in PRODUCT["events"]]
    events.write_bytes(lines(PRODUCT["events"] * 6 + other) + b"{\n")
    imported = samtal("import", str(events), *db, cwd=tmp_path)
    assert imported.returncode == 1
    assert imported.stderr.splitlines() == [
        "line 120: not valid JSON: Input data was truncated",
        "102 line(s) of the unknown organisation 'acme': add it with `samtal org add acme` and "
        "import again (what is stored already counts as duplicates)",
        "17 line(s) of the unknown organisation 'bolag': add it with `samtal org add bolag` and "
        "import again (what is stored already counts as duplicates)",
    ]


# -- 7. the newcomer's first minutes -----------------------------------------------------------


def test_the_docs_need_no_internet(service: Busy) -> None:
    with service.server.client() as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assert "https://" not in html and "http://" not in html, html
            assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html)
            assert any(a.endswith(".js") for a in assets), html
            for asset in assets:
                assert client.get(asset).status_code == 200, asset


def test_the_command_line_starts_without_the_server() -> None:
    """`samtal aggregate --help` must not pay for importing the web framework."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from samtal.cli import main\n"
            "try:\n    main(['aggregate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heavy in ("fastapi", "uvicorn", "starlette", "pydantic", "rich", "msgspec"):
        assert f"'{heavy}'" not in loaded


def test_serve_help_lists_every_setting() -> None:
    shown = samtal("serve", "--help", cwd=Path.cwd()).stdout
    for variable, default, _help in Settings.describe():
        assert f"{variable} [{default}]" in shown


def test_dev_refuses_unknown_tasks() -> None:
    dev = Path(__file__).resolve().parents[2] / "dev"
    ran = subprocess.run([str(dev), "foo"], capture_output=True, text=True, check=False)
    assert ran.returncode == 2
    assert "unknown task 'foo'" in ran.stderr and "set -euo" not in ran.stderr + ran.stdout
    helped = subprocess.run([str(dev), "help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "./dev test" in helped.stdout
