"""Faults on real processes: every server process killed with SIGKILL mid-stream, an import
killed so too, several workers on one port, the background duties led by one of them. On both
engines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import Event, decode_batch
from samtal.ingest import IMPORT_BATCH_ONE_WRITER
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from samtal.times import zone
from tests.helpers import T0, VECTORS, samtal
from tests.helpers.databases import stored_events
from tests.helpers.servers import answering, metric, metric_values, serving

# Kills and restarts server processes.
pytestmark = pytest.mark.slow


#: Clients posting at once: several to each of the two processes, so that on SQLite batches wait
#: for the one writer and are stored together (group commit) when the processes are killed.
SENDERS = 6


def test_every_server_process_killed_mid_stream(store_url: str, tmp_path: Path) -> None:
    """Batches answered before the kill are kept, the others are sent again after the restart:
    nothing is lost or doubled. On SQLite the kill must fall while batches share transactions:
    a group that dies dies whole, and none of its callers had an answer."""
    store = open_store(store_url)
    store.add_org("org-1", "Europe/Stockholm", now=T0)
    ingest = store.create_token("ingest", org=None, now=T0)[1]
    store.close()
    traffic = TrafficSettings(
        orgs=1, days=1, seed=5, start=date(2017, 1, 4), calls_per_day=1500, duplicates=0.05
    )
    lines = list(event_lines(traffic))
    batches = [b"".join(lines[i : i + 150]) for i in range(0, len(lines), 150)]
    answered: set[int] = set()
    auth = {"Authorization": f"Bearer {ingest}"}

    def post(base: str, numbers: list[int]) -> None:
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            for n in numbers:
                try:
                    response = client.post("/events", content=batches[n])
                except httpx.TransportError:
                    return  # the server is gone: this batch's answer never came
                assert response.status_code == 200, response.text
                answered.add(n)

    with serving(store_url, tmp_path) as (base, server):
        senders = [
            threading.Thread(target=post, args=(base, list(range(k, len(batches), SENDERS))))
            for k in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        grouped = store_url.startswith("postgresql")  # several writers there: no groups
        while len(answered) < len(batches) // 3 or not grouped:
            assert len(answered) < len(batches) * 2 // 3, "no batches were stored together"
            if not grouped:
                grouped = _stored_together(base, auth)
            time.sleep(0.005)
        os.killpg(server.pid, signal.SIGKILL)  # uvicorn's supervisor and both workers
        for sender in senders:
            sender.join(60)
    assert 0 < len(answered) < len(batches)
    with serving(store_url, tmp_path) as (base, _):
        post(base, [n for n in range(len(batches)) if n not in answered])
    assert len(answered) == len(batches)

    _assert_stored_once_with_exact_records(store_url, decode_batch(lines).events)


def test_an_import_killed_mid_stream_and_run_again(store_url: str, tmp_path: Path) -> None:
    """`samtal import` killed with SIGKILL (with its decoding process) once some of its
    transactions are committed and before the last, then run again over the same file: every
    event is stored once, and the records are exactly those of the events (events.md: ingest is
    at-least-once and idempotent). The file is three batches or more on either engine."""
    settings = TrafficSettings(orgs=1, days=2, seed=9, start=date(2017, 3, 6), calls_per_day=8500)
    lines = [line.rstrip(b"\n") for line in event_lines(settings)]
    assert len(lines) > 2 * IMPORT_BATCH_ONE_WRITER  # SQLite's batches, the larger
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    events = decode_batch(lines).events
    unique = len({e.id for e in events})
    assert samtal("org", "add", "org-1", "--db", store_url, cwd=tmp_path).returncode == 0
    command = [sys.executable, "-m", "samtal", "import", str(source), "--db", store_url]
    importer = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while stored_events(store_url) == 0:
        assert importer.poll() is None, "the import ended before its first commit was seen"
        assert time.monotonic() < deadline, "no batch was committed"
        time.sleep(0.02)
    os.killpg(importer.pid, signal.SIGKILL)  # the import and its decoding process
    importer.wait(30)
    assert 0 < stored_events(store_url) < unique, "the kill fell before or after the import"
    again = samtal("import", str(source), "--db", store_url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    _assert_stored_once_with_exact_records(store_url, events)


def _assert_stored_once_with_exact_records(store_url: str, events: list[Event]) -> None:
    """Every event of org-1 stored once (nothing lost, nothing doubled), and its records
    exactly those the events make."""
    assert stored_events(store_url) == len({e.id for e in events})
    expected = [orjson.dumps(r.render(zone("Europe/Stockholm"))) for r in aggregate(events)]
    store = open_store(store_url)
    assert [r for page in store.records(org="org-1", start=0, end=2**62) for r in page] == expected
    store.close()


def _stored_together(base: str, auth: dict[str, str]) -> bool:
    """Whether the server has stored batches together in one transaction yet."""
    page = httpx.get(f"{base}/metrics", headers=auth, timeout=10)
    assert page.status_code == 200, page.text
    scrape = metric_values(page.text)
    alone = metric(scrape, "samtal_ingest_batches_per_commit_bucket", le="1.0")
    return metric(scrape, "samtal_ingest_batches_per_commit_count") > alone


def test_one_process_leads_the_duties(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=T0)
    ingest = store.create_token("ingest", org=None, now=T0)[1]
    read = store.create_token("read", org="acme", now=T0)[1]
    store.close()
    vector = next(v for v in VECTORS if v["name"] == "no-record-yet")  # calls without a stop
    body = "".join(json.dumps(e) + "\n" for e in vector["events"])
    quick = {"SAMTAL_IDLE_CLOSE_HOURS": "0.0003", "SAMTAL_DUTY_INTERVAL_SECONDS": "0.2"}
    with serving(store_url, tmp_path, **quick) as (base, server):
        with httpx.Client(base_url=base, timeout=30) as client:
            posted = client.post(
                "/events", content=body, headers={"Authorization": f"Bearer {ingest}"}
            )
            assert posted.status_code == 200
            deadline = time.monotonic() + 30
            while True:  # closed for being idle (1 s), by the duties
                got = client.get(
                    "/cdr/historik?from=2017-03-08", headers={"Authorization": f"Bearer {read}"}
                ).json()
                if got or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert [r["stop"] for r in got] == ["2017-03-08T09:00:07.000+01:00"]
            time.sleep(1)  # more rounds: the other worker must still not lead
        os.killpg(server.pid, signal.SIGTERM)
        log = server.communicate(timeout=30)[1]
    running = log.split("Shutting down")[0]  # while shutting down, the other may take over
    assert running.count("this process leads the background duties") == 1, log
    assert running.count("Started server process") == 2, log


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """`serve --workers 2` whose supervisor is killed with SIGKILL (not its process group),
    once serving and while its workers still start: the workers stop within seconds and free
    the port. They served on before, and a restart could not bind the port they held. SQLite
    alone: what is tested is the processes."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    with serving(url, tmp_path) as (base, server):
        workers = _children(server.pid)
        assert len(workers) == 2  # uvicorn's workers, not its resource tracker
        server.kill()
        _gone(workers)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/healthz", timeout=2)
        log = server.communicate(timeout=30)[1]
    assert log.count("the supervising process") == 2, log
    starting = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--workers", "2", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, "SAMTAL_DATABASE_URL": url},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while len(workers := _children(starting.pid)) < 2:
        assert time.monotonic() < deadline and starting.poll() is None, "no workers started"
        time.sleep(0.01)
    starting.kill()  # before the workers have loaded the app, as a rule
    _gone(workers)
    starting.communicate(timeout=30)


