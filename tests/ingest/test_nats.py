"""Ingest through NATS JetStream, with real `samtal publish` and `samtal consume` processes on
the machine's NATS (each test with a stream and subjects of its own), into either engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import decode_batch
from samtal.ingest.nats import PUBLISH_REJECTIONS_SHOWN
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from samtal.times import zone
from tests.helpers import T0
from tests.helpers.databases import postgres_database, stored_events

# Starts NATS servers and `samtal consume` processes.
pytestmark = pytest.mark.slow

NATS_URL = os.environ.get("SAMTAL_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Jet:
    """A stream and subjects of one test's own."""

    stream: str
    subject: str
    dead: str

    def args(self) -> list[str]:
        return ["--nats", NATS_URL, "--stream", self.stream, "--subject", self.subject]


def _reachable() -> bool:
    """Whether a NATS server with JetStream answers at NATS_URL: its greeting says so."""
    address = urlsplit(NATS_URL)
    try:
        with socket.create_connection((address.hostname, address.port or 4222), timeout=3) as sock:
            greeting = sock.recv(4096)
    except OSError:
        return False
    return greeting.startswith(b"INFO ") and b'"jetstream":true' in greeting


@pytest.fixture
def jet() -> Iterator[Jet]:
    if not _reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"NATS does not answer at {NATS_URL}: CI needs it")
        pytest.skip(
            f"NATS with JetStream does not answer at {NATS_URL}: start `nats-server -js`, or "
            "point SAMTAL_TEST_NATS_URL at one, to run the NATS tests"
        )
    name = uuid.uuid4().hex[:10]
    made = Jet(f"T_{name}", f"t{name}.events", f"t{name}.rejected")
    yield made

    async def remove() -> None:
        import nats

        connection = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):  # a test that failed early made none
            await connection.jetstream().delete_stream(made.stream)
        await connection.close()

    asyncio.run(remove())


class DeadLetters:
    """Collects what is published on a dead-letter subject, from a thread of its own."""

    def __init__(self, subject: str) -> None:
        self.messages: list[tuple[bytes, str]] = []
        self.lines: list[str | None] = []  # each message's `Samtal-Line`
        self._subject = subject
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import nats

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        connection = await nats.connect(NATS_URL)

        async def keep(message: object) -> None:
            headers = getattr(message, "headers", None) or {}
            self.messages.append((getattr(message, "data", b""), headers.get("Samtal-Reason", "")))
            self.lines.append(headers.get("Samtal-Line"))

        await connection.subscribe(self._subject, cb=keep)
        await connection.flush()
        self._ready.set()
        await self._stop.wait()
        await connection.close()

    def __enter__(self) -> DeadLetters:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def samtal(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "samtal", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def consumer(jet: Jet, cwd: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "samtal", "consume", *jet.args(), "--dead-letter", jet.dead, *extra],
        cwd=cwd,
        env={**os.environ, "SAMTAL_DATABASE_URL": url},
        stderr=subprocess.PIPE,
        text=True,
    )


def traffic(tmp_path: Path, calls: int = 400) -> tuple[Path, list[bytes]]:
    """A day of two organisations' messy traffic, and three lines that must be dead-lettered."""
    settings = TrafficSettings(
        orgs=2,
        days=1,
        seed=11,
        start=date(2017, 1, 4),
        calls_per_day=calls,
        duplicates=0.05,
        disorder=0.05,
    )
    lines = list(event_lines(settings))
    event = json.loads(lines[0])
    bad = [
        json.dumps({**event, "id": "stranger", "org": "nobody"}).encode() + b"\n",
        json.dumps({**event, "id": "wrong", "type": "rang"}).encode() + b"\n",
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(lines[:50] + bad + lines[50:]))
    return path, lines


def provisioned(url: str) -> None:
    """The two organisations of `traffic` added to the database at `url`."""
    store = open_store(url)
    for org in ("org-1", "org-2"):
        store.add_org(org, "Europe/Stockholm", now=T0)
    store.close()


