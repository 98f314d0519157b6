"""The operator's command line, run as a user would: real processes, a real database file."""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.helpers import PRODUCT, samtal
from tests.helpers.databases import postgres_database
from tests.helpers.servers import answering


@pytest.mark.slow
def test_orgs_and_tokens(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'ops.db'}"]
    assert samtal("org", "add", "acme", *db, cwd=tmp_path).returncode == 0
    assert samtal("org", "add", "bolag", "--tz", "UTC", *db, cwd=tmp_path).returncode == 0
    again = samtal("org", "add", "acme", *db, cwd=tmp_path)
    assert again.returncode == 1 and "exists already" in again.stderr
    bad_zone = samtal("org", "add", "x", "--tz", "Mars/Base", *db, cwd=tmp_path)
    assert bad_zone.returncode == 2 and "unknown time zone" in bad_zone.stderr
    listed = samtal("org", "list", *db, cwd=tmp_path).stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [
        ["acme", "Europe/Stockholm"],
        ["bolag", "UTC"],
    ]

    read = samtal("token", "create", "acme", *db, cwd=tmp_path)
    ingest = samtal("token", "create", "--ingest", *db, cwd=tmp_path)
    assert read.returncode == ingest.returncode == 0
    secret = read.stdout.splitlines()[-1]
    assert re.fullmatch(r"samtal_r_[A-Za-z0-9_-]{43}", secret)
    assert ingest.stdout.splitlines()[-1].startswith("samtal_i_")
    assert samtal("token", "create", *db, cwd=tmp_path).returncode == 2
    assert samtal("token", "create", "nope", *db, cwd=tmp_path).returncode == 1
    revoked = samtal("token", "revoke", "1", *db, cwd=tmp_path)
    assert (revoked.returncode, revoked.stdout) == (0, "revoked token 1\n")
    again = samtal("token", "revoke", "1", *db, cwd=tmp_path)  # said "revoked token 1" again
    assert again.returncode == 0
    assert re.fullmatch(
        r"token 1 was revoked already, at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\n", again.stdout
    )
    assert samtal("token", "revoke", "42", *db, cwd=tmp_path).returncode == 1
    past_any = samtal("token", "revoke", "9" * 20, *db, cwd=tmp_path)  # was a traceback
    assert past_any.returncode == 1, past_any.stderr
    assert (
        past_any.stderr.strip()
        == f"error: no token with id {'9' * 20}: `samtal token list` shows them"
    )
    # privacy.md: a read token narrowed to scopes and response groups.
    narrow = ["token", "create", "acme", "--scope", "stats", "--groups", "622, 711", *db]
    narrow.append("--pseudonymize")
    assert samtal(*narrow, cwd=tmp_path).returncode == 0
    for wrong, reason in [
        (["--scope", "admin"], "unknown scope 'admin'"),
        (["--groups", ","], "names no response group"),
    ]:
        refused = samtal("token", "create", "acme", *wrong, *db, cwd=tmp_path)
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr
    refused = samtal("token", "create", "--ingest", "--scope", "stats", *db, cwd=tmp_path)
    assert refused.returncode == 2 and "an ingest token has none" in refused.stderr
    table = samtal("token", "list", *db, cwd=tmp_path).stdout.splitlines()
    rows = [line.split("\t") for line in table]
    assert rows[0] == [
        "id", "kind", "org", "created", "last used", "revoked", "scopes", "groups",
        "pseudonymized",
    ]  # fmt: skip
    assert [(r[0], r[1], r[2], r[5] != "-", *r[6:]) for r in rows[1:]] == [
        ("1", "read", "acme", True, "records,stats", "*", "no"),
        ("2", "ingest", "*", False, "-", "-", "no"),
        ("3", "read", "acme", False, "stats", "622,711", "yes"),
    ]
    assert secret not in (tmp_path / "ops.db").read_bytes().decode("latin-1")


