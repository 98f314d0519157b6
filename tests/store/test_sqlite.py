"""What is SQLite's own: its schema's versions and upgrades in place."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import date
from functools import partial
from pathlib import Path

import orjson
import pytest
from msgspec.structs import replace

from samtal.errors import StoreError
from samtal.events import Event, decode_batch
from samtal.filters import parse_filters
from samtal.outbound.duties import run_duties
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import AsyncStore, IngestSummary, Store
from samtal.store.sqlite import MIGRATIONS, PAGE_SIZE, WAL_CHECKPOINT_BYTES, SqliteEngine
from samtal.times import parse_instant
from samtal.wal import write_ahead
from tests.helpers import PRODUCT, T0, events_of, period
from tests.helpers.databases import assert_upgraded_for_privacy


def test_sqlite_schema_upgrades_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    old = Store(SqliteEngine(url))
    old.add_org("acme", "Europe/Stockholm", now=T0)
    old.ingest(events_of(PRODUCT), now=T0)
    old.close()
    upgrade = "ALTER TABLE orgs ADD COLUMN note TEXT; CREATE INDEX orgs_by_tz ON orgs (tz)"
    engine = SqliteEngine(url, migrations=(*MIGRATIONS, upgrade))
    new = Store(engine)
    assert engine.schema_version == len(MIGRATIONS) + 1
    assert period(new, "acme") == PRODUCT["expected"]
    new.close()


def test_orgs_and_tokens_from_before_privacy_get_a_secret_and_keep_their_powers(
    tmp_path: Path,
) -> None:
    """privacy.md: the upgrade gives each existing organisation a secret of its own and each
    existing token `records,stats`, all groups, real numbers."""
    url = f"sqlite:///{tmp_path / 'v6.db'}"
    SqliteEngine(url, migrations=MIGRATIONS[:6]).close()  # before privacy.md
    db = sqlite3.connect(tmp_path / "v6.db")
    db.executemany(
        "INSERT INTO orgs (name, tz, created) VALUES (?, 'UTC', 0)", [("acme",), ("bolag",)]
    )
    db.execute("INSERT INTO tokens (kind, org, hash, created) VALUES ('read', 'acme', x'00', 0)")
    db.execute("INSERT INTO tokens (kind, org, hash, created) VALUES ('ingest', NULL, x'01', 0)")
    db.commit()
    db.close()
    store = Store(SqliteEngine(url))
    assert_upgraded_for_privacy(store)
    store.close()


def test_sqlite_schema_is_versioned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    engine = SqliteEngine(url)
    assert engine.schema_version == len(MIGRATIONS)
    engine.close()
    db = sqlite3.connect(tmp_path / "v.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this samtal knows"):
        SqliteEngine(url)


def test_records_of_version_1_get_their_identity(tmp_path: Path) -> None:
    """A database written before record identity (schema 1): each record becomes version 1 at
    the change number it had, and the feed and the detailed view serve it."""
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    SqliteEngine(url, migrations=MIGRATIONS[:1]).close()
    db = sqlite3.connect(tmp_path / "v1.db")
    db.execute("INSERT INTO orgs VALUES ('acme', 'UTC', 0, 7)")
    db.execute("INSERT INTO calls VALUES ('acme', 'c', 0, 1000, 0, 5)")
    db.execute("INSERT INTO records VALUES ('acme', 1000, 'c', 1000000, 7, ?)", (b'{"a":1}',))
    db.execute("INSERT INTO calls VALUES ('acme', 'open', 0, NULL, 1, 5)")
    db.commit()
    db.close()
    store = Store(SqliteEngine(url))
    (change,) = store.changes(org="acme", after=0, limit=10).changes
    assert (change.call, change.version, change.seq, change.changed) == ("c", 1, 7, 5)
    # (query.md appends the outcome; events that cannot make the record give the last rule's.)
    assert change.json() == b'{"id":"c","a":1,"version":1,"seq":7,"outcome":"unanswered"}'
    assert [*store.records(org="acme", start=0, end=2**62, detailed=True)] == [[change.json()]]
    # Its CSV row was not stored (schema 1 had none): it is made from the JSON when read.
    assert [*store.csv_records(org="acme", start=0, end=2**62)] == [[b"1\r\n"]]
    assert [*store.csv_records(org="acme", start=0, end=2**62, detailed=True)] == [
        [b"c,1,1,7,unanswered\r\n"]
    ]
    store.close()


def test_opening_a_store_does_not_wait_for_another_process_writing(tmp_path: Path) -> None:
    """A reader's open (`samtal` commands, tests polling a database) must not queue for the
    write lock behind busy consumers: once records all have their outcome, it only reads."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    Store(SqliteEngine(url)).close()  # created and filled
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    opened: list[Store] = []
    thread = threading.Thread(target=lambda: opened.append(Store(SqliteEngine(url))))
    thread.start()
    thread.join(5)
    waited = thread.is_alive()
    writer.execute("ROLLBACK")
    thread.join()
    assert opened, "the open failed"
    opened[0].close()
    assert not waited, "opening the store waited for the write lock"


