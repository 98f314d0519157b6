"""Shared fixtures: real stores on temporary files, a settable clock, a real HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from samtal.api._transport import NoDelayH11Protocol
from samtal.store import Store, open_store

#: 2017-03-01T00:00:00Z: the vectors' era, in microseconds.
T0 = 1_488_326_400_000_000


class Clock:
    """A clock tests move by hand; microseconds since the epoch."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


#: The PostgreSQL server tests make their databases on (and drop them after).
POSTGRES_URL = os.environ.get(
    "SAMTAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: Every storage engine the contract, API and fault tests run on.
ENGINES = ("sqlite", "postgres")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; its URL. Dropped afterwards.

    Where no PostgreSQL answers, the test skips and says how to enable it; in CI (CI=true)
    it fails instead: CI has PostgreSQL, and a silent skip would hide a broken engine.
    """
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(
            f"PostgreSQL does not answer at {POSTGRES_URL} ({exc}): start one, or point "
            "SAMTAL_TEST_POSTGRES_URL at one, to run the PostgreSQL tests"
        )
    name = f"samtal_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(engine: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of `engine` for one test."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'samtal.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


class Server:
    """A real uvicorn server for an app, on an ephemeral loopback port, in a thread."""

    def __init__(self, app: FastAPI, *, send_buffer: int | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if send_buffer is not None:  # accepted connections inherit it (Linux)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", http=NoDelayH11Protocol)
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
        self._thread.join(timeout=10)
        self._socket.close()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def serving(url: str, cwd: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`samtal serve --workers 2` as a process group of its own; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--workers", "2", "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "SAMTAL_DATABASE_URL": url, "SAMTAL_RETENTION_DAYS": "0", **env},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError(f"samtal serve did not start: {server.communicate()[1]}")
        time.sleep(0.1)
    try:
        yield base, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