def expected_records(lines: list[bytes], org: str) -> list[bytes]:
    events = [e for e in decode_batch(lines).events if e.org == org]
    return [orjson.dumps(r.render(zone("Europe/Stockholm"))) for r in aggregate(events)]


def stored_records(url: str, org: str) -> list[bytes]:
    store = open_store(url)
    try:
        return [r for page in store.records(org=org, start=0, end=2**62) for r in page]
    finally:
        store.close()


def exact(url: str, lines: list[bytes]) -> bool:
    """Whether the stored records of both organisations are those of all the events."""
    return all(
        stored_records(url, org) == expected_records(lines, org) for org in ("org-1", "org-2")
    )


def all_stored(url: str, lines: list[bytes]) -> bool:
    """Whether every event is stored and the records are exact. An event that changes no
    record (one after its call stopped) can come last: a message delivered into a pull that a
    broker's restart cut off is delivered again only after the consumer's ack wait."""
    return stored_events(url) == len(keys(lines)) and exact(url, lines)


@contextmanager
def workers(args: list[str], url: str, count: int, cwd: Path) -> Iterator[list[str]]:
    """`count` `samtal consume` processes; at the end each is sent SIGTERM and must exit 0.
    Yields the list their logs are put in."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "samtal", "consume", *args],
            cwd=cwd,
            env={**os.environ, "SAMTAL_DATABASE_URL": url},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    logs: list[str] = []
    try:
        yield logs
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        logs += [process.communicate(timeout=30)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * count, logs


def children(pid: int) -> list[int]:
    """The processes that process `pid` started (Linux's /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cmdline(pid: int) -> bytes:
    """The command line of process `pid` (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, which only waits to be reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def keys(lines: list[bytes]) -> set[tuple[str, str]]:
    """The distinct (org, id) of event lines."""
    return {(event["org"], event["id"]) for event in map(json.loads, lines)}


def wait_until(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.2)


def test_publish_reports_bad_lines_and_drops_republished_events(jet: Jet, tmp_path: Path) -> None:
    path, lines = traffic(tmp_path, calls=50)
    first = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
    assert first.returncode == 1, first.stderr  # the line of an unknown `type`
    assert "line 52: `type` 'rang' is unknown" in first.stderr
    distinct = len(keys(lines)) + 1  # and the stranger's
    assert f"published {distinct:,}, duplicates {len(lines) - distinct + 1:,}, rejected 1" in (
        first.stdout
    )
    again = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
    assert f"published 0, duplicates {len(lines) + 1:,}, rejected 1, failed 0" in again.stdout


def test_publish_sums_up_many_bad_lines(jet: Jet, tmp_path: Path) -> None:
    """A file of many bad lines is summed up: the first shown by number, every one counted
    (a publish keeps only those it shows, so memory does not grow with the file)."""
    path = tmp_path / "bad.ndjson"
    good = traffic(tmp_path, calls=5)[1][:3]
    path.write_bytes(b"".join(good) + b"{\n" * (PUBLISH_REJECTIONS_SHOWN + 50))
    done = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
    assert done.returncode == 1
    shown = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in shown] == [
        f"line {n}" for n in range(len(good) + 1, len(good) + 1 + PUBLISH_REJECTIONS_SHOWN)
    ]
    assert "... and 50 more invalid lines" in done.stderr
    assert f"published {len(good)}, duplicates 0, rejected {PUBLISH_REJECTIONS_SHOWN + 50}," in (
        done.stdout
    )


def test_a_part_batch_is_taken_at_once_and_an_empty_stream_waited_on(jet: Jet) -> None:
    """A pull takes what the stream has without waiting for the rest of a batch (the last of
    a burst is stored at once, not when the pull expires); only an empty stream is waited on."""
    import nats

    from samtal.ingest.nats import Puller, ensure_stream
    from samtal.streams import StreamNames

    names = StreamNames(stream=jet.stream, subject=jet.subject, durable="part", batch=100)

    async def pulls() -> tuple[list[bytes], float, int, float, str | None]:
        connection = await nats.connect(NATS_URL)
        try:
            js = connection.jetstream()
            await ensure_stream(js, names.stream, names.subject, 1)
            for n in range(3):
                await js.publish(f"{names.subject}.org-1", b"%d" % n)
            puller = await Puller.start(js, connection, names)
            began = time.monotonic()
            part = await puller.fetch(timeout=30)
            part_took = time.monotonic() - began
            for message in part:
                await message.ack()
            began = time.monotonic()
            empty = await puller.fetch(timeout=0.5)
            empty_took = time.monotonic() - began
            info = await js.consumer_info(names.stream, names.durable)
            return (
                [m.data for m in part],
                part_took,
                len(empty),
                empty_took,
                info.config.filter_subject,
            )
        finally:
            await connection.close()

    part, part_took, empty, empty_took, filtered = asyncio.run(pulls())
    assert part == [b"0", b"1", b"2"]
    assert part_took < 10, f"waited {part_took:.1f} s for a pull of 30 s to expire"
    assert empty == 0
    assert empty_took >= 0.4, "an empty stream was not waited on"
    assert filtered is None  # a stream of events alone: its consumer needs no filter


def test_a_stream_shared_with_other_subjects_is_consumed_for_events_alone(jet: Jet) -> None:
    """A stream the operator made for more than events: the consumer samtal makes filters on
    the events' subjects (on a stream of events alone it needs no filter, and has none)."""
    import nats
    from nats.js.api import StreamConfig

    from samtal.ingest.nats import Puller
    from samtal.streams import StreamNames

    names = StreamNames(stream=jet.stream, subject=jet.subject, durable="shared", batch=100)
    other = f"other{jet.stream.lower()}"

    async def pulled() -> tuple[list[bytes], str | None]:
        connection = await nats.connect(NATS_URL)
        try:
            js = connection.jetstream()
            subjects = [f"{names.subject}.>", f"{other}.>"]
            await js.add_stream(StreamConfig(name=names.stream, subjects=subjects))
            await js.publish(f"{other}.x", b"not an event")
            await js.publish(f"{names.subject}.org-1", b"an event")
            puller = await Puller.start(js, connection, names)
            got = await puller.fetch(timeout=2)
            info = await js.consumer_info(names.stream, names.durable)
            return [m.data for m in got], info.config.filter_subject
        finally:
            await connection.close()

    got, filtered = asyncio.run(pulled())
    assert got == [b"an event"]
    assert filtered == f"{names.subject}.>"


def test_consumers_at_once_give_exact_records(jet: Jet, store_url: str, tmp_path: Path) -> None:
    provisioned(store_url)
    path, lines = traffic(tmp_path)
    with DeadLetters(jet.dead) as dead:
        published = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
        assert "failed 0" in published.stdout
        workers = [consumer(jet, tmp_path, store_url, "--batch", "50") for _ in range(2)]
        try:
            wait_until(lambda: all_stored(store_url, lines), 120)
            wait_until(lambda: len(dead.messages) == 1, 30)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            logs = [worker.communicate(timeout=30)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs
    assert all("stopped:" in log for log in logs)
    assert sum("batches" in log for log in logs) == 2
    assert dead.messages[0][1] == "unknown organisation 'nobody'"
    assert stored_events(store_url) == len(keys(lines))


def test_packed_messages_give_exact_records_and_a_bad_line_is_dead_lettered_alone(
    jet: Jet, store_url: str, tmp_path: Path
) -> None:
    # `--pack 7`: up to seven events of an organisation a message, one a line; a switch may
    # send such messages itself, one of them with a line that is no event.
    provisioned(store_url)
    path, lines = traffic(tmp_path)
    # The stream drops a message published again, not an event sent twice in two messages:
    # that is left to the consumers, which store each event once.
    first = samtal("publish", str(path), *jet.args(), "--pack", "7", cwd=tmp_path, env={})
    assert f"published {len(lines) + 1:,}, duplicates 0, rejected 1, failed 0" in first.stdout
    again = samtal("publish", str(path), *jet.args(), "--pack", "7", cwd=tmp_path, env={})
    assert f"published 0, duplicates {len(lines) + 1:,}, rejected 1, failed 0" in again.stdout
    call = {"org": "org-1", "call": "packed", "at": "2017-01-04T12:00:00+01:00"}
    switch = [
        orjson.dumps(
            {
                **call,
                "id": "p1",
                "type": "started",
                "party": "caller",
                "number": "+4670",
                "dialed": "622",
            }
        ),
        b'{"id": "p2", "org": "org-1"',  # cut short
        orjson.dumps({**call, "id": "p3", "type": "ended", "at": "2017-01-04T12:01:00+01:00"}),
    ]

    async def send() -> None:
        import nats

        connection = await nats.connect(NATS_URL)
        await connection.jetstream().publish(f"{jet.subject}.org-1", b"\r\n".join(switch) + b"\n")
        await connection.close()

    asyncio.run(send())
    everything = [*lines, switch[0], switch[2]]
    with (
        DeadLetters(jet.dead) as dead,
        workers([*jet.args(), "--dead-letter", jet.dead, "--batch", "50"], store_url, 1, tmp_path),
    ):
        wait_until(lambda: all_stored(store_url, everything), 120)
        wait_until(lambda: len(dead.messages) == 2, 30)
    reasons = dict(
        zip(
            (data for data, _ in dead.messages),
            zip((r for _, r in dead.messages), dead.lines, strict=True),
            strict=True,
        )
    )
    assert reasons[switch[1]][1] == "2"  # the second line of its message, alone
    assert "unknown organisation 'nobody'" in [reason for reason, _ in reasons.values()]
    assert stored_events(store_url) == len(keys(everything))


def mid_stream(
    jet: Jet, store_url: str, tmp_path: Path
) -> tuple[list[bytes], subprocess.Popen[str]]:
    """A day's traffic published, and a consumer of small batches that has stored part of it:
    the lines, and the consumer."""
    provisioned(store_url)
    path, lines = traffic(tmp_path, calls=800)
    assert "failed 0" in samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={}).stdout
    worker = consumer(jet, tmp_path, store_url, "--batch", "20", "--ack-wait", "2")
    wait_until(lambda: stored_events(store_url) > 500, 60)
    return lines, worker


def test_a_consumer_killed_mid_batch_loses_nothing(
    jet: Jet, store_url: str, tmp_path: Path
) -> None:
    lines, first = mid_stream(jet, store_url, tmp_path)
    storing = children(first.pid)  # its processes that store the batches
    assert storing
    first.kill()  # SIGKILL, mid-stream: batches fetched and not acknowledged come back
    first.communicate(timeout=30)
    # Its storing processes leave too, rather than wait for work forever on their connections.
    wait_until(lambda: not any(map(alive, storing)), 20)
    assert stored_events(store_url) < len(keys(lines))  # it died mid-stream
    second = consumer(jet, tmp_path, store_url, "--batch", "20", "--ack-wait", "2")
    try:
        wait_until(lambda: all_stored(store_url, lines), 120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    assert second.returncode == 0
    assert stored_events(store_url) == len(keys(lines))


def test_a_storing_process_killed_mid_batch_loses_nothing(
    jet: Jet, store_url: str, tmp_path: Path
) -> None:
    lines, worker = mid_stream(jet, store_url, tmp_path)
    try:
        storing = [pid for pid in children(worker.pid) if b"spawn_main" in cmdline(pid)]
        assert storing
        for pid in storing:  # SIGKILL, mid-stream: the worker starts them again
            os.kill(pid, signal.SIGKILL)
        assert stored_events(store_url) < len(keys(lines))
        wait_until(lambda: all_stored(store_url, lines), 120)
    finally:
        worker.send_signal(signal.SIGTERM)
        log = worker.communicate(timeout=30)[1]
    assert worker.returncode == 0, log
    assert "a storing process died" in log
    assert stored_events(store_url) == len(keys(lines))


# -- faults of the broker and of the database ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NatsServer:
    """A `nats-server -js` of a test's own on loopback, its store in a folder that outlives
    restarts; optionally one node of a cluster."""

    def __init__(self, store: Path, port: int | None = None, *cluster: str) -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._args = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        self._args += ["-sd", str(store), *cluster]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NatsServer:
        self.process = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("nats-server did not start") from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)


def test_consumers_ride_out_a_nats_restart(store_url: str, tmp_path: Path) -> None:
    provisioned(store_url)
    server = NatsServer(tmp_path / "jetstream").start()
    jet = Jet("RESTART", "restart.events", "restart.rejected")
    args = ["--nats", server.url, "--stream", jet.stream, "--subject", jet.subject]
    path, lines = traffic(tmp_path, calls=800)
    try:
        assert "failed 0" in samtal("publish", str(path), *args, cwd=tmp_path, env={}).stdout
        with workers([*args, "--batch", "20"], store_url, 2, tmp_path):
            wait_until(lambda: stored_events(store_url) > 300, 60)
            server.stop(signal.SIGKILL)  # the broker dies mid-stream...
            time.sleep(1)
            server.start()  # ...and comes back with its store
            wait_until(lambda: all_stored(store_url, lines), 120)
    finally:
        server.stop()
    assert stored_events(store_url) == len(keys(lines))


def test_the_database_connection_cut_mid_batch(jet: Jet, tmp_path: Path) -> None:
    with postgres_database() as url:
        store = open_store(url)
        for org in ("org-1", "org-2"):
            store.add_org(org, "Europe/Stockholm", now=T0)
        store.close()
        path, lines = traffic(tmp_path, calls=800)
        assert "failed 0" in samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={}).stdout
        worker = consumer(jet, tmp_path, url, "--batch", "20")
        try:
            wait_until(lambda: stored_events(url) > 300, 60)
            import psycopg

            with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as holder:
                # Cut a connection of the worker's inside a batch's transaction. A batch that
                # has written its events takes its organisations' change numbers (their rows
                # in `orgs`, locked): holding those rows keeps it waiting there, mid-batch, to
                # be cut. (Cutting whichever transaction was seen under way missed now and
                # then on a busy machine: it had committed before the signal came, and the
                # pool quietly replaced the idle connection.)
                holder.execute("SELECT name FROM orgs FOR UPDATE")

                def cut() -> bool:
                    row = admin.execute(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> %s AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'",
                        (holder.info.backend_pid,),
                    ).fetchone()
                    return row is not None and row[0] >= 1

                wait_until(cut, 30)
                holder.rollback()
            wait_until(lambda: all_stored(url, lines), 120)
        finally:
            worker.send_signal(signal.SIGTERM)
            log = worker.communicate(timeout=30)[1]
        assert worker.returncode == 0, log
        assert "storing a batch failed" in log  # the cut hit a batch, which was tried again
        assert stored_events(url) == len(keys(lines))