def test_stores_opened_at_once_on_a_new_file_each_open_it(tmp_path: Path) -> None:
    # Two `samtal import` runs started together on a new database: switching the new file to
    # WAL, one of them was told "database is locked" at once (SQLite waits for no lock there).
    # Each round opens a new file from four threads released together.
    failed: list[Exception] = []
    for round_ in range(100):
        url = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        ready = threading.Barrier(4)

        def open_it(url: str = url, ready: threading.Barrier = ready) -> None:
            ready.wait()
            try:
                SqliteEngine(url).close()
            except StoreError as exc:
                failed.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failed, f"round {round_}: {failed}"
    assert sqlite3.connect(tmp_path / "new-0.db").execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )


def test_a_file_locked_longer_than_the_wait_is_told_so(tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the new file, and keeps it
    db = sqlite3.connect(tmp_path / "held.db", timeout=0)
    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        write_ahead(db, within=0.3)
    assert 0.2 < time.monotonic() - began < 2
    holder.execute("ROLLBACK")
    write_ahead(db, within=0.3)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_what_ingest_binds_in_place_of_none_is_stored_as_null(tmp_path: Path) -> None:
    # The rows of ingest's inserts carry 0 or '' for None, made NULL again by the statement
    # (speed: sqlite3 binds None, bools and bytes slowly); what is stored must be what a None
    # binds. An unanswered call has no callee and no answer time; most events no number,
    # kind, dialed or target; and a number "0" stays text.
    lines = [
        {
            "id": "e1",
            "call": "c1",
            "type": "started",
            "party": "caller",
            "number": "0",
            "dialed": "0",
            "at": "2017-03-01T08:00:00Z",
        },
        {"id": "e2", "call": "c1", "type": "ended", "at": "2017-03-01T08:00:10Z"},
    ]
    events = decode_batch([orjson.dumps({**line, "org": "acme"}) for line in lines]).events
    url = f"sqlite:///{tmp_path / 'n.db'}"
    store = Store(SqliteEngine(url))
    store.add_org("acme", "Europe/Stockholm", now=T0)
    store.ingest(events, now=T0)
    store.close()
    db = sqlite3.connect(tmp_path / "n.db")
    stored = db.execute(
        "SELECT id, quote(seq), quote(party), quote(number), quote(kind), quote(dialed), "
        "quote(target) FROM events ORDER BY id"
    ).fetchall()
    assert stored == [
        ("e1", "NULL", "'caller'", "'0'", "NULL", "'0'", "NULL"),
        ("e2", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL"),
    ]
    assert db.execute(
        "SELECT typeof(json), typeof(csv), quote(caller_no), quote(receiving_no), "
        "quote(callee_no), quote(answered_after) FROM records"
    ).fetchall() == [("blob", "blob", "'0'", "NULL", "NULL", "NULL")]
    assert db.execute(
        "SELECT quote(record_ms) IS NOT 'NULL', quote(open), quote(started), quote(ended) "
        "FROM calls"
    ).fetchall() == [(1, "0", "1", "1")]
    db.close()


def test_a_library_that_takes_few_parameters_a_statement_stores_the_same(tmp_path: Path) -> None:
    # Rows go in a hundred a statement (1,200 parameters for events), fewer where the SQLite
    # library was built to take fewer: a batch of 1,000 calls stores the same either way.
    settings = TrafficSettings(orgs=1, days=1, seed=5, start=date(2017, 3, 24), calls_per_day=1000)
    events = decode_batch([line.rstrip(b"\n") for line in event_lines(settings)]).events
    assert len(events) > 5000

    def stored(name: str, parameters: int | None) -> tuple[object, ...]:
        engine = SqliteEngine(f"sqlite:///{tmp_path / name}")
        if parameters is not None:
            with engine._writing() as db:  # as a library built with a lower limit would be
                db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, parameters)
        store = Store(engine)
        store.add_org("org-1", "Europe/Stockholm", now=T0)
        summary = store.ingest(events, now=T0)
        db = sqlite3.connect(tmp_path / name)
        tables = tuple(
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("events", "calls")
        )
        db.close()
        records = period(store, "org-1")
        store.close()
        return summary.accepted, records, tables

    default, limited = stored("default.db", None), stored("limited.db", 30)
    assert default[0] == len({(e.org, e.id) for e in events})
    assert len(default[1]) > 900
    assert limited == default


def test_a_new_database_has_big_pages_and_one_made_before_keeps_its_own(tmp_path: Path) -> None:
    made_before = tmp_path / "before.db"
    db = sqlite3.connect(made_before)
    db.execute("PRAGMA page_size = 4096")
    db.execute("CREATE TABLE kept (a)")
    db.close()
    for path, size in ((tmp_path / "new.db", PAGE_SIZE), (made_before, 4096)):
        engine = SqliteEngine(f"sqlite:///{path}")
        assert engine.schema_version == len(MIGRATIONS)
        with engine._writing() as writer:  # the WAL is checkpointed at the same size either way
            pages = writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            assert pages * size == WAL_CHECKPOINT_BYTES
        engine.close()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA page_size").fetchone() == (size,)
        db.close()
    assert PAGE_SIZE > 4096


def test_a_library_that_takes_few_parameters_still_finds_a_callers_calls(tmp_path: Path) -> None:
    # A query by caller names each day of its period, unless the library would not take so
    # many parameters: then it is left to the planner, with the same answer.
    store = Store(SqliteEngine(f"sqlite:///{tmp_path / 'few.db'}"))
    store.add_org("acme", "Europe/Stockholm", now=T0)
    store.ingest(events_of(PRODUCT), now=T0)
    caller = PRODUCT["expected"][0]["callerNo"]
    wanted = [r for r in PRODUCT["expected"] if r["callerNo"] == caller]
    between = {
        "start": parse_instant("2016-12-01T00:00:00Z"),
        "end": parse_instant("2017-02-01T00:00:00Z"),
    }
    filters = parse_filters({"callerNo": [caller]})
    for limit in (40, 32766):
        with store.engine._writing() as writer:
            writer.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        store.engine._reader.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        got = [
            orjson.loads(r)
            for page in store.records(org="acme", filters=filters, **between)
            for r in page
        ]
        assert got == wanted and wanted
    store.close()


def test_batches_waiting_for_the_one_writer_are_stored_together(tmp_path: Path) -> None:
    # SQLite takes one writer at a time: the batches that come while it is busy wait, and are
    # then stored in one transaction (`Store.ingest_together`), each caller with its summary.
    store = Store(SqliteEngine(f"sqlite:///{tmp_path / 'group.db'}"))
    store.add_org("acme", "Europe/Stockholm", now=T0)
    events = events_of(PRODUCT)
    summaries = _while_the_writer_is_busy(store, [events[:9], events[9:], events[:5]])
    assert [(s.accepted, s.duplicates, s.together) for s in summaries] == [
        (9, 0, 3),
        (8, 0, 3),
        (0, 5, 3),
    ]
    assert period(store, "acme") == PRODUCT["expected"]
    store.close()


def test_a_batch_the_database_refuses_costs_the_batches_stored_with_it_nothing(
    tmp_path: Path,
) -> None:
    # Its transaction fails, so each batch of it is stored alone: the refused call is set
    # apart in its own batch's summary, as if the batches had never met.
    store = Store(SqliteEngine(f"sqlite:///{tmp_path / 'group.db'}"))
    store.add_org("acme", "Europe/Stockholm", now=T0)
    events = events_of(PRODUCT)
    at, instant = "2017-01-04T10:00:00.000+01:00", 1_483_520_400_000_000
    refused = [  # an unpaired surrogate, which validation would never let through: no database
        Event(
            "acme",
            "x-1",
            "x",
            at,
            "started",
            0,
            "caller",
            "+46\ud800",
            None,
            "622",
            instant=instant,
        ),
        Event("acme", "x-2", "x", at, "ended", 1, instant=instant + 1000),
    ]
    summaries = _while_the_writer_is_busy(store, [events[:9], refused, events[9:]])
    assert [(s.accepted, s.together) for s in summaries] == [(9, 1), (0, 1), (8, 1)]
    assert [key for key, _ in summaries[1].refused] == [("acme", "x")]
    assert period(store, "acme") == PRODUCT["expected"]
    store.close()


def _while_the_writer_is_busy(store: Store, batches: list[list[Event]]) -> list[IngestSummary]:
    """The summaries of `batches`, each ingested by a caller of its own while the one writer
    is held by other work, then let go."""
    shared = AsyncStore(store)
    gate = threading.Event()

    async def run() -> list[IngestSummary]:
        held = asyncio.ensure_future(shared.write(lambda _: gate.wait(10)))
        callers = [asyncio.ensure_future(shared.ingest(batch, now=T0)) for batch in batches]
        await asyncio.sleep(0.05)  # each caller has handed its batch over, and waits
        gate.set()
        await held
        return list(await asyncio.gather(*callers))

    try:
        return asyncio.run(run())
    finally:
        shared.close()


def test_an_in_memory_database_is_refused_with_the_reason() -> None:
    """`:memory:` is one connection's database: the store's readers would see another, empty
    one. It used to fail on opening with "no such table: meta"."""
    with pytest.raises(StoreError, match="in-memory database is seen by one connection alone"):
        SqliteEngine("sqlite:///:memory:")


def test_the_watcher_names_the_organisation_whose_versions_moved(tmp_path: Path) -> None:
    """Another connection's commit is told as the organisations it gave new versions, or whose
    calls it purged, not as "any": a waiter of another organisation (an idle webhook
    subscription) sleeps on. The watcher reads the organisations marked since it last looked,
    not every organisation's numbers."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(SqliteEngine(url))
    for name in ("acme", "other"):
        store.add_org(name, "Europe/Stockholm", now=T0)
    heard: list[str | None] = []
    stop = threading.Event()
    watcher = threading.Thread(target=store.watch, args=(stop, heard.append))
    watcher.start()
    try:
        time.sleep(0.3)
        store.add_org("third", "Europe/Stockholm", now=T0)  # a commit with no versions
        store.ingest(events_of(PRODUCT, "acme"), now=T0)
        deadline = time.monotonic() + 5
        while "acme" not in heard and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert store.purge(org="acme", before=T0 + 10**12) > 0  # every call of acme's
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        watcher.join()
        store.close()
    assert heard == ["acme", "acme"]


def test_a_batch_posted_during_the_duties_is_stored_between_their_transactions(
    tmp_path: Path,
) -> None:
    """The server's duties run on SQLite's one writer: a batch posted while they closed
    100,000 calls gone idle at once waited for the whole round (3.8 s, where a share of the
    round's calls took 0.2 s). The round stores the batches that came meanwhile between its
    transactions, as the server has it do."""
    store = Store(SqliteEngine(f"sqlite:///{tmp_path / 'd.db'}"))
    store.add_org("acme", "Europe/Stockholm", now=T0)
    product = events_of(PRODUCT)
    store.ingest([e for e in product if e.type == "started"], now=T0)  # calls left open
    shared = AsyncStore(store)
    pausing, handed = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def between() -> None:  # on the writer, between two of the round's transactions
        pausing.set()
        handed.wait(10)
        shared.store_waiting()
        seen.append(
            sorted(change.call for change in store.changes(org="acme", after=0, limit=100).changes)
        )

    async def run() -> None:
        settings = Settings(database_url="sqlite://", retention_days=0)
        later = T0 + 13 * 3600 * 1_000_000  # the open calls are idle by then
        duties = asyncio.ensure_future(
            shared.write(partial(run_duties, settings=settings, now=later, between=between))
        )
        await asyncio.to_thread(pausing.wait, 10)
        batch = [replace(e, org="acme", id=f"late-{e.id}", call="late") for e in product
                 if e.call == "c-622"]  # fmt: skip
        posted = asyncio.ensure_future(shared.ingest(batch, now=later))
        await asyncio.sleep(0.05)  # handed over: waiting for the writer
        handed.set()
        await asyncio.gather(duties, posted)

    try:
        asyncio.run(run())
    finally:
        shared.close()
    assert "late" in seen[0]  # stored at the round's first pause, not after the round
    store.close()
