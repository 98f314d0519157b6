"""Reaching NATS when no server answers: no real server is needed for that, only a port that
nobody listens on, so these run in the fast lane (the JetStream tests are in test_nats.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from samtal.errors import NotReady
from samtal.ingest.nats import connect


def _closed_port() -> int:
    """A loopback port that refuses connections (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_server_answering_is_one_error_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"nats://bob:s3cret@127.0.0.1:{_closed_port()}"
    with caplog.at_level(logging.WARNING), pytest.raises(NotReady) as refused:
        asyncio.run(connect(url, tries=3, wait=0.01))
    message = str(refused.value)
    assert message.startswith("no NATS server answers at nats://bob:***@127.0.0.1:")
    assert "Connection refused" in message or "Connect call failed" in message
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Its four tries are one line, without a traceback (the client's own callback logged one
    # at every try) and without the password.
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].exc_info is None
    assert "s3cret" not in caplog.text and "s3cret" not in message


def test_a_worker_waiting_for_nats_says_so_once_a_while(caplog: pytest.LogCaptureFixture) -> None:
    """A worker started before NATS tries every half second (here every 10 ms), as long as it
    takes; each server's failure is logged once, not at every try."""
    first, second = _closed_port(), _closed_port()
    url = f"nats://127.0.0.1:{first},nats://127.0.0.1:{second}"

    async def wait_a_while() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connect(url, tries=-1, wait=0.01), timeout=1.0)

    with caplog.at_level(logging.INFO):
        asyncio.run(wait_a_while())
    logged = [r.getMessage() for r in caplog.records if r.name == "samtal.ingest.nats"]
    assert 1 <= len(logged) <= 2, logged  # one line a server, at most
    assert all("Connect call failed" in line for line in logged)


@pytest.mark.slow  # a process of its own
def test_a_worker_waiting_for_nats_stops_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM stops a worker within seconds and it exits 0, also while no NATS server has
    answered yet (it waited for NATS, however long, and SIGTERM went unheard)."""
    env = {
        **os.environ,
        "SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
        "SAMTAL_NATS_URL": f"nats://127.0.0.1:{_closed_port()}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "samtal", "consume"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()  # trying to reach NATS, and failing
        assert "NATS at nats://127.0.0.1:" in first, first
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        assert worker.stderr is not None
        worker.stderr.close()