def test_a_cluster_node_lost_while_consumers_run(store_url: str, tmp_path: Path) -> None:
    """JetStream is the distributed part: three nodes on loopback, the stream in three copies;
    one node is killed mid-stream and nothing is lost."""
    provisioned(store_url)
    routes = [free_port() for _ in range(3)]
    nodes = [
        NatsServer(
            tmp_path / f"node{n}",
            None,
            *("-n", f"node{n}", "--cluster_name", "samtal"),
            *("--cluster", f"nats://127.0.0.1:{routes[n]}"),
            "--routes",
            ",".join(f"nats://127.0.0.1:{port}" for i, port in enumerate(routes) if i != n),
        )
        for n in range(3)
    ]
    for node in nodes:
        node.start()
    cluster = ",".join(node.url for node in nodes)
    args = ["--nats", cluster, "--stream", "CLUSTERED", "--subject", "clustered.events"]
    path, lines = traffic(tmp_path, calls=800)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the cluster has elected its leaders and takes the stream
            published = samtal("publish", str(path), *args, "--replicas", "3", cwd=tmp_path, env={})
            if "failed 0" in published.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "failed 0" in published.stdout, published.stderr[-2000:]
        with workers([*args, "--batch", "20"], store_url, 2, tmp_path):
            wait_until(lambda: stored_events(store_url) > 300, 60)
            nodes[0].stop(signal.SIGKILL)
            wait_until(lambda: all_stored(store_url, lines), 120)
    finally:
        for node in nodes:
            node.stop()
    assert stored_events(store_url) == len(keys(lines))


