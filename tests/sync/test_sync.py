"""`samtal sync` from a live samtal server into real SQLite, PostgreSQL and MariaDB databases:
equal to `view=detailed` after the first run, after late events changed and removed records,
after a sync killed with SIGKILL midway was run again, and after the cursor expired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.dialects import mysql, postgresql

from samtal.api import create_app
from samtal.cli import main
from samtal.clock import system_clock
from samtal.events import decode_batch
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from samtal.sync import Copy, tables, target_url
from tests.helpers import disappearing, event_line
from tests.helpers.databases import mariadb_database, postgres_database
from tests.helpers.servers import Live, Server

# Serves and syncs into three databases, killing syncs midway.
pytestmark = pytest.mark.slow

TARGETS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'copy.db'}"
    elif request.param == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        with mariadb_database() as url:
            yield url


def copied(target: str, table: str = "call_records") -> list[dict[str, Any]]:
    """The copy's rows as the records they hold, checked against their columns."""
    copy = Copy(target, "-", table=table)
    with copy.engine.connect() as db:
        rows = db.execute(sa.select(copy.records).order_by(copy.records.c.id)).mappings().all()
    copy.close()
    out = []
    for row in rows:
        record = row["record"] if isinstance(row["record"], dict) else json.loads(row["record"])
        assert (row["id"], row["version"], row["seq"]) == (
            record["id"],
            record["version"],
            record["seq"],
        )
        assert row["caller_no"] == record["callerNo"] and row["callee_no"] == record["calleeNo"]
        assert row["outcome"] == record.get("outcome")
        start = row["start"]
        expected = _utc(record["start"])
        assert (start if start.tzinfo else start.replace(tzinfo=expected.tzinfo)) == expected
        out.append(record)
    return sorted(out, key=lambda r: r["id"])


def _utc(text: str) -> Any:
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).astimezone(UTC)


