"""What a hostile or unlucky input must not do: each case of the hardening issue, over real HTTP.

The rules these pin: nothing accepted is lost, a bad event never blocks good ones, and the
server never answers 5xx to a client's input.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from samtal.api import create_app
from samtal.ingest import import_lines
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Store, open_store
from tests.conftest import T0, Clock, Server
from tests.vectors import VECTORS

PRODUCT = next(v for v in VECTORS if v["name"] == "product-description")


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
    wal: Path


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Busy]:
    """A server holding three weekdays of one organisation's calls, with a tiny send buffer."""
    clock = Clock(T0)
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'busy.db'}",
        retention_days=0,
        duty_interval_seconds=3600.0,
    )
    store = open_store(config.database_url)
    store.add_org("org-1", "Europe/Stockholm", now=clock())
    traffic = TrafficSettings(orgs=1, days=3, seed=3, start=date(2017, 1, 4), calls_per_day=2000)
    import_lines(store, event_lines(traffic), now=clock)
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    with Server(create_app(config, store=store, clock=clock), send_buffer=4096) as server:
        yield Busy(server, store, clock, ingest, tmp_path / "busy.db-wal")
    store.close()


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
        # Under write load the WAL is checkpointed: it stays near SQLite's 4 MB autocheckpoint.
        wal = busy.wal
        traffic = TrafficSettings(orgs=1, days=2, seed=4, start=date(2017, 1, 9))
        batch: list[bytes] = []
        with server.client(ingest) as poster:
            for line in event_lines(traffic):
                batch.append(line)
                if len(batch) == 2000:
                    assert poster.post("/events", content=b"".join(batch)).status_code == 200
                    batch.clear()
        assert wal.stat().st_size < 8 * 1024 * 1024, wal.stat().st_size
    finally:
        remaining = stalled.rest()
    # The stall was real: most of the answer was still to come while the checks ran.
    assert remaining > 500_000
