"""A `samtal serve` process for the benchmarks: a fresh database, a free port, its peak RSS."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def counting(script: str, *args: str, timeout: float = 30) -> Iterator[str]:
    """A helper process, `python -c script PORT *args`, that answers `GET /count` on PORT
    with what it counted (a receiver of webhooks, the feed's followers): its base URL, once
    it answers. It is stopped at the end."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", script, str(port), *args])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url + "/count", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counted(url: str) -> int:
    """What the helper process at `url` (see `counting`) has counted so far."""
    return int(httpx.get(url + "/count", timeout=5).text)


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
    """The environment that runs samtal from another checkout's `src` (None: this one).

    A fresh `git worktree` has `_speedups.c` but not the extension built from it, so its
    samtal would render records and parse instants in pure Python, and a comparison would
    measure the build, not the change (it did once: a change measured at 1.13x the time took
    0.96x built). So when this checkout runs the extension and the other has none, this
    one's is copied there if their C sources are the same, and refused otherwise."""
    if source is None:
        return {}
    there = source.resolve() / "src" / "samtal"
    spec = importlib.util.find_spec("samtal")
    here = Path(spec.origin).parent if spec is not None and spec.origin else None
    built = sorted(here.glob("_speedups.*.so")) if here is not None else []
    source_c = there / "_speedups.c"  # a checkout from before the extension has none
    if built and source_c.exists() and not any(there.glob("_speedups.*.so")):
        if _c_sources(there) != _c_sources(built[0].parent):
            raise SystemExit(
                f"{source} has no built C extension (samtal/_speedups), and its C sources "
                "are not this checkout's: build it there, e.g. `pip wheel --no-deps -w "
                f"/tmp/wheel {source}`, and unzip the wheel's samtal/_speedups*.so into {there}"
            )
        shutil.copy2(built[0], there / built[0].name)
        print(f"copied this checkout's C extension into {there}", file=sys.stderr)
    return {"PYTHONPATH": str(there.parent)}


def _c_sources(folder: Path) -> dict[str, bytes]:
    """The C extension's sources in `folder` (one file before its events' part was split
    out), by name."""
    return {
        path.name: path.read_bytes()
        for pattern in ("_speedups*.c", "_speedups*.h")
        for path in folder.glob(pattern)
    }


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