def test_a_mistyped_database_path_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    # An operator who mistypes --db must not be told "no organisations" from a new, empty
    # database, left behind with its folders: only the commands that bring data in make one.
    db = ["--db", f"sqlite:///{tmp_path / 'typo' / 'samtal.db'}"]
    for command in [
        ["org", "list"],
        ["org", "set", "acme", "--retention-days", "7"],
        ["token", "list"],
        ["token", "create", "acme"],
        ["token", "revoke", "1"],
        ["webhook", "list"],
        ["webhook", "add", "acme", "https://example.com/in"],
        ["erase", "acme", "--call", "c-1"],
    ]:
        refused = samtal(*command, *db, cwd=tmp_path)
        assert refused.returncode == 2, (command, refused.stderr)
        assert f"no database at '{tmp_path / 'typo' / 'samtal.db'}'" in refused.stderr, command
        assert not (tmp_path / "typo").exists(), command
    # An installation's first ingest token may come before its first organisation.
    assert samtal("token", "create", "--ingest", *db, cwd=tmp_path).returncode == 0
    assert samtal("org", "add", "acme", *db, cwd=tmp_path).returncode == 0
    assert samtal("org", "list", *db, cwd=tmp_path).stdout.startswith("acme\t")


def test_a_postgresql_database_without_samtal_is_refused_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    # The PostgreSQL side of the same mistake: a URL that names another database of the server
    # (the customer's own, the server's default) had samtal's eleven tables made in it by a
    # command that only reads, and answered "no organisations".
    import psycopg

    with postgres_database() as url:
        for command in [["org", "list"], ["token", "list"], ["webhook", "list"],
                        ["erase", "acme", "--call", "c-1"]]:  # fmt: skip
            refused = samtal(*command, "--db", url, cwd=tmp_path)
            assert refused.returncode == 2, (command, refused.stderr)
            assert "no samtal database at" in refused.stderr, command
            assert "has no samtal tables" in refused.stderr, command
        with psycopg.connect(url) as db:
            made = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert made.fetchone() == (0,)
        assert samtal("org", "add", "acme", "--db", url, cwd=tmp_path).returncode == 0
        assert samtal("org", "list", "--db", url, cwd=tmp_path).stdout.startswith("acme\t")


def test_a_gzip_file_is_read_as_its_lines(tmp_path: Path) -> None:
    """Events are often kept compressed: import and aggregate read a gzip file (told by its
    first bytes, whatever its name, stdin too) as the lines inside it, and a damaged one is an
    error in one line."""
    env = {"SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'gz.db'}"}
    assert samtal("org", "add", "acme", cwd=tmp_path, env=env).returncode == 0
    plain = "".join(json.dumps(e) + "\n" for e in PRODUCT["events"]).encode()
    packed = gzip.compress(plain)
    (tmp_path / "events.ndjson").write_bytes(plain)
    (tmp_path / "events.bin").write_bytes(packed)
    first = samtal("import", "events.bin", cwd=tmp_path, env=env)
    assert (first.returncode, first.stdout.strip()) == (0, "accepted 17, duplicates 0, rejected 0")
    again = subprocess.run(
        [sys.executable, "-m", "samtal", "import", "-"],
        input=packed,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, **env},
        check=False,
    )
    assert again.stdout.decode().strip() == "accepted 0, duplicates 17, rejected 0"
    records = samtal("aggregate", "events.ndjson", cwd=tmp_path)
    assert records.returncode == 0 and json.loads(records.stdout) == PRODUCT["expected"]
    assert samtal("aggregate", "events.bin", cwd=tmp_path).stdout == records.stdout
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    for command in ("import", "aggregate"):
        cut = samtal(command, "cut.gz", cwd=tmp_path, env=env)
        assert cut.returncode == 1
        [said] = cut.stderr.strip().splitlines()
        assert said.startswith("error: cut.gz is damaged gzip near byte "), said