def test_a_poison_message_is_dead_lettered_and_stops_nothing(
    jet: Jet, store_url: str, tmp_path: Path
) -> None:
    """Issue 13: one event with a NUL in its number (published straight to the stream, as a
    switch would) made the consumer retry its batch forever, store nothing else and ignore
    SIGTERM. Now it is dead-lettered within seconds, the rest is stored, and SIGTERM stops the
    worker within seconds."""
    provisioned(store_url)
    path, lines = traffic(tmp_path, calls=100)
    event = json.loads(lines[3])
    poison = [
        json.dumps({**event, "id": "nul-number", "number": "+46\u00007"}).encode(),
        json.dumps({**event, "id": "nul\u0000id"}).encode(),
    ]

    async def publish_raw() -> None:
        import nats

        connection = await nats.connect(NATS_URL)
        js = connection.jetstream()
        for raw in poison:
            await js.publish(f"{jet.subject}.{event['org']}", raw)
        await connection.close()

    path.write_bytes(b"".join(lines))
    with DeadLetters(jet.dead) as dead:
        assert "failed 0" in samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={}).stdout
        asyncio.run(publish_raw())
        began = time.monotonic()
        worker = consumer(jet, tmp_path, store_url, "--batch", "5000")  # one batch holds all
        try:
            wait_until(lambda: len(dead.messages) == 2, 30)
            dead_after = time.monotonic() - began
            wait_until(lambda: exact(store_url, lines), 30)
        finally:
            worker.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            log = worker.communicate(timeout=30)[1]
            stopped_in = time.monotonic() - stopping
    assert worker.returncode == 0, log
    assert stopped_in < 10, log
    assert dead_after < 20
    reasons = sorted(reason for _, reason in dead.messages)
    assert reasons[0].startswith("`id` holds a control character (U+0000)")
    assert reasons[1].startswith("`number` '+46\\x007' is not a number")
    assert stored_events(store_url) == len(keys(lines))