def _gone(pids: list[int], seconds: float = 30) -> None:
    """Wait until none of `pids` runs (a zombie does not: it waits for init to reap it)."""
    deadline = time.monotonic() + seconds
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker served on without its supervisor"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc, that run samtal's app."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_a_full_disk_is_a_503_and_the_batch_is_sent_again(tmp_path: Path) -> None:
    """SQLite on a disk that is full (here: a file size limit, which fails writes as a full
    disk does): a batch was a 500, with a traceback in the log for each. It is a 503 that says
    nothing of the batch was stored, reads go on, and the same batch is taken once there is
    room (a server without the limit, on the same database)."""
    import resource

    url = f"sqlite:///{tmp_path / 'full.db'}"
    store = open_store(url)
    store.add_org("org-1", "Europe/Stockholm", now=T0)
    ingest = store.create_token("ingest", org=None, now=T0)[1]
    read = store.create_token("read", org="org-1", now=T0)[1]
    store.close()
    settings = TrafficSettings(orgs=1, days=1, seed=3, start=date(2017, 3, 6), calls_per_day=9000)
    lines = [line.rstrip(b"\n") for line in event_lines(settings)]
    batches = [b"\n".join(lines[k : k + 3000]) for k in range(0, len(lines), 3000)]

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--port", str(port), "--db", url],
        cwd=tmp_path,
        env={**os.environ, "SAMTAL_RETENTION_DAYS": "0"},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limited,
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ingest}"}
    try:
        answering(base, server)
        with httpx.Client(base_url=base, timeout=60) as client:
            answers = []
            for batch in batches:
                answers.append(client.post("/events", content=batch, headers=auth))
                if answers[-1].status_code != 200:
                    break
            full = answers[-1]
            assert full.status_code == 503, [a.status_code for a in answers]
            assert "nothing of this was stored" in full.json()["detail"], full.text
            reads = client.get(
                "/cdr/historik?from=2017-03-06", headers={"Authorization": f"Bearer {read}"}
            )
            assert reads.status_code == 200, reads.text
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1]
    assert "Traceback" not in log, log
    with serving(url, tmp_path) as (base, _), httpx.Client(base_url=base, timeout=60) as client:
        for batch in batches[len(answers) - 1 :]:
            assert client.post("/events", content=batch, headers=auth).status_code == 200
    _assert_stored_once_with_exact_records(url, decode_batch(lines).events)
    # `samtal import` on the full disk: said in a line, not a traceback.
    (tmp_path / "events.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    small = f"sqlite:///{tmp_path / 'small.db'}"
    assert samtal("org", "add", "org-1", "--db", small, cwd=tmp_path).returncode == 0
    imported = subprocess.run(
        [sys.executable, "-m", "samtal", "import", "events.ndjson", "--db", small],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limited,
        check=False,
    )
    assert imported.returncode == 1 and "Traceback" not in imported.stderr, imported.stderr
    assert imported.stderr.startswith("error: the database cannot be written"), imported.stderr