def test_import(tmp_path: Path) -> None:
    env = {"SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'imp.db'}"}
    assert samtal("org", "add", "acme", cwd=tmp_path, env=env).returncode == 0
    lines = [json.dumps(e) for e in PRODUCT["events"]]
    (tmp_path / "events.ndjson").write_text("\n".join(lines) + "\n")
    first = samtal("import", "events.ndjson", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "accepted 17, duplicates 0, rejected 0"
    # The planner knows what the import wrote: a command run next (`samtal erase`) or a
    # server before its first duty round plans with it (made empty with the file, SQLite's
    # statistics named `meta` alone, and erasing a number took minutes).
    with closing(sqlite3.connect(tmp_path / "imp.db")) as db:
        tuned = {t for (t,) in db.execute("SELECT DISTINCT tbl FROM sqlite_stat1")}
    assert {"events", "calls", "records"} <= tuned, tuned
    messy = "\n".join(
        [
            lines[0],
            "{",
            json.dumps(
                {
                    "id": "x",
                    "org": "nobody",
                    "call": "c",
                    "at": "2017-01-04T10:00:00Z",
                    "type": "ended",
                }
            ),
        ]
    )
    second = samtal("import", "-", cwd=tmp_path, env=env, stdin=messy.encode())
    assert second.returncode == 1
    assert second.stdout.strip() == "accepted 0, duplicates 1, rejected 2"
    assert "line 2: not valid JSON" in second.stderr
    assert (
        "1 line(s) of the unknown organisation 'nobody': add it with `samtal org add nobody`"
        in (second.stderr)
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_demo(cwd: Path) -> tuple[list[dict[str, object]], str, str, str]:
    """Start `samtal demo`, paste its curl line's URL and token; what it answers, the token,
    what the demo said before it, and what it logged."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "samtal", "demo", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout or ()])
    reader.start()
    try:
        curl = None
        said = ""
        deadline = time.monotonic() + 60
        while curl is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    pytest.fail(f"samtal demo ended: {process.stderr.read()}")  # type: ignore[union-attr]
                continue
            if line.startswith("curl "):
                curl = line.strip()
            else:
                said += line
        assert curl is not None, "no curl line within a minute"
        words = shlex.split(curl)
        header, url = words[words.index("-H") + 1], words[-1]
        assert "%20" in url and " " not in url
        while True:
            try:
                response = httpx.get(url, headers=dict([header.split(": ", 1)]), timeout=10)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200, response.text
        records: list[dict[str, object]] = response.json()
        process.terminate()
        logged = process.stderr.read() if process.stderr is not None else ""
        return records, header.split("Bearer ")[1], said, logged
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=20)  # it ends at the closed pipe's end
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.slow
def test_demo_serves_records_and_runs_again(tmp_path: Path) -> None:
    first, token, said, logged = _run_demo(tmp_path)
    assert "a new read token, kept in samtal-demo.db.token" in said
    assert "GET /cdr/historik 200" in logged  # the user sees each request they make
    assert len(first) > 500  # a working day, 08:00-17:00, of a 2,000-calls-a-day company
    assert list(first[0]) == [
        "callerNo",
        "start",
        "receivingNo",
        "received",
        "calleeNo",
        "calleeAnswered",
        "stop",
    ]
    assert (tmp_path / "samtal-demo.db").exists()
    again, same_token, said, _ = _run_demo(tmp_path)
    assert again == first  # reused: the same traffic, not doubled
    assert same_token == token and "the read token kept in samtal-demo.db.token" in said
    assert "were loaded before (nothing new to add)" in said and "0 new" not in said
    assert (
        len(
            samtal(
                "token", "list", "--db", "sqlite:///samtal-demo.db", cwd=tmp_path
            ).stdout.splitlines()
        )
        == 2
    )


@pytest.mark.slow
def test_demo_on_a_busy_port_makes_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused = samtal("demo", "--port", str(busy.getsockname()[1]), cwd=tmp_path)
    assert refused.returncode == 2
    assert "cannot serve on 127.0.0.1:" in refused.stderr and "--port" in refused.stderr
    assert "curl" not in refused.stdout and "Bearer" not in refused.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_new_organisation_name_is_one_every_command_can_take(tmp_path: Path) -> None:
    """`-x` was taken, and every command after read it as an option; `.` and `a..b` were
    taken, and made an empty token in a NATS subject. Dots only between the others."""
    db = ["--db", f"sqlite:///{tmp_path / 'names.db'}"]
    for name in ("-x", ".", "a..b", "a.", ".a"):
        refused = samtal("org", "add", *db, "--", name, cwd=tmp_path)
        assert refused.returncode == 1, (name, refused.stderr)
        assert "('-' never first, '.' only between the others)" in refused.stderr
    for name in ("org.name", "a-b_c", "x-"):
        assert samtal("org", "add", name, *db, cwd=tmp_path).returncode == 0


def test_serve_raises_its_open_files_to_the_hard_limit(tmp_path: Path) -> None:
    """Started as systemd starts a service (a soft limit of 1,024 open files; 256 here), the
    server turned clients away at about that many connections. It takes the hard limit."""
    import resource

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "samtal", "serve", "--port", str(port),
         "--db", f"sqlite:///{tmp_path / 'files.db'}"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)),
    )  # fmt: skip
    try:
        answering(f"http://127.0.0.1:{port}", server)
        limits = Path(f"/proc/{server.pid}/limits").read_text()
        assert re.search(r"Max open files\s+4096\s+4096", limits), limits
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_serve_on_a_busy_port_or_a_foreign_host_says_so(tmp_path: Path) -> None:
    """uvicorn logged a busy port and exited 3; a busy --metrics-port, or the API's own, was a
    traceback from prometheus' server, or uvicorn's exit once the metrics had it. Each is a
    sentence and exit 2 now, before the database is opened or made."""
    db = ["--db", f"sqlite:///{tmp_path / 'served.db'}"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        for args, said in [
            (["--port", taken], f"cannot serve on 127.0.0.1:{taken} ("),
            (["--port", "0", "--metrics-port", taken], "pick another port with --metrics-port"),
            (["--port", "18999", "--metrics-port", "18999"], "--metrics-port must be another"),
            (["--host", "192.0.2.1"], "give --host an address of this machine"),  # TEST-NET-1
            (["--host", "no-such-host.invalid"], "give --host an address of this machine"),
        ]:
            refused = samtal("serve", *args, *db, cwd=tmp_path)
            assert refused.returncode == 2 and said in refused.stderr, (args, refused.stderr)
            assert "Traceback" not in refused.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_orgs_added_from_a_file(tmp_path: Path) -> None:
    """Issue 17: an operator with thousands of customers provisions them in one command."""
    db = f"sqlite:///{tmp_path / 'orgs.db'}"
    names = [f"kund-{n}" for n in range(2000)]
    lines = [name if n % 2 else f"{name},UTC" for n, name in enumerate(names)]
    (tmp_path / "orgs.txt").write_text("\n".join(["# operator's list", *lines, ""]))
    done = samtal("org", "add", "--from", "orgs.txt", "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "added 2,000 organisations; 0 existed already"
    listed = samtal("org", "list", "--db", db, cwd=tmp_path).stdout.splitlines()
    zones = dict(line.split("\t")[:2] for line in listed)
    assert len(zones) == 2000
    assert (zones["kund-0"], zones["kund-1"]) == ("UTC", "Europe/Stockholm")
    # Again, with one new: the others exist already and are left as they are.
    again = samtal(
        "org", "add", "--from", "-", "--db", db, cwd=tmp_path,
        stdin=b"kund-1000,UTC\nkund-new\nkund-1\n",
    )  # fmt: skip
    assert again.returncode == 0
    # In the file's order, with their lines.
    assert again.stderr.splitlines() == [
        "line 1: kund-1000 exists already: left as it is",
        "line 3: kund-1 exists already: left as it is",
    ]
    assert again.stdout.strip() == "added 1 organisation; 2 existed already"
    assert "kund-1\tEurope/Stockholm" in samtal("org", "list", "--db", db, cwd=tmp_path).stdout
    # Any invalid line refuses the whole file, with the line numbers.
    bad = samtal(
        "org", "add", "--from", "-", "--db", db, cwd=tmp_path,
        stdin=b"fine-1\nnot fine\nfine-2,Mars/Olympus\n",
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[:2] == [
        "line 2: 'not fine' cannot name an organisation: use 1 to 64 ASCII letters, digits, '-', "
        "'_' or '.' ('-' never first, '.' only between the others)",
        "line 3: unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Stockholm'",
    ]
    assert "fine-1" not in samtal("org", "list", "--db", db, cwd=tmp_path).stdout
    # A name given twice is a bad line too: both its lines are named.
    twice = samtal(
        "org", "add", "--from", "-", "--db", db, cwd=tmp_path,
        stdin=b"fine-1\nfine-2\nfine-1,UTC\n",
    )  # fmt: skip
    assert twice.returncode == 1
    assert twice.stderr.splitlines()[0] == "line 3: 'fine-1' is on line 1 already"
    assert "fine-2" not in samtal("org", "list", "--db", db, cwd=tmp_path).stdout
    # A spreadsheet's export: a byte order mark first, and CRLF line ends.
    (tmp_path / "export.csv").write_bytes(b"\xef\xbb\xbfkund-bom,UTC\r\nkund-crlf\r\n")
    exported = samtal("org", "add", "--from", "export.csv", "--db", db, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == "added 2 organisations; 0 existed already"
    listed = samtal("org", "list", "--db", db, cwd=tmp_path).stdout
    assert "kund-bom\tUTC" in listed and "kund-crlf\tEurope/Stockholm" in listed


@pytest.mark.slow
def test_read_tokens_made_from_a_file(tmp_path: Path) -> None:
    """Provisioning's other half: a read token for each of thousands of customers in one
    command (one process each took 25 minutes for 10,000), each printed once with its
    organisation, all alike, and each one working."""
    from samtal.store import open_store

    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    names = [f"kund-{n}" for n in range(2000)]
    lines = [name if n % 2 else f"{name},UTC" for n, name in enumerate(names)]
    (tmp_path / "orgs.txt").write_text("\n".join(["# the customers", *lines, ""]))
    # The same file as `org add --from`'s: the zones are not the tokens' business.
    assert samtal("org", "add", "--from", "orgs.txt", "--db", db, cwd=tmp_path).returncode == 0
    made = samtal(
        "token", "create", "--from", "orgs.txt", "--scope", "records", "--db", db, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    assert made.stderr.strip() == (
        "made 2,000 read tokens; keep them now, they are not shown again"
    )
    rows = [line.split("\t") for line in made.stdout.splitlines()]
    assert [(org, token_id) for org, token_id, _ in rows] == [
        (name, str(n)) for n, name in enumerate(names, 1)
    ]
    store = open_store(db)
    try:
        for org, token_id, secret in rows[::397]:
            found = store.token_for(secret)
            assert found is not None
            assert (found.id, found.kind, found.org, found.scopes) == (
                int(token_id),
                "read",
                org,
                ("records",),
            )
    finally:
        store.close()
    # Any invalid or unknown name refuses the whole file, by line; nothing is made.
    bad = samtal(
        "token", "create", "--from", "-", "--db", db, cwd=tmp_path,
        stdin=b"kund-1\nnope\nnot fine\nkund-1\n",
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "line 2: unknown organisation 'nope'",
        "line 3: 'not fine' cannot name an organisation: use 1 to 64 ASCII letters, digits, '-', "
        "'_' or '.' ('-' never first, '.' only between the others)",
        "line 4: 'kund-1' is on line 1 already",
        "error: 3 invalid line(s): no token was made",
    ]
    assert len(samtal("token", "list", "--db", db, cwd=tmp_path).stdout.splitlines()) == 2001
    for wrong in (["kund-1"], ["--ingest"]):
        refused = samtal("token", "create", *wrong, "--from", "orgs.txt", "--db", db, cwd=tmp_path)
        assert refused.returncode == 2 and "--from makes read tokens" in refused.stderr


def test_an_organisation_keeps_less_than_the_installation(tmp_path: Path) -> None:
    """privacy.md: `samtal org set ORG --retention-days N|default`, checked against the
    installation's retention, and shown by `samtal org list`."""
    env = {
        "SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'kept.db'}",
        "SAMTAL_RETENTION_DAYS": "92",
    }
    for name in ("acme", "bolag"):
        assert samtal("org", "add", name, cwd=tmp_path, env=env).returncode == 0
    shorter = samtal("org", "set", "acme", "--retention-days", "30", cwd=tmp_path, env=env)
    assert (shorter.returncode, shorter.stdout.strip()) == (0, "acme keeps 30 days")
    listed = samtal("org", "list", cwd=tmp_path, env=env).stdout.splitlines()
    assert [line.split("\t")[3] for line in listed] == ["30 days", "92 days (installation)"]
    for bad, reason in [
        ("93", "93 is out of range: from 1 to 92, the installation's"),
        ("0", "0 is out of range"),
        ("month", "'month' is not a number of days or `default`"),
    ]:
        refused = samtal("org", "set", "bolag", "--retention-days", bad, cwd=tmp_path, env=env)
        assert refused.returncode == 2 and reason in refused.stderr, refused.stderr
    unknown = samtal("org", "set", "nope", "--retention-days", "5", cwd=tmp_path, env=env)
    assert unknown.returncode == 1 and "unknown organisation 'nope'" in unknown.stderr
    back = samtal("org", "set", "acme", "--retention-days", "default", cwd=tmp_path, env=env)
    assert back.stdout.strip() == "acme keeps 92 days (installation)"
    listed = samtal("org", "list", cwd=tmp_path, env=env).stdout.splitlines()
    assert [line.split("\t")[3] for line in listed] == ["92 days (installation)"] * 2
    # An installation that keeps everything takes up to a hundred years: 999999999 days was
    # taken, and every read of that organisation was a 500 (no date that far back).
    env["SAMTAL_RETENTION_DAYS"] = "0"
    refused = samtal("org", "set", "acme", "--retention-days", "999999999", cwd=tmp_path, env=env)
    assert refused.returncode == 2, refused.stderr
    assert "999999999 is out of range: from 1 to 36525 (a hundred years)" in refused.stderr
    longest = samtal("org", "set", "acme", "--retention-days", "36525", cwd=tmp_path, env=env)
    assert longest.stdout.strip() == "acme keeps 36525 days"


def test_erase(tmp_path: Path) -> None:
    """privacy.md: `samtal erase ORG --call ID | --number NUMBER [--from --to]`."""
    env = {"SAMTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'erase.db'}"}
    assert samtal("org", "add", "acme", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "events.ndjson").write_text(
        "".join(json.dumps(e) + "\n" for e in PRODUCT["events"])
    )
    assert samtal("import", "events.ndjson", cwd=tmp_path, env=env).returncode == 0
    number = "+4672111111"
    calls = {e["call"] for e in PRODUCT["events"] if number in (e.get("number"), e.get("dialed"))}
    # Outside the period: nothing; then within it, every call the number is in.
    later = samtal(
        "erase", "acme", "--number", number, "--from", "2017-01-05", cwd=tmp_path, env=env
    )
    assert later.stdout.strip() == "erased 0 call(s) of acme (erasure 1)", later.stderr
    done = samtal("erase", "acme", "--number", number, "--to", "2017-01-04", cwd=tmp_path, env=env)
    assert done.stdout.strip() == f"erased {len(calls)} call(s) of acme (erasure 2)"
    for wrong, code, reason in [
        ([], 2, "give --call ID (one or more) or --number NUMBER"),
        (["--call", "x", "--from", "2017-01-04"], 2, "--from and --to choose the calls"),
        (["--number", number, "--from", "someday"], 1, "`from` ('someday') is not in a form"),
        # A number mistyped matches no call: refused, not "erased 0 call(s)" and an audit row.
        (["--number", "+46 72 111 11 11"], 2, "`--number` '+46 72 111 11 11' is not a number"),
        (["--call", "c\t1"], 2, "`--call` holds a control character (U+0009)"),
    ]:
        refused = samtal("erase", "acme", *wrong, cwd=tmp_path, env=env)
        assert (refused.returncode, reason in refused.stderr) == (code, True), refused.stderr
    trail = samtal("erase", "acme", "--call", "x", cwd=tmp_path, env=env)
    assert trail.stdout.strip() == "erased 0 call(s) of acme (erasure 3)"  # none refused kept
    unknown = samtal("erase", "nobody", "--call", "x", cwd=tmp_path, env=env)
    assert unknown.returncode == 1 and "unknown organisation 'nobody'" in unknown.stderr


def test_simulate_refuses_what_it_cannot_make_and_its_old_days_aggregate(tmp_path: Path) -> None:
    """nan calls a day made nothing, inf never ended, a day past the calendar ended in a
    traceback; a day of 1850 was written at Stockholm's +01:12:12, which `aggregate` (and any
    RFC 3339 reader) refused, every line."""
    for args, reason in [
        (["--calls-per-day", "nan"], "nan is not a number of calls"),
        (["--calls-per-day", "inf"], "inf is not a number of calls"),
        (["--start", "9999-12-30"], "1 day(s) from 9999-12-30 leave the days samtal simulates"),
        (["--days", "1000000"], "1000000 day(s) back from today leave the days"),
        (["--start", "0001-01-01"], "from 0001-01-01 leave the days samtal simulates"),
    ]:
        refused = samtal("simulate", *args, cwd=tmp_path)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert reason in refused.stderr, refused.stderr
    made = samtal("simulate", "--start", "1850-01-01", "--calls-per-day", "20", cwd=tmp_path)
    assert made.returncode == 0 and '+01:13"' in made.stdout, made.stderr
    (tmp_path / "old.ndjson").write_text(made.stdout)
    records = samtal("aggregate", "old.ndjson", cwd=tmp_path)
    assert (records.returncode, records.stderr) == (0, ""), records.stderr
    assert len(json.loads(records.stdout)) == made.stdout.count('"type":"ended"') > 0


def test_stream_names_nats_would_refuse_are_refused_first(tmp_path: Path) -> None:
    """A stream name with a `.`, a subject with a space, an empty one or a wildcard, a stream
    kept for nan days: each reached NATS and ended in a traceback, or (a wildcard) published
    where no consumer of samtal reads. Refused before any connection or database (exit 2)."""
    (tmp_path / "events.ndjson").write_text(json.dumps(PRODUCT["events"][0]) + "\n")
    unreachable = ["--nats", "nats://127.0.0.1:1"]
    for command, args, reason in [
        ("publish", ["--stream", "bad.name"], "--stream 'bad.name' is not a JetStream name"),
        ("publish", ["--subject", "a b"], "--subject 'a b' is not a NATS subject"),
        ("publish", ["--subject", "x.*"], "--subject 'x.*' is not a NATS subject"),
        ("publish", ["--subject", ""], "--subject '' is not a NATS subject"),
        ("publish", ["--max-age-days", "nan"], "--max-age-days must be a number of days up to"),
        ("consume", ["--durable", "a.b"], "--durable 'a.b' is not a JetStream name"),
        ("consume", ["--dead-letter", "x.>"], "--dead-letter 'x.>' is not a NATS subject"),
        ("consume", ["--ack-wait", "inf"], "--ack-wait must be a number of seconds up to"),
    ]:
        file = ["events.ndjson"] if command == "publish" else ["--db", "sqlite:///none.db"]
        refused = samtal(command, *file, *unreachable, *args, cwd=tmp_path)
        assert refused.returncode == 2 and reason in refused.stderr, (args, refused.stderr)
    assert not (tmp_path / "none.db").exists()


def test_output_that_cannot_be_written_is_one_line_of_error(tmp_path: Path) -> None:
    """A folder that is not there, a disk that is full: said in one line, not a traceback."""
    nowhere = tmp_path / "no such folder" / "events.ndjson"
    made = samtal("simulate", "--out", str(nowhere), cwd=tmp_path)
    assert made.returncode == 1
    assert made.stderr.strip() == f"Error: cannot write {nowhere}: No such file or directory"
    (tmp_path / "events.ndjson").write_text(
        "".join(json.dumps(e) + "\n" for e in PRODUCT["events"])
    )
    with open("/dev/full", "wb") as full:  # Linux's always-full device
        for args in (["simulate"], ["aggregate", "events.ndjson"]):
            done = subprocess.run(
                [sys.executable, "-m", "samtal", *args],
                cwd=tmp_path,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            assert done.returncode == 1, done.stderr
            assert done.stderr.strip().splitlines()[-1] == (
                "Error: cannot write standard output: No space left on device"
            ), done.stderr


@pytest.mark.parametrize(
    ("args", "env", "module", "said"),
    [
        (("consume",), {}, "nats", "`samtal consume` needs its extra: pip install 'samtal[nats]'"),
        (
            ("publish", "-"),
            {},
            "nats",
            "`samtal publish` needs its extra: pip install 'samtal[nats]'",
        ),
        (
            ("serve", "--port", "0"),
            {"SAMTAL_REDIS_URL": "redis://127.0.0.1:6379/0"},
            "coredis",
            "SAMTAL_REDIS_URL (rate limits shared through Redis) needs its extra: "
            "pip install 'samtal[redis]'",
        ),
        (
            ("sync", "--from", "http://127.0.0.1:9", "--into", "sqlite:///copy.db"),
            {"SAMTAL_TOKEN": "samtal_r_x"},
            "sqlalchemy",
            "`samtal sync` needs its extra: pip install 'samtal[sync]'",
        ),
        (
            ("stats", "--db", "sqlite:///copy.db", "--from", "2026-12-01"),
            {},
            "matplotlib",
            "`samtal stats` needs its extra: pip install 'samtal[stats]'",
        ),
    ],
)
def test_a_command_without_its_extra_says_what_to_install(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], module: str, said: str
) -> None:
    """The server installs lean (pyproject's extras): a command whose extra is missing says
    which to add, in one line (consume and publish showed a traceback, and so did serve with
    SAMTAL_REDIS_URL set). The extra's package is hidden here by one that cannot be imported."""
    hidden = tmp_path / "hidden"
    (hidden / module).mkdir(parents=True)
    (hidden / module / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join(p for p in (str(hidden), os.environ.get("PYTHONPATH")) if p)
    done = samtal(*args, cwd=tmp_path, env={**env, "PYTHONPATH": path})
    assert (done.returncode, done.stderr.strip()) == (1, f"Error: {said}")