def test_an_org_that_is_no_subject_token_is_rejected_alone(jet: Jet, tmp_path: Path) -> None:
    """`.` and `a..b` could name an organisation, and an event of one made an empty token in
    its subject: NATS refused it and `samtal publish` ended in a traceback, the lines after it
    unpublished. Such a line is rejected with its reason; the rest is published."""
    path, lines = traffic(tmp_path, calls=5)
    strangers = [
        json.dumps({**json.loads(lines[0]), "id": f"odd-{n}", "org": org}).encode() + b"\n"
        for n, org in enumerate((".", "a..b", "a."))
    ]
    path.write_bytes(b"".join(strangers) + path.read_bytes())
    done = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
    assert "Traceback" not in done.stderr, done.stderr
    for line in (1, 2, 3):
        assert f"line {line}: `org` cannot name a NATS subject token" in done.stderr
    assert "rejected 4, failed 0" in done.stdout  # and traffic()'s line of an unknown type


def test_an_event_larger_than_a_nats_message_is_rejected_alone(jet: Jet, tmp_path: Path) -> None:
    """A valid event may carry fields samtal does not know (ignored), and so be larger than
    the server's largest message (1 MiB by default): NATS raised and `samtal publish` ended in
    a traceback, the lines after it unpublished. Such a line is rejected with its size."""
    path, lines = traffic(tmp_path, calls=5)
    event = json.loads(lines[0])
    huge = json.dumps({**event, "id": "huge", "note": "x" * (2 << 20)}).encode() + b"\n"
    path.write_bytes(huge + path.read_bytes())
    done = samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={})
    assert "Traceback" not in done.stderr, done.stderr
    assert "line 1: the event is 2,097,3" in done.stderr
    assert "bytes: the NATS server takes messages of 1,047,552 at most" in done.stderr
    assert "rejected 2, failed 0" in done.stdout  # and traffic()'s line of an unknown type


