"""A `samtal serve` process for the benchmarks: a fresh database, a free port, its peak RSS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samtal(*args: str, db: str, env: dict[str, str] | None = None) -> str:
    """Run a samtal command on `db` (with `env` added to the environment); its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "samtal", *args, "--db", db],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout


def source_env(source: Path | None) -> dict[str, str]:
    """The environment that runs samtal from another checkout's `src` (None: this one)."""
    return {} if source is None else {"PYTHONPATH": str(source.resolve() / "src")}


class ServerProcess:
    """`samtal serve` on a free loopback port, for as long as the `with` lasts."""

    def __init__(self, db: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [
            sys.executable,
            "-m",
            "samtal",
            "serve",
            "--port",
            str(self.port),
            "--db",
            db,
            *args,
        ]
        self._env = {
            **os.environ,
            "SAMTAL_RETENTION_DAYS": "0",
            "SAMTAL_RATE_LIMIT": "off",
            **env,
        }

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(
            self._args, env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("samtal serve did not start") from None
                time.sleep(0.1)

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
