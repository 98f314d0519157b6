"""Rate limits per read token (spec/api.md): the draft's headers on every answer, 429 over the
limit, counted in memory or shared through Redis by every worker, keys apart per installation,
and the API still answering while Redis is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from samtal.api import create_app
from samtal.clock import system_clock
from samtal.settings import Settings
from samtal.store import open_store
from tests.helpers.servers import Server, serving

REDIS_URL = os.environ.get("SAMTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def server(tmp_path: Path, **settings: object) -> tuple[Server, str, str]:
    """An in-process server with its read and ingest token."""
    url = f"sqlite:///{tmp_path / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    read = store.create_token("read", org="acme", now=system_clock())[1]
    ingest = store.create_token("ingest", org=None, now=system_clock())[1]
    return Server(create_app(Settings(database_url=url, **settings), store=store)), read, ingest


def test_headers_and_the_429_in_memory(tmp_path: Path) -> None:
    running, read, ingest = server(tmp_path, rate_limit="3/minute")
    with running, running.client(read) as client:
        first = client.get("/cdr/changes")
        assert first.headers["ratelimit-policy"] == '"default";q=3;w=60'
        remaining, _, reset = first.headers["ratelimit"].partition(";t=")
        assert remaining == '"default";r=2' and 0 < int(reset) <= 60
        # An error answer counts and carries the headers too; both endpoints share the budget.
        bad = client.get("/cdr/historik?from=nonsense")
        assert bad.status_code == 400 and bad.headers["ratelimit"].startswith('"default";r=1;')
        assert client.get("/cdr/changes?wait=1").headers["ratelimit"].startswith('"default";r=0;')
        over = client.get("/cdr/historik?from=2017-01-04")
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert over.json()["type"] == "/problems/too-many-requests"
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert over.headers["ratelimit"].startswith('"default";r=0;')
        # Another token has its own budget; ingest tokens are not limited by default.
        other = open_store(f"sqlite:///{tmp_path / 'samtal.db'}")
        second = other.create_token("read", org="acme", now=system_clock())[1]
        other.close()
        with running.client(second) as client2:
            assert client2.get("/cdr/changes").status_code == 200
        with running.client(ingest) as poster:
            event = b'{"id":"x","org":"acme","call":"x","at":"2017-01-04T10:00:00Z","type":"ended"}'
            for _ in range(5):
                answer = poster.post("/events", content=event)
                assert answer.status_code == 200 and "ratelimit" not in answer.headers


def test_off_sends_no_headers(tmp_path: Path) -> None:
    running, read, _ = server(tmp_path, rate_limit="off")
    with running, running.client(read) as client:
        for _ in range(70):
            answer = client.get("/cdr/changes")
            assert answer.status_code == 200 and "ratelimit" not in answer.headers


def redis_answers(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def shared_redis() -> str:
    if not redis_answers(REDIS_URL):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis does not answer at {REDIS_URL}: CI needs it")
        pytest.skip(f"Redis does not answer at {REDIS_URL}: set SAMTAL_TEST_REDIS_URL")
    return REDIS_URL


@pytest.mark.slow
def test_two_workers_share_the_limit_through_redis(shared_redis: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "UTC", now=system_clock())
    read = store.create_token("read", org="acme", now=system_clock())[1]
    store.close()
    limits = {"SAMTAL_RATE_LIMIT": "5/minute", "SAMTAL_REDIS_URL": shared_redis}
    with serving(url, tmp_path, **limits) as (base, _):
        statuses = []
        for _ in range(12):  # a new connection each: the two workers take turns
            answer = httpx.get(
                base + "/cdr/changes", headers={"Authorization": f"Bearer {read}"}, timeout=10
            )
            statuses.append(answer.status_code)
    assert statuses.count(200) == 5 and statuses.count(429) == 7, statuses


def test_installations_sharing_a_redis_keep_apart(shared_redis: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, read_one, _ = server(tmp_path / "a", rate_limit="2/minute", redis_url=shared_redis)
    two, read_two, _ = server(tmp_path / "b", rate_limit="2/minute", redis_url=shared_redis)
    with one, two, one.client(read_one) as a, two.client(read_two) as b:
        assert [a.get("/cdr/changes").status_code for _ in range(3)] == [200, 200, 429]
        assert [b.get("/cdr/changes").status_code for _ in range(2)] == [200, 200]
        keys = redis_keys(shared_redis)
    ours = [k for k in keys if k.startswith("samtal:")]
    assert len({k.split(":")[1] for k in ours}) >= 2  # one prefix per installation
    assert not any(read_one in k or read_two in k for k in keys)


def redis_keys(url: str) -> list[str]:
    """KEYS * over RESP, with no client library of ours in between."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")
        data = b""
        while not data.endswith(b"\r\n") or data.count(b"\r\n") < 1 + 2 * int(
            data[1 : data.index(b"\r\n")] or 0
        ):
            data += conn.recv(65536)
    lines = data.split(b"\r\n")
    return [line.decode() for line in lines[2::2] if line]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own, on a free port, that it may stop and start again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    processes = [start_redis(command, port, tmp_path)]
    yield f"redis://127.0.0.1:{port}/0", processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def start_redis(command: list[str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not redis_answers(f"redis://127.0.0.1:{port}/0"):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return process


def test_the_api_answers_while_redis_is_gone(
    own_redis: tuple[str, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    url, processes = own_redis
    running, read, _ = server(tmp_path, rate_limit="100/minute", redis_url=url)
    with running, running.client(read) as client:
        assert client.get("/cdr/changes").headers["ratelimit"].startswith('"default";r=99;')
        assert client.get("/readyz").status_code == 200
        processes[0].kill()
        processes[0].wait(10)
        for _ in range(3):  # fail open: answered, with the policy but no count
            started = time.monotonic()
            answer = client.get("/cdr/changes")
            assert answer.status_code == 200 and "ratelimit" not in answer.headers
            assert answer.headers["ratelimit-policy"] == '"default";q=100;w=60'
            assert time.monotonic() - started < 3
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "Redis" in ready.json()["detail"]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
        processes.append(start_redis(command, port, tmp_path))
        deadline = time.monotonic() + 10
        while "ratelimit" not in client.get("/cdr/changes").headers:  # counting again
            assert time.monotonic() < deadline, "the limiter did not come back"
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200


def test_one_log_line_a_request_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    from samtal.logs import JsonFormatter

    running, read, _ = server(tmp_path, rate_limit="off", retention_days=0)
    with (
        caplog.at_level(logging.INFO, logger="samtal.access"),
        running,
        running.client(read) as client,
    ):
        client.get("/cdr/historik?from=2017-01-04")
        client.get("/no/such/path")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert [(x["method"], x["route"], x["status"], x["org"]) for x in lines] == [
        ("GET", "/cdr/historik", 200, "acme"),
        ("GET", "(no route)", 404, None),
    ]
    assert all(x["duration_ms"] >= 0 and x["level"] == "INFO" for x in lines)
    assert read not in caplog.text