def test_a_dead_letter_too_large_for_nats_is_cut_and_the_worker_goes_on(
    jet: Jet, tmp_path: Path
) -> None:
    """An invalid message of nearly the server's largest size (published straight to the
    stream) was dead-lettered with its headers on top: over the largest size, so the server
    closed the worker's connection for good, and the worker then logged a failed fetch each
    second forever, the message never acknowledged. The letter is cut to fit, says so, and the
    worker stores what comes after it."""
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    provisioned(url)
    lines = traffic(tmp_path, calls=20)[1]

    async def publish_raw() -> int:
        import nats

        connection = await nats.connect(NATS_URL)
        largest = connection.max_payload
        await connection.jetstream().publish(f"{jet.subject}.org-1", b"x" * (largest - 5))
        await connection.close()
        return largest

    before, after = tmp_path / "before.ndjson", tmp_path / "after.ndjson"
    before.write_bytes(b"".join(lines[:20]))  # and the stream made
    after.write_bytes(b"".join(lines[20:]))
    with DeadLetters(jet.dead) as dead:
        assert (
            "failed 0" in samtal("publish", str(before), *jet.args(), cwd=tmp_path, env={}).stdout
        )
        largest = asyncio.run(publish_raw())
        worker = consumer(jet, tmp_path, url)
        try:
            wait_until(lambda: len(dead.messages) == 1, 30)
            assert (
                "failed 0"
                in samtal("publish", str(after), *jet.args(), cwd=tmp_path, env={}).stdout
            )
            wait_until(lambda: exact(url, lines), 30)
        finally:
            worker.send_signal(signal.SIGTERM)
            log = worker.communicate(timeout=30)[1]
    assert worker.returncode == 0, log
    letter, reason = dead.messages[0]
    assert reason.startswith("not valid JSON") and 0 < len(letter) < largest - 1024
    assert "fetching" not in log, log


def test_a_stream_that_takes_other_subjects_is_said(jet: Jet, tmp_path: Path) -> None:
    """A --stream that exists for other subjects than --subject: `publish` sent its events to
    no stream (a traceback from NATS) and `consume` could not make its consumer (another).
    Both say which subjects the stream takes."""
    path, _ = traffic(tmp_path, calls=5)
    assert "failed 0" in samtal("publish", str(path), *jet.args(), cwd=tmp_path, env={}).stdout
    other = [*jet.args()[:-1], jet.subject + "-other"]
    said = f"the stream {jet.stream} takes {jet.subject}.>, not {jet.subject}-other.>"
    published = samtal("publish", str(path), *other, cwd=tmp_path, env={})
    assert published.returncode == 1 and said in published.stderr, published.stderr
    consumed = samtal(
        "consume", *other, "--db", f"sqlite:///{tmp_path / 'c.db'}", cwd=tmp_path, env={}
    )
    assert consumed.returncode == 1 and said in consumed.stderr, consumed.stderr
    assert "Traceback" not in published.stderr + consumed.stderr