def run_sync(live: Live, target: str, *extra: str) -> str:
    result = CliRunner().invoke(
        main,
        ["sync", "--from", live.url, "--into", target, *extra],
        env={"SAMTAL_TOKEN": live.read},
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_sync_keeps_an_exact_copy(live: Live, target: str) -> None:
    out = run_sync(live, target)
    assert "the copy is up to date" in out
    first = copied(target)
    assert first == live.detailed() and len(first) > 700
    assert any(r["id"] == "c-4" for r in first)
    # Late events: one takes a record away, others change records already copied.
    _, removal = disappearing("org-1")
    late = [event_line(removal)]
    changed = first[:3]  # an earlier `started` makes a new start and caller
    for n, record in enumerate(changed):
        late.append(
            json.dumps(
                {
                    "org": "org-1",
                    "id": f"late-{n}",
                    "call": record["id"],
                    "at": (_utc(record["start"]) - timedelta(seconds=1)).isoformat(),
                    "type": "started",
                    "party": "caller",
                    "number": f"+4670000000{n}",
                    "dialed": "0",
                }
            ).encode()
        )
    live.post(late)
    run_sync(live, target)
    second = copied(target)
    assert second == live.detailed()
    assert not any(r["id"] == "c-4" for r in second)
    assert [r["version"] for r in second[:3]] == [2, 2, 2]
    # Nothing new: nothing changes.
    assert "synced 0 records and 0 deletions" in run_sync(live, target)


def test_an_expired_cursor_walks_the_feed_again(live: Live, target: str) -> None:
    run_sync(live, target)
    copy = Copy(target, live.url)
    with copy.engine.begin() as db:  # a cursor the server never gave out
        db.execute(sa.update(copy.state).values(cursor=10**12))
    copy.close()
    result = CliRunner().invoke(
        main, ["sync", "--from", live.url, "--into", target], env={"SAMTAL_TOKEN": live.read}
    )
    assert result.exit_code == 0, result.output
    assert "walking the whole feed again" in result.output
    assert copied(target) == live.detailed()


def test_a_backfill_takes_few_of_the_tokens_requests(tmp_path: Path) -> None:
    """A first sync asks for pages as large as the feed gives, so that backfilling months
    counts little against the token's rate limit (shared with the customer's other readers):
    in pages of 1,000, three months were 136 requests, two minutes of 429s at the default
    60 a minute. Here 2,400 records and 2 requests a minute: one request does it."""
    db = f"sqlite:///{tmp_path / 'server.db'}"
    store = open_store(db)
    store.add_org("org-1", "Europe/Stockholm", now=system_clock())
    read = store.create_token("read", org="org-1", now=system_clock())[1]
    traffic = TrafficSettings(orgs=1, days=1, seed=3, start=date(2017, 1, 4), calls_per_day=2400)
    store.ingest(decode_batch(list(event_lines(traffic))).events, now=system_clock())
    settings = Settings(database_url=db, retention_days=0, rate_limit="2/minute")
    with Server(create_app(settings, store=store)) as server:
        live = Live(server.url, store, read, db)
        target = f"sqlite:///{tmp_path / 'copy.db'}"
        began = time.monotonic()
        out = run_sync(live, target)
        assert " in 1 page (" in out, out
        assert time.monotonic() - began < 20  # no 429 waited on
        served = live.detailed()  # the token's second request this minute
        assert copied(target) == served and len(served) > 2000
    store.close()


def test_a_sync_killed_midway_resumes_exactly(live: Live, target: str) -> None:
    env = {**os.environ, "SAMTAL_TOKEN": live.read}
    command = [sys.executable, "-m", "samtal", "sync", "--from", live.url, "--into", target]
    process = subprocess.Popen([*command, "--page-size", "7"], env=env, start_new_session=True)
    copy = Copy(target, live.url)
    deadline = time.monotonic() + 60
    while copy.cursor() < 100:  # some pages are in: kill it between or inside transactions
        assert process.poll() is None, "the sync ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    partial = copy.cursor()
    copy.close()
    assert 0 < partial < max(r["seq"] for r in live.detailed())
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert copied(target) == live.detailed()


def test_copies_opened_at_once_on_a_new_database_each_find_their_tables(target: str) -> None:
    # Two syncs started together (or a sync and the test above, which watches its cursor)
    # each make what is missing: on MariaDB a CREATE is not transactional, and the one that
    # lost the race once failed on the table the other had just made.
    for round_ in range(3):
        table = f"race_{round_}"
        with ThreadPoolExecutor(4) as pool:
            opened = [pool.submit(Copy, target, "https://samtal.test", table=table) for _ in "abcd"]
            copies = [copy.result() for copy in opened]
        copies[0].apply([], 5)
        assert [copy.cursor() for copy in copies] == [5, 5, 5, 5]
        for copy in copies:
            copy.close()


def test_copies_opened_at_once_on_a_new_sqlite_file_each_open_it(tmp_path: Path) -> None:
    # Switching a new file to WAL, one of two copies opened at once was told "database is
    # locked" at once (SQLite waits for no lock there): the test above failed so in CI.
    for round_ in range(30):
        target = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        ready = threading.Barrier(4)

        def open_it(target: str = target, ready: threading.Barrier = ready) -> Copy:
            ready.wait()
            return Copy(target, "https://samtal.test")

        with ThreadPoolExecutor(4) as pool:
            opened = [pool.submit(open_it) for _ in "abcd"]
            copies = [copy.result() for copy in opened]
        for copy in copies:
            copy.close()


def test_an_older_version_never_overwrites_a_newer_one(target: str) -> None:
    copy = Copy(target, "https://samtal.test")
    base = {
        "callerNo": "+46701",
        "start": "2017-01-04T10:00:00.000+01:00",
        "receivingNo": None,
        "received": None,
        "calleeNo": None,
        "calleeAnswered": None,
        "stop": "2017-01-04T10:01:00.000+01:00",
    }
    newer = {"id": "c", **base, "calleeNo": "new", "version": 3, "seq": 30}
    older = {"id": "c", **base, "calleeNo": "old", "version": 2, "seq": 20}
    copy.apply([newer], 30)
    copy.apply([older], 31)
    copy.apply([{"id": "c", "deleted": True, "version": 1, "seq": 10}], 32)  # stale too
    assert [r["calleeNo"] for r in copied(target)] == ["new"]
    copy.apply([{"id": "c", "deleted": True, "version": 4, "seq": 40}], 41)
    assert copied(target) == []
    assert copy.cursor() == 41
    copy.close()


#: A record as the feed serves it, of seq 7.
ONE_RECORD = {"id": "c", "callerNo": "+46701", "start": "2017-01-04T10:00:00.000+01:00",
              "receivingNo": None, "received": None, "calleeNo": None, "calleeAnswered": None,
              "stop": "2017-01-04T10:01:00.000+01:00", "version": 1, "seq": 7}  # fmt: skip


#: Ids that a database's default collation may take for one: case, an accent, a trailing space.
FOLDED_IDS = ("Kx9", "kx9", "kx9 ", "kx9é", "kx9e")


def _id_collation(engine: sa.Engine, table: str) -> str | None:
    with engine.connect() as db:
        return db.execute(
            sa.text(
                "SELECT collation_name FROM information_schema.columns WHERE table_schema ="
                " DATABASE() AND table_name = :table AND column_name = 'id'"
            ),
            {"table": table},
        ).scalar()


def test_ids_alike_but_for_case_accents_or_spaces_are_rows_of_their_own(target: str) -> None:
    """events.md's ids are exact. MariaDB's default collation folds case and accents and ignores
    trailing spaces: five calls were one row, the last written in place of the others (the
    sync still said it copied five), and a tombstone of one deleted another."""
    copy = Copy(target, "https://samtal.test")
    records = [
        {**ONE_RECORD, "id": call, "callerNo": f"+4670{n}", "seq": n + 1}
        for n, call in enumerate(FOLDED_IDS)
    ]
    copy.apply(records, len(records))
    assert {(r["id"], r["callerNo"]) for r in copied(target)} == {
        (r["id"], r["callerNo"]) for r in records
    }
    copy.apply([{"id": "kx9", "deleted": True, "version": 2, "seq": 9}], 9)
    assert sorted(r["id"] for r in copied(target)) == sorted(set(FOLDED_IDS) - {"kx9"})
    copy.close()


def test_a_copy_whose_ids_fold_is_made_exact_and_walked_again(live: Live, target: str) -> None:
    """A copy an older samtal made on MariaDB took its ids in the database's collation: its id
    column is made exact in place, and its cursor forgotten, so that the calls it lost to
    another's id come back with the feed walked again."""
    engine = sa.create_engine(target_url(target))
    metadata, records, state = tables("call_records")
    records.c.id.type = sa.String(128)  # as it was made: the database's own collation
    metadata.create_all(engine)
    with engine.begin() as db:
        db.execute(sa.insert(state).values(source=live.url, copy_table="call_records", cursor=5,
                                           updated=sa.func.now()))  # fmt: skip
    copy = Copy(target, live.url)
    if target.startswith("mariadb"):
        assert _id_collation(engine, "call_records") == "utf8mb4_nopad_bin"
        assert copy.cursor() == 0
    else:
        assert copy.cursor() == 5  # exact already: nothing to walk again
    copy.close()
    with engine.begin() as db:
        db.execute(sa.delete(state))
    engine.dispose()
    assert "the copy is up to date" in run_sync(live, target)
    assert copied(target) == live.detailed()


def test_each_table_keeps_its_own_cursor(target: str) -> None:
    """The cursor was kept by source alone: a second table copied from the same server began
    at the first's cursor and got nothing, and a table dropped and made again stayed empty,
    each "up to date"."""
    source = "https://samtal.test"
    first = Copy(target, source, table="first_copy")
    first.apply([ONE_RECORD], 7)
    first.close()
    second = Copy(target, source, table="second_copy")
    assert second.cursor() == 0
    second.close()
    engine = sa.create_engine(target_url(target))
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE first_copy"))
    engine.dispose()
    again = Copy(target, source, table="first_copy")
    assert again.cursor() == 0
    again.close()


def test_a_table_keeps_one_organisations_calls(
    live: Live, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each organisation's feed numbers its own `seq`s, and ids are unique only within it. A
    second organisation synced into the first's table (the default name, one database) began
    at the first's cursor, so its calls up to there never came, and said "up to date"; those
    that came took the rows of the first's calls with the same id. It is refused, naming both
    and what to do, and the copy is left as it was; into a table of its own it is whole."""
    live.store.add_org("org-2", "Europe/Stockholm", now=system_clock())
    other = live.store.create_token("read", org="org-2", now=system_clock())[1]
    kept, _ = disappearing("org-2")  # a call c-4 of its own, as org-1 has
    live.post([event_line(e) for e in kept])
    run_sync(live, target)
    before = copied(target)
    for source in (live.url, live.url.replace("127.0.0.1", "localhost")):
        result = CliRunner().invoke(
            main, ["sync", "--from", source, "--into", target], env={"SAMTAL_TOKEN": other}
        )
        assert result.exit_code == 1, result.output
        assert "'call_records' keeps the calls of organisation org-1" in result.output
        assert "org-2" in result.output and "--table" in result.output
        # The cursor is not this organisation's: nothing says it expired.
        assert "walking the whole feed again" not in result.output + caplog.text
        assert copied(target) == before
    result = CliRunner().invoke(
        main,
        ["sync", "--from", live.url, "--into", target, "--table", "org2_calls"],
        env={"SAMTAL_TOKEN": other},
    )
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["seq"]) for r in copied(target, "org2_calls")] == [("c-4", 1)]
    assert "synced 0 records" in run_sync(live, target)  # org-1's copy goes on as before
    assert copied(target) == before


def test_a_copy_made_before_organisations_were_kept_takes_its_first(
    live: Live, target: str
) -> None:
    """A cursor table made before the copy knew its organisation gets the column in place,
    and the cursor the first organisation it syncs, and from then on keeps it."""
    copy = Copy(target, live.url)
    copy.apply([ONE_RECORD], 7)  # as an older samtal, or a server that does not say
    with copy.engine.begin() as db:
        db.execute(sa.text("ALTER TABLE samtal_sync_cursors DROP COLUMN organisation"))
    copy.close()
    copy = Copy(target, live.url)
    assert copy.cursor() == 7
    with copy.engine.connect() as db:
        assert db.execute(sa.select(copy.state.c.organisation)).scalars().all() == [None]
    copy.close()
    run_sync(live, target)
    copy = Copy(target, live.url)
    with copy.engine.connect() as db:
        assert db.execute(sa.select(copy.state.c.organisation)).scalars().all() == ["org-1"]
    copy.close()


def test_a_cursor_kept_by_source_alone_is_taken_over_once(target: str) -> None:
    """A copy made before tables had their own cursors keeps its place: the first table with
    rows takes the old row over (no walk of the whole feed again), and only it."""
    source = "https://samtal.test"
    copy = Copy(target, source, table="kept_copy")
    copy.apply([ONE_RECORD], 9)
    copy.close()
    engine = sa.create_engine(target_url(target))
    legacy = sa.Table(
        "samtal_sync_state",
        sa.MetaData(),
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    legacy.create(engine)
    with engine.begin() as db:  # as samtal before it kept it
        db.execute(sa.text("DELETE FROM samtal_sync_cursors"))
        db.execute(sa.insert(legacy).values(source=source, cursor=9, updated=sa.func.now()))
    empty = Copy(target, source, table="empty_copy")  # made now: not the old copy
    assert empty.cursor() == 0
    empty.close()
    taken = Copy(target, source, table="kept_copy")
    assert taken.cursor() == 9
    taken.close()
    with engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(legacy)).scalar() == 0
    engine.dispose()


def test_the_table_and_state_names(target: str) -> None:
    copy = Copy(target, "https://samtal.test", table="calls_copy")
    names = set(sa.inspect(copy.engine).get_table_names())
    copy.close()
    assert {"calls_copy", "samtal_sync_cursors"} <= names
    _, records, _ = tables("calls_copy")
    assert [c.name for c in records.columns] == [
        "id",
        "caller_no",
        "start",
        "receiving_no",
        "received",
        "callee_no",
        "callee_answered",
        "stop",
        "version",
        "seq",
        "record",
        "outcome",
    ]


def test_a_table_in_a_schema_of_its_own(live: Live, target: str) -> None:
    """`--table analytics.calls`, as a warehouse names it, made a table called
    "analytics.calls" in the default schema, where nobody looks: the table goes in the schema
    (on MariaDB, the database) named, and `samtal stats` reads it there."""
    engine = sa.create_engine(target_url(target))
    schema = "main" if target.startswith("sqlite") else "analytics"  # SQLite's own
    if not target.startswith("sqlite"):
        with engine.begin() as db:
            kind = "SCHEMA" if target.startswith("postgresql") else "DATABASE"
            db.execute(sa.text(f"CREATE {kind} {schema}"))
    try:
        assert "the copy is up to date" in run_sync(live, target, "--table", f"{schema}.calls")
        inspector = sa.inspect(engine)
        assert "calls" in inspector.get_table_names(schema=schema)
        assert f"{schema}.calls" not in inspector.get_table_names()
        assert copied(target, f"{schema}.calls") == live.detailed()
        figures = CliRunner().invoke(main, ["stats", "--db", target, "--table",
                                            f"{schema}.calls", "--from", "2017-01-04"])  # fmt: skip
        assert figures.exit_code == 0, figures.output
    finally:
        if target.startswith("mariadb"):
            with engine.begin() as db:
                db.execute(sa.text(f"DROP DATABASE {schema}"))
        engine.dispose()


def test_a_reader_of_a_sqlite_copy_does_not_stop_the_sync(live: Live, tmp_path: Path) -> None:
    """A copy is there to be read while it is kept (a dashboard, `samtal stats`): a reader in a
    transaction held SQLite's lock, and the sync's write ended after 5 s in a traceback."""
    import sqlite3

    target = f"sqlite:///{tmp_path / 'read.db'}"
    copy = Copy(target, "-")  # made, as a first sync makes it
    copy.close()
    reader = sqlite3.connect(tmp_path / "read.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM call_records").fetchone() == (0,)
    try:
        assert "the copy is up to date" in run_sync(live, target)
        assert reader.execute("SELECT count(*) FROM call_records").fetchone() == (0,)  # its view
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert copied(target) == live.detailed()


def _refusing(target: str, why: str) -> sa.Engine:
    """A new SQLite copy at `target` whose table refuses every new row, saying `why` (a rule of
    the customer's: the trigger `no`); an engine on it."""
    Copy(target, "-").close()
    engine = sa.create_engine(target_url(target))
    with engine.begin() as db:
        db.execute(sa.text("CREATE TRIGGER no BEFORE INSERT ON call_records "
                           f"BEGIN SELECT RAISE(ABORT, '{why}'); END"))  # fmt: skip
    return engine


def test_a_copy_that_refuses_a_write_says_so_in_a_line(live: Live, tmp_path: Path) -> None:
    """The copy's database refusing a page (a lock held too long, a disk full, a rule of the
    customer's) ended the sync in a traceback; it is one line, and the cursor stays put."""
    target = f"sqlite:///{tmp_path / 'refuses.db'}"
    _refusing(target, "no new rows here").dispose()
    result = CliRunner().invoke(
        main, ["sync", "--from", live.url, "--into", target], env={"SAMTAL_TOKEN": live.read}
    )
    assert result.exit_code == 1, result.output
    assert "cannot write to the copy at" in result.output
    assert "no new rows here" in result.output
    assert not isinstance(result.exception, sa.exc.SQLAlchemyError)
    again = Copy(target, live.url)
    assert again.cursor() == 0
    again.close()


def test_a_table_of_the_customers_own_is_left_as_it_is(live: Live, target: str) -> None:
    """`--table` naming a table the customer keeps for something else had samtal's eleven
    columns added to it, before the first page failed on its rows: it is refused unchanged."""
    engine = sa.create_engine(target_url(target))
    own = sa.Table("customers", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("name", sa.String(64)))  # fmt: skip
    own.metadata.create_all(engine)
    with engine.begin() as db:
        db.execute(sa.insert(own).values(id=1, name="Acme AB"))
    result = CliRunner().invoke(
        main,
        ["sync", "--from", live.url, "--into", target, "--table", "customers"],
        env={"SAMTAL_TOKEN": live.read},
    )
    assert result.exit_code == 1, result.output
    assert "'customers' is not a copy samtal keeps" in result.output
    assert [c["name"] for c in sa.inspect(engine).get_columns("customers")] == ["id", "name"]
    with engine.connect() as db:
        assert db.execute(sa.select(own)).all() == [(1, "Acme AB")]
    engine.dispose()


def test_the_token_never_comes_from_the_command_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["sync", "--from", "http://127.0.0.1:9", "--into", f"sqlite:///{tmp_path / 'c.db'}"],
        env={"SAMTAL_TOKEN": ""},
    )
    assert result.exit_code == 2 and "SAMTAL_TOKEN or --token-file" in result.output


def test_the_same_server_written_another_way_resumes_the_same_copy(
    live: Live, tmp_path: Path
) -> None:
    """The cursor is kept per server: a `/` at the end, or the scheme in capitals, is the same
    server, and must not walk the whole feed into the copy again."""
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    run_sync(live, target)
    for written in (live.url + "/", live.url.replace("http://", "HTTP://")):
        result = CliRunner().invoke(
            main,
            ["sync", "--from", written, "--into", target],
            env={"SAMTAL_TOKEN": live.read},
        )
        assert result.exit_code == 0, result.output
        assert "synced 0 records and 0 deletions" in result.output, written
    # A path under the server is no server: said at once, with what to give instead.
    result = CliRunner().invoke(
        main,
        ["sync", "--from", live.url + "/cdr", "--into", target],
        env={"SAMTAL_TOKEN": live.read},
    )
    assert result.exit_code == 1 and "give --from the server's root" in result.output


@pytest.mark.parametrize("source", ["127.0.0.1:8080", "http://", "ftp://files.example.com"])
def test_a_source_that_is_not_a_server_url_is_refused_at_once(tmp_path: Path, source: str) -> None:
    # Without a scheme httpx refuses every request, which sync took for an outage: eight tries
    # over about two minutes before it said so.
    result = CliRunner().invoke(
        main,
        ["sync", "--from", source, "--into", f"sqlite:///{tmp_path / 'c.db'}"],
        env={"SAMTAL_TOKEN": "samtal_r_x"},
    )
    assert result.exit_code == 2, result.output
    assert "is not a server's URL: give http:// or https://" in result.output
    assert "trying again" not in result.output
    assert not (tmp_path / "c.db").exists()


def test_a_source_with_no_valid_port_is_refused_at_once(tmp_path: Path) -> None:
    # httpx takes port 99999 and the connection fails: eight tries over two minutes.
    result = CliRunner().invoke(
        main,
        ["sync", "--from", "http://127.0.0.1:99999", "--into", f"sqlite:///{tmp_path / 'c.db'}"],
        env={"SAMTAL_TOKEN": "samtal_r_x"},
    )
    assert result.exit_code == 2, result.output
    assert "'http://127.0.0.1:99999' has no valid port (a number from 1 to 65535)" in result.output
    assert "trying again" not in result.output


@pytest.mark.parametrize(
    "into", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///c?mode=memory&uri=true"]
)
def test_a_copy_in_memory_is_refused(tmp_path: Path, into: str) -> None:
    # SQLAlchemy opens these in memory: the sync said "the copy is up to date" of a copy gone
    # at exit.
    result = CliRunner().invoke(
        main,
        ["sync", "--from", "http://127.0.0.1:9", "--into", into],
        env={"SAMTAL_TOKEN": "samtal_r_x"},
    )
    assert result.exit_code == 1, result.output
    assert f"'{into}' names no file: SQLite would hold the copy in memory" in result.output


def test_every_follows_new_records_and_stops_on_sigterm(live: Live, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    env = {**os.environ, "SAMTAL_TOKEN": live.read}
    command = [sys.executable, "-m", "samtal", "sync", "--from", live.url, "--into", target]
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0  # a backfill
    follower = subprocess.Popen(
        [*command, "--every", "30"], env=env, stdout=subprocess.PIPE, text=True
    )
    copy = Copy(target, live.url)
    try:
        latest = live.store.latest_change("org-1")
        _, removal = disappearing("org-1")
        live.post([event_line(removal)])  # the record of c-4 goes: a new version
        posted = time.monotonic()
        while copy.cursor() <= latest:
            assert time.monotonic() - posted < 5, "the new version took too long"
            time.sleep(0.05)
        time.sleep(0.5)  # now it waits on the feed
        stopping = time.monotonic()
        follower.send_signal(signal.SIGTERM)
        out, _ = follower.communicate(timeout=40)
        assert follower.returncode == 0
        assert time.monotonic() - stopping < 5  # it does not sit out the wait
        assert "synced 0 records and 1 deletions" in out
    finally:
        if follower.poll() is None:
            follower.kill()
        copy.close()
    assert copied(target) == live.detailed()


def test_every_waits_for_a_copy_that_refuses_a_page(live: Live, tmp_path: Path) -> None:
    """Following the feed, a copy that refuses a page (its database restarting, a lock, a rule
    of the customer's) is written to again, later, rather than the follower ending."""
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    engine = _refusing(target, "not yet")
    env = {**os.environ, "SAMTAL_TOKEN": live.read}
    follower = subprocess.Popen(
        [sys.executable, "-m", "samtal", "sync", "--from", live.url, "--into", target,
         "--every", "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stderr is not None
        said = follower.stderr.readline()
        assert "cannot write to the copy at" in said and "not yet" in said
        assert "trying again in 1 s" in said
        with engine.begin() as db:
            db.execute(sa.text("DROP TRIGGER no"))
        began = time.monotonic()
        while not copied(target):
            assert time.monotonic() - began < 10, "the copy was not written again"
            time.sleep(0.1)
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=40)
        assert follower.returncode == 0
    finally:
        if follower.poll() is None:
            follower.kill()
        engine.dispose()
    assert copied(target) == live.detailed()


# The admin connection of the PostgreSQL target is reported as garbage while the test runs, in
# this test alone (not in the others with the same fixtures); it is closed at teardown all the
# same. Not understood yet: said here rather than hidden.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_copy_made_before_outcomes_gets_the_column_in_place(live: Live, target: str) -> None:
    """query.md: a copy made by an older samtal (no `outcome` column, number columns of 255)
    is upgraded where it is, then filled as the feed is walked again from the start."""
    metadata = sa.MetaData()
    moment = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
    sa.Table(
        "call_records",
        metadata,
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("caller_no", sa.String(255)),
        sa.Column("start", moment, nullable=False),
        sa.Column("receiving_no", sa.String(255)),
        sa.Column("received", moment),
        sa.Column("callee_no", sa.String(255)),
        sa.Column("callee_answered", moment),
        sa.Column("stop", moment, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    engine = sa.create_engine(target_url(target))
    metadata.create_all(engine)
    engine.dispose()
    assert "the copy is up to date" in run_sync(live, target)
    engine = sa.create_engine(target_url(target))
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("call_records")}
    engine.dispose()  # or its pooled connection waits for the collector, which warns
    assert "outcome" in columns
    if not target.startswith("sqlite"):
        assert getattr(columns["caller_no"]["type"], "length", None) is None  # text now
    assert copied(target) == live.detailed()
