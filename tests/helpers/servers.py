"""Real servers for tests: the app in a uvicorn thread on an ephemeral port, `samtal serve
--workers 2` as processes, and what tests say about their answers."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from samtal.api import create_app
from samtal.api._transport import LOOP, NoDelayH11Protocol
from samtal.clock import system_clock
from samtal.events import decode_batch
from samtal.settings import Settings
from samtal.store import Store, open_store
from tests.helpers import AHEAD, Clock, in_org


class Server:
    """A real uvicorn server for an app, on an ephemeral loopback port, in a thread."""

    def __init__(self, app: FastAPI, *, send_buffer: int | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if send_buffer is not None:  # accepted connections inherit it (Linux)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="on",
                http=NoDelayH11Protocol,
                loop=LOOP,
                # A request still open when the test ends (a long poll) is cut after this, so
                # that the server and its duties stop before the test closes their store.
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_app(url: str, clock: Clock, **settings: Any) -> tuple[Server, Store, Settings]:
    """The app on a fresh store at `url`, with test settings (retention off, duties hourly)
    and `settings`; not yet started."""
    values = {
        "database_url": url,
        "retention_days": 0,
        "max_future_seconds": AHEAD,
        "duty_interval_seconds": 3600.0,
        **settings,
    }
    config = Settings(**values)
    store = open_store(config.database_url)
    return Server(create_app(config, store=store, clock=clock)), store, config


_tenants = itertools.count(1)


@dataclass
class Service:
    """A running samtal as one test sees it: the server, store, clock and ingest token it may
    share with the other tests of its module, and organisations of its own. Every name a
    test gives an organisation is made its own by a prefix (`name`)."""

    server: Server
    store: Store
    clock: Clock
    settings: Settings
    ingest: str
    prefix: str = ""

    def tenant(self) -> Service:
        """The same service for another test: organisations apart from every other's."""
        return Service(
            self.server, self.store, self.clock, self.settings, self.ingest, f"t{next(_tenants)}-"
        )

    def name(self, org: str) -> str:
        """This test's organisation called `org`."""
        return self.prefix + org

    def org(self, org: str, tz: str = "Europe/Stockholm") -> str:
        """Add this test's organisation `org`; its read token."""
        self.store.add_org(self.name(org), tz, now=self.clock())
        return self.store.create_token("read", org=self.name(org), now=self.clock())[1]

    def events(self, events: list[dict[str, Any]], org: str) -> list[dict[str, Any]]:
        """Raw events moved into this test's organisation `org`."""
        return in_org(events, self.name(org))

    def post(self, events: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        body = "".join(json.dumps(e) + "\n" for e in events).encode()
        with self.server.client(self.ingest) as client:
            return client.post("/events", content=body, **kw)

    def get(self, token: str | None, **params: str) -> httpx.Response:
        with self.server.client(token) as client:
            return client.get("/cdr/historik", params=params)


def assert_problem(response: httpx.Response, status: int, *detail_parts: str) -> dict[str, Any]:
    """The answer is a problem+json of `status` whose detail holds `detail_parts`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert list(body) == ["type", "title", "status", "detail"]
    assert body["status"] == status
    for part in detail_parts:
        assert part in body["detail"]
    return body


def answering(base: str, server: subprocess.Popen[Any], seconds: float = 60) -> None:
    """Wait until the `samtal serve` process at `base` answers /healthz; AssertionError, with
    what it said, if it ends or does not answer within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError(f"samtal serve did not start: {server.communicate()[1]}")
        time.sleep(0.1)


@contextmanager
def serving(
    url: str, cwd: Path, *, workers: int = 2, **env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`samtal serve --workers 2` (or `workers`) as a process group of its own; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--workers", str(workers), "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "SAMTAL_DATABASE_URL": url, "SAMTAL_RETENTION_DAYS": "0", **env},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    answering(base, server)
    try:
        yield base, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a process of its group still holds the pipe
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.communicate(timeout=30)  # closed here, not by a later test's collector
            raise


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(
    scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """One sample of a scrape (0 when absent)."""
    return float(scrape.get((name, tuple(sorted(labels.items()))), 0.0))


@dataclass
class Live:
    """A samtal server with a day of org-1's traffic and a call whose record will go."""

    url: str
    store: Store
    read: str
    db: str

    def post(self, lines: list[bytes]) -> None:
        events = decode_batch(lines).events
        self.store.ingest(events, now=system_clock())

    def detailed(self) -> list[dict[str, Any]]:
        import httpx

        answer = httpx.get(
            self.url + "/cdr/historik",
            params={"from": "2017-01-01", "to": "2017-01-31", "view": "detailed"},
            headers={"Authorization": f"Bearer {self.read}"},
            timeout=60,
        )
        answer.raise_for_status()
        return sorted(answer.json(), key=lambda r: r["id"])
