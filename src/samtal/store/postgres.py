"""The production engine: PostgreSQL through psycopg 3 and a connection pool.

Several processes, and several writer threads in each, may write at once. Writers of one call
take turns on a row lock of the call (`lock_calls`); change numbers of an organisation are taken
from its row, which stays locked until the commit, so that they are given out in the order the
changes become visible (changes.md, "Visibility order"). Every key leads with `org` and every
statement on call data filters on it, so that the tables can be distributed by organisation
(Citus; see README). Text keys use the "C" collation: records are ordered by call id byte for
byte, as on SQLite. What every engine shares is in `_sql`, and the schema in
`_postgres_schema`; this module keeps PostgreSQL's pool, partitions, bulk writes (COPY, arrays)
and its LISTEN/NOTIFY watcher.
"""

from __future__ import annotations

import logging
import select
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from typing import Any, ClassVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from samtal.errors import StoreError
from samtal.events import Event
from samtal.store._base import (
    CallKey,
    CallRow,
    Change,
    Contention,
    FeedRead,
    Gone,
    KnownCall,
    RecordRow,
    Refused,
)
from samtal.store._postgres_schema import MIGRATIONS
from samtal.store._sql import FEED_COLUMNS, SqlEngine
from samtal.times import US_PER_SECOND

log = logging.getLogger(__name__)

#: The channel a commit that gave out change numbers notifies, with its organisation.
CHANNEL = "samtal_changes"
#: The tables a write transaction stages rows in (`_Tx._stage`): a connection's own, made once
#: for it, emptied by each commit.
_STAGING = ";".join(
    f"CREATE TEMP TABLE IF NOT EXISTS staged_{table} (LIKE {table} INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
    for table in ("events", "records", "calls")
)
#: Raised by PostgreSQL when it broke a deadlock or a serialisation conflict by aborting us.
_RACES = (errors.DeadlockDetected, errors.SerializationFailure)
#: What the server says as it drops a connection (`pg_terminate_backend`, a shutdown, a crash
#: of another backend). libpq can still call the connection good as it reads this, with the
#: farewell's end not yet read.
_FAREWELLS = (errors.AdminShutdown, errors.CrashShutdown, errors.CannotConnectNow)
_EVENT_COLUMNS = "org, day, id, call, instant, seq, type, party, number, kind, dialed, target, at"
#: The types of `_EVENT_COLUMNS`, for a binary COPY.
_EVENT_TYPES = ("text", "int4", "text", "text", "int8", "int8", *["text"] * 7)
#: The columns of a record's row and of a call's, in the order of RecordRow and CallRow (and
#: of the statements that upsert them from their staging tables), with their types for a
#: binary COPY.
_RECORD_COLUMNS = (
    "org, day, start_ms, call, start, change_seq, json, version, csv, outcome, caller_no, "
    "receiving_no, callee_no, duration, answered_after"
)
_RECORD_TYPES = ("text", "int4", "int8", "text", "int8", "int8", "bytea", "int4", "bytea",
                 *["text"] * 4, "int8", "int8")  # fmt: skip
_CALL_COLUMNS = (
    "org, call, day, age, record_ms, open, last_seen, version, seq, changed, started, ended"
)
_CALL_TYPES = ("text", "text", "int4", "int8", "int8", "bool", "int8", "int4", "int8", "int8",
               "bool", "bool")  # fmt: skip
#: Rows of a table that a write sends as arrays in its statement rather than staged (see
#: `_Tx._rows_from`).
ARRAYS_UP_TO = 200
#: The partitioned tables, each with a partition per day it holds calls of.
PARTITIONED = ("events", "records")
_US_PER_DAY = 86_400 * US_PER_SECOND
#: Days from today that get a partition each (older or later ones share one per month): the
#: default retention, and a clock a day fast.
NEAR_PAST, NEAR_FUTURE = 92, 2


class PostgresEngine(SqlEngine):
    """The engine on one PostgreSQL database, shared by any number of processes."""

    placeholder: ClassVar[str] = "%s"
    # The day is part of every key of a partitioned table: naming it finds the one partition.
    record_join: ClassVar[str] = (
        "r.org = c.org AND r.day = c.day AND r.start_ms = c.record_ms AND r.call = c.call"
    )
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = (errors.IntegrityError,)
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)
    unsettled: ClassVar[str] = "started AND NOT settled"
    outcomes_from: ClassVar[int] = 7
    partitioned: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        migrations: tuple[str, ...] = MIGRATIONS,
        *,
        max_size: int = 8,
        reads: bool = True,
    ) -> None:
        super().__init__(migrations)
        self._url = url
        self._lead: psycopg.Connection[Any] | None = None
        # `lead_duties` runs on a duty's thread and `close` on another: neither may leave a
        # connection behind the other's back.
        self._lead_lock = threading.Lock()
        self._closed = False
        #: The pool's connections that have their staging tables (`_STAGING`).
        self._staging: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        #: Spans of days [first, end) known to have their partitions.
        self._spans: list[tuple[int, int]] = []
        #: Half the pool writes, so that reads always find a connection; in a process that
        #: hardly reads (`reads=False`: an import), all of it but one.
        self.writers = max(1, max_size // 2 if reads else max_size - 1)
        #: Connections a statement tries before it gives up: each of the pool's can have
        #: been dropped at once (see `_begun`), and one more is a new one.
        self._tries = max_size + 1
        pool = None
        try:
            # One connection first: a URL that cannot work (no such host, no such database)
            # fails here at once, rather than when the pool gives up waiting.
            psycopg.connect(url, connect_timeout=10).close()
            self._pool = pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                open=True,
                timeout=30,
                name="samtal",
                # Every statement planned with its values: partitions are pruned as the plan is
                # made, however many days are stored (a prepared, generic plan would lock them
                # all at each run).
                kwargs={"prepare_threshold": None},
            )
            self._pool.wait(timeout=10)
            self._migrate()
        except (psycopg.Error, Exception) as exc:
            if pool is not None:
                pool.close()  # its connections would wait for the collector
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the database {_safe(url)}: {exc}") from exc

    # -- the primitives of `_sql` ------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[object], *, binary: bool = False) -> list[Any]:
        """On a pooled connection in autocommit: each read is its own snapshot. `binary`
        fetches in PostgreSQL's binary format (bytea as it is, not hex-encoded)."""
        for attempt in range(self._tries):
            with self._connection() as db:
                db.autocommit = True
                try:
                    with db.cursor(binary=binary) as cursor:
                        return cursor.execute(sql, params).fetchall()
                except psycopg.OperationalError as exc:
                    if not _again(db, exc, last=attempt + 1 == self._tries):
                        raise
                    # Dropped a moment ago (see `_connection`): a read can be asked again.
        raise AssertionError("unreachable")

    @contextmanager
    def _writing(self, *, staging: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction on a pooled connection (with `staging`, one that has the staging
        tables); Contention when it lost a race."""
        try:
            with self._begun(staging=staging) as db:
                yield db
        except _RACES as exc:
            raise Contention(str(exc).strip()) from exc

    @contextmanager
    def _snapshot(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._begun(snapshot=True) as db, db.cursor(binary=True) as cursor:
            yield cursor

    @contextmanager
    def _begun(self, *, staging: bool = False, snapshot: bool = False) -> Iterator[Any]:
        """A pooled connection in a transaction just begun (with `staging`, one that has the
        staging tables; with `snapshot`, a read-only one that sees one snapshot throughout).
        One found dropped at the transaction's first statement (see `_connection`), before
        anything was done on it, is left for another."""
        for attempt in range(self._tries):
            with ExitStack() as held:
                db = held.enter_context(self._connection())
                try:
                    if staging and db not in self._staging:
                        # Made outside any transaction, so that a rollback cannot take them
                        # away. (Made by each batch, they cost it two statements.)
                        db.autocommit = True
                        db.execute(_STAGING)
                        self._staging.add(db)
                    db.autocommit = False
                    held.enter_context(db.transaction())
                    if snapshot:
                        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                except psycopg.OperationalError as exc:
                    if not _again(db, exc, last=attempt + 1 == self._tries):
                        raise
                    continue
                yield db
                return

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, not one the server dropped (a restart, an operator's
        `pg_terminate_backend`): such a one is discarded, and another taken at once.

        The pool's own check did this, but slept between two connections found dropped (1 s,
        then 2, 4...): after a restart, the first request waited a second or more. And a
        connection dropped a moment ago passes any check, its farewell still on the way: the
        statements that begin on it (`_rows`, `_begun`) take another when it fails them. Before
        they did, 9 reads in 40 taken just after every connection was dropped failed, each a
        500 for its request.

        A connection lost under a statement that cannot be asked again (inside a transaction),
        or none to be had, is a StoreError: the database is unavailable, and the request may
        be sent again (503), where it was an internal error (500)."""
        for attempt in range(self._tries):
            db: psycopg.Connection[Any] | None = None
            try:
                with self._pool.connection() as db:
                    if attempt + 1 < self._tries and _dropped(db):
                        continue  # closed: the pool discards it, and makes a new one
                    yield db
                    return
            except PoolTimeout as exc:
                raise StoreError(
                    f"no connection to the database within {self._pool.timeout:g} s"
                ) from exc
            except psycopg.OperationalError as exc:
                if db is None or not _lost(db, exc):
                    raise
                lost = str(exc).strip().splitlines()[0]
                raise StoreError(f"the connection to the database was lost: {lost}") from exc

    @contextmanager
    def _migrating(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connection() as db, db.transaction():
            # One process upgrades; the others wait for it and then find nothing to do.
            db.execute("SELECT pg_advisory_xact_lock(hashtext('samtal:migrate'))")
            yield db

    def _apply(self, db: Any, script: str) -> None:
        db.execute(script)

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """A write transaction for the record workflow (see WriteTx)."""
        try:
            with self._writing(staging=True) as db:
                yield _Tx(db)
        except (psycopg.DataError, UnicodeEncodeError) as exc:
            raise Refused(str(exc).strip().split("\n")[0]) from exc

    def _call_events_where(self, org: str, call: str) -> tuple[str, tuple[object, ...]]:
        """A call's events lie in its day's partition, which its row in `calls` names."""
        return (
            "day = (SELECT day FROM calls WHERE org = ? AND call = ?) AND call = ?",
            (org, call, call),
        )

    def _period_hint(self, start: int, end: int) -> tuple[str, tuple[object, ...]]:
        """The days a period's records can lie in: a record's day is the local date of its
        start, at most a day from its UTC date. Named, they let PostgreSQL read only those
        days' partitions, however many days are stored."""
        return " AND day >= ? AND day <= ?", (
            start // _US_PER_DAY - 1,
            (end - 1) // _US_PER_DAY + 1,
        )

    # -- what is PostgreSQL's own ------------------------------------------------------------
    def feeds(self, wants: Sequence[tuple[str, int, int]]) -> list[FeedRead | None]:
        """`SqlEngine.feeds` for many (organisation, cursor, limit) in two statements, whatever
        their number: the numbers of every organisation named, then each one's page (a
        LATERAL join, one probe of `calls_by_seq` each). Each one's two statements took round
        trips of their own: with 1,000 subscriptions woken by one commit, a fifth of the
        deliverer's samples."""
        if len(wants) < 2:
            return super().feeds(wants)
        orgs = [org for org, _, _ in wants]
        with self._snapshot() as db:
            numbers = {
                name: (latest, purged)
                for name, latest, purged in self._run(
                    db,
                    "SELECT name, change_seq, purged_seq FROM orgs WHERE name = ANY(?::text[])",
                    (sorted(set(orgs)),),
                ).fetchall()
            }
            pages: list[list[Change]] = [[] for _ in wants]
            for n, *change in self._run(
                db,
                "SELECT w.n, f.* "
                "FROM unnest(?::text[], ?::int8[], ?::int4[]) WITH ORDINALITY "
                "AS w(org, after, most, n) "
                f"CROSS JOIN LATERAL (SELECT {FEED_COLUMNS} FROM calls c "
                f"LEFT JOIN records r ON {self.record_join} "
                "WHERE c.org = w.org AND c.seq > w.after ORDER BY c.seq LIMIT w.most) f",
                (orgs, [after for _, after, _ in wants], [most for _, _, most in wants]),
            ).fetchall():
                pages[n - 1].append(Change(*change))
        return [
            FeedRead(page, *numbers[org]) if org in numbers else None
            for (org, _, _), page in zip(wants, pages, strict=True)
        ]

    def earliest_unsettled(self, orgs: Sequence[str]) -> list[int | None]:
        """`SqlEngine.earliest_unsettled` in one statement, whatever the number of `orgs`."""
        if len(orgs) < 2:
            return super().earliest_unsettled(orgs)
        with self._snapshot() as db:
            rows = self._run(
                db,
                f"SELECT (SELECT min(age) FROM calls c WHERE c.org = w.org AND {self.unsettled}) "
                "FROM unnest(?::text[]) WITH ORDINALITY AS w(org, n) ORDER BY w.n",
                (list(orgs),),
            ).fetchall()
        return [None if age is None else int(age) for (age,) in rows]

    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """LISTEN on a connection of its own; every commit that gave out change numbers
        notifies with its organisation. After (re)connecting, `changed(None)`: notifications
        sent while nobody listened are lost."""
        while not stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    changed(None)
                    while not stop.is_set():
                        for note in db.notifies(timeout=0.5):
                            changed(note.payload)
            except psycopg.Error as exc:
                log.warning("lost the connection that listens for changes (%s); reconnecting", exc)
                stop.wait(1)

    def lead_duties(self) -> bool:
        """Lead the duties while holding a session advisory lock on a connection of its own;
        PostgreSQL releases it when the process or its connection dies."""
        with self._lead_lock:
            if self._closed:
                return False
            if self._lead is not None:
                try:
                    self._lead.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    log.warning("lost the connection that held the lead of the duties")
                    self._lead.close()
                    self._lead = None
            lead = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            try:
                row = lead.execute(
                    "SELECT pg_try_advisory_lock(hashtext('samtal:duties'))"
                ).fetchone()
            except BaseException:
                lead.close()
                raise
            if row is None or not row[0]:
                lead.close()
                return False
            self._lead = lead
            return True

    def close(self) -> None:
        """Release the engine's connections and the lead of the duties."""
        with self._lead_lock:
            self._closed = True
            if self._lead is not None:
                self._lead.close()
                self._lead = None
        self._pool.close()

    def _partitions(self, db: psycopg.Connection[Any]) -> list[tuple[int, int, str]]:
        """The partitions of `events` as (first day, day after the last, name suffix)."""
        found = []
        for (name,) in db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        ):
            span = _span_of(name)
            if span is not None:
                found.append((*span, name.split("_", 1)[1]))
        return found

    def prepare_days(self, days: set[int], *, today: int) -> None:
        """Make partitions for these days, outside any write transaction (making one locks its
        table briefly): a partition per day near `today` (retention drops them whole), and a
        partition per month for days far from it (a backfill, a switch with a broken clock),
        so that a thousand distinct days make a few dozen partitions, not a thousand. A day
        whose rows sit in the default partition already stays there."""
        missing = {day for day in days if not _within(day, self._spans)}
        if not missing:
            return
        with self._connection() as db:
            db.autocommit = True
            self._spans = [(first, end) for first, end, _ in self._partitions(db)]
            for day in sorted(missing):
                if _within(day, self._spans):
                    continue
                span = (day, day + 1)
                if not today - NEAR_PAST <= day <= today + NEAR_FUTURE:
                    month = _month_of(day)
                    if not any(first < month[1] and month[0] < end for first, end in self._spans):
                        span = month
                try:
                    with db.transaction():
                        db.execute("SELECT pg_advisory_xact_lock(hashtext('samtal:partitions'))")
                        for table in PARTITIONED:
                            db.execute(
                                f"CREATE TABLE IF NOT EXISTS {_partition(table, *span)} "
                                f"PARTITION OF {table} FOR VALUES FROM ({span[0]}) TO ({span[1]})"
                            )
                except psycopg.Error as exc:
                    log.warning("day %s stays in the default partition: %s", _date(day), exc)
                    span = (day, day + 1)  # it is not asked for again
                self._spans.append(span)

    def drop_days(self, before: int) -> int:
        """Drop the partitions wholly before `before`, and the calls of their days; the number
        of days dropped. (A month partition that `before` falls inside is left to `purge`,
        which removes calls row by row.)"""
        with self._connection() as db:
            db.autocommit = True
            partitions = self._partitions(db)
            cut = min([before, *(first for first, end, _ in partitions if first < before < end)])
            doomed = sorted((first, end, name) for first, end, name in partitions if end <= cut)
            if doomed:
                # The directory goes first, remembering the highest change number it held, so
                # that the feed never sees a call whose record is gone with its partition (that
                # would read as a tombstone). Rows of those days that were sent again into the
                # default partitions go too. Only the organisations with such rows get a
                # transaction, found in one read: one for each of 10,000 organisations took 10 s
                # a day with nothing to remove. Each organisation's first day is one probe of
                # an index by (org, day) whatever the planner guesses: EXISTS read all of
                # calls_by_day before `cut`, and a LATERAL ... LIMIT 1 scanned the whole table
                # for each organisation when most had no calls (5 minutes for 10,000).
                holding = " OR ".join(
                    f"(SELECT min(t.day) FROM {table} t WHERE t.org = o.name) < %s"
                    for table in ("calls", *(f"{table}_default" for table in PARTITIONED))
                )
                for (org,) in db.execute(
                    f"SELECT o.name FROM orgs o WHERE {holding}", (cut,) * (1 + len(PARTITIONED))
                ).fetchall():
                    with db.transaction():
                        row = db.execute(
                            "WITH gone AS (DELETE FROM calls WHERE org = %s AND day < %s "
                            "RETURNING seq) SELECT max(seq) FROM gone",
                            (org, cut),
                        ).fetchone()
                        if row is not None and row[0] is not None:
                            _note_purged(db, org, row[0])
                            self._renumber(db, org)
                        for table in PARTITIONED:
                            db.execute(
                                f"DELETE FROM {table}_default WHERE org = %s AND day < %s",
                                (org, cut),
                            )
            for first, end, suffix in doomed:
                with db.transaction():
                    for table in PARTITIONED:
                        db.execute(f"DROP TABLE IF EXISTS {table}_{suffix}")
                self._spans = [span for span in self._spans if span != (first, end)]
            if doomed:
                log.info("dropped %d partition(s) of calls before %s", len(doomed), _date(cut))
        return sum(end - first for first, end, _ in doomed)

    def purge(self, *, org: str, before: int) -> int:
        """Remove whole calls of `org` whose age is before `before`; the number removed."""
        with self._writing() as db:
            doomed = db.execute(
                "DELETE FROM calls WHERE org = %s AND age < %s RETURNING call, day, seq",
                (org, before),
            ).fetchall()
            if doomed:
                _note_purged(db, org, max(seq for _, _, seq in doomed))
                calls, days = [c for c, _, _ in doomed], sorted({d for _, d, _ in doomed})
                for table in PARTITIONED:
                    db.execute(
                        f"DELETE FROM {table} WHERE org = %s AND day = ANY(%s) AND call = ANY(%s)",
                        (org, days, calls),
                    )
                self._renumber(db, org)
        return len(doomed)


class _Tx:
    """One write transaction on a pooled connection (see WriteTx). Sets of keys go in as
    arrays, so that a batch of many organisations costs the same few statements as a batch of
    one. It remembers the day of every call it locked: each statement on a call's rows names
    its day, so that PostgreSQL looks in that day's partition alone."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db
        self._days: dict[CallKey, int] = {}
        #: The staging tables this transaction has written to (see `_stage`).
        self._staged: set[str] = set()

    def lock_calls(self, keys: Sequence[CallKey]) -> dict[CallKey, KnownCall]:
        """Lock each call's row (making a placeholder for a call not seen before, which the
        transaction fills in or rolls back), in key order: two writers never wait for each
        other in a cycle. The calls seen before, with what is known of their record.

        A placeholder is not `open`: that index has no entry of it to write and then delete
        (nobody else sees it before the transaction gives it its values)."""
        keys = sorted(keys)
        orgs, calls = _columns(keys) if keys else ([], [])
        made = set(
            self.db.execute(
                "INSERT INTO calls (org, call, day, age, record_ms, open, last_seen) "
                "SELECT k.org, k.call, 0, 0, NULL, false, 0 "
                "FROM unnest(%b::text[], %b::text[]) AS k(org, call) ORDER BY k.org, k.call "
                "ON CONFLICT DO NOTHING RETURNING org, call",
                (orgs, calls),
            ).fetchall()
        )
        # The rows of the calls seen before (the placeholders just made are this transaction's
        # own), each key looked up on its own (LATERAL: an index probe per key, in the keys'
        # order), never a join the planner may make by reading all of an organisation's calls.
        seen = [key for key in keys if key not in made]
        if not seen:
            return {}
        rows = self.db.execute(
            "SELECT c.org, c.call, c.day, c.record_ms, c.version, c.seq, c.changed, c.settled, "
            "c.erased FROM unnest(%b::text[], %b::text[]) AS k(org, call) CROSS JOIN LATERAL "
            "(SELECT * FROM calls c WHERE c.org = k.org AND c.call = k.call FOR UPDATE) c",
            _columns(seen),
        ).fetchall()
        known: dict[CallKey, KnownCall] = {}
        for org, call, day, *rest in rows:
            self._days[org, call] = day
            known[org, call] = KnownCall(*rest)
        return known

    def insert_events(
        self, events: Sequence[Event], new_days: Mapping[CallKey, int]
    ) -> list[Event]:
        """Insert the events not stored before; the ones inserted.

        None of them is stored under its own call, which this transaction has locked (see
        WriteTx): they are copied straight into `events` (binary COPY). Only a copy under
        another call, which no lock orders, can be there already, or be written at this
        moment: then the COPY fails whole, and the batch is staged (binary COPY), then inserted
        in one statement that leaves out what is stored. Either way the events go in key
        order, so that writers of the same events wait for each other in one order; the
        staging path's second order (the statement's) could make a cycle, which PostgreSQL
        breaks (Contention: the batch is written again). Staging every batch (each row written
        twice, then read and sorted by the server) took `samtal import` 1.11x the time and
        `POST /events` 1.28x (`bench/postgres.py --against`), and a live stream's small
        batches of 100 1.21x (`bench/live.py --against`)."""
        first: dict[tuple[str, str], Event] = {}
        for event in events:
            first.setdefault((event.org, event.id), event)
        if not first:
            return []
        self._days.update(new_days)
        ordered = [first[key] for key in sorted(first)]
        try:
            with self.db.transaction(), self.db.cursor() as cursor:  # a savepoint
                self._copy_events(cursor, "events", ordered)
        except errors.UniqueViolation:
            return self._insert_staged(ordered)
        return ordered

    def _insert_staged(self, events: list[Event]) -> list[Event]:
        """Of these events (in key order, no two with one key), insert those not stored
        before, through a staging table; those."""
        with self.db.cursor() as cursor:
            self._stage(cursor, "events", _EVENT_COLUMNS, _EVENT_TYPES, self._event_rows(events))
            inserted = cursor.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
                "FROM staged_events ORDER BY org, id ON CONFLICT DO NOTHING RETURNING org, id"
            ).fetchall()
        by_key = {(e.org, e.id): e for e in events}
        return [by_key[org, event_id] for org, event_id in inserted]

    def _copy_events(self, cursor: psycopg.Cursor[Any], table: str, events: list[Event]) -> None:
        """`events`, each in its call's day, into `table` by binary COPY."""
        with cursor.copy(f"COPY {table} ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_EVENT_TYPES)
            for row in self._event_rows(events):
                copy.write_row(row)

    def _event_rows(self, events: list[Event]) -> Iterator[tuple[object, ...]]:
        """Each event's row, in the order of `_EVENT_COLUMNS`, in its call's day."""
        days = self._days
        for e in events:
            yield (e.org, days[e.org, e.call], e.id, e.call, e.instant, e.seq, e.type, e.party,
                   e.number, e.kind, e.dialed, e.target, e.at)  # fmt: skip

    def call_events(self, keys: Sequence[CallKey]) -> dict[CallKey, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        stored: dict[CallKey, list[Event]] = {}
        if not keys:
            return stored
        orgs, calls = _columns(keys)
        days = [self._days[key] for key in keys]
        for org, call, event_id, instant, seq, type_, party, number, kind, at in self.db.execute(
            "SELECT e.org, e.call, e.id, e.instant, e.seq, e.type, e.party, e.number, e.kind, "
            "e.at FROM unnest(%b::text[], %b::int[], %b::text[]) AS k(org, day, call) "
            "CROSS JOIN LATERAL (SELECT * FROM events e "
            "WHERE e.org = k.org AND e.day = k.day AND e.call = k.call) e",
            (orgs, days, calls),
        ):
            stored.setdefault((org, call), []).append(
                Event(org, event_id, call, at, type_, seq, party, number, kind, instant=instant)
            )
        return stored

    def record_json(self, where: Sequence[Gone]) -> dict[CallKey, tuple[bytes, str | None]]:
        """The stored rendering and outcome of each of these records (those that exist)."""
        if not where:
            return {}
        orgs, starts, calls = _columns(where)
        days = [self._days[org, call] for org, _, call in where]
        with self.db.cursor(binary=True) as cursor:
            rows = cursor.execute(
                "SELECT r.org, r.call, r.json, r.outcome FROM unnest(%b::text[], %b::int[], "
                "%b::bigint[], %b::text[]) AS k(org, day, start_ms, call) CROSS JOIN LATERAL "
                "(SELECT * FROM records r WHERE r.org = k.org AND r.day = k.day "
                "AND r.start_ms = k.start_ms AND r.call = k.call) r",
                (orgs, days, starts, calls),
            ).fetchall()
        return {(org, call): (json, outcome) for org, call, json, outcome in rows}

    def note_erasure(self, org: str, at: int, by: str, selector: str, calls: int) -> int:
        """Keep an erasure in the audit trail (see WriteTx); its id."""
        row = self.db.execute(
            "INSERT INTO erasures (org, at, by, selector, calls) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (org, at, by, selector, calls),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def erase(self, org: str, calls: Sequence[tuple[str, int, int]], now: int) -> None:
        """Delete the calls' events, each in its day's partition, and mark them erased (see
        WriteTx)."""
        if not calls:
            return
        names = [call for call, _, _ in calls]
        self.db.execute(
            "DELETE FROM events e USING unnest(%b::text[], %b::int[]) AS k(call, day) "
            "WHERE e.org = %s AND e.day = k.day AND e.call = k.call",
            (names, [self._days[org, call] for call in names], org),
        )
        self.db.execute(
            "UPDATE calls c SET erased = true, record_ms = NULL, open = false, settled = true, "
            "version = k.version, seq = k.seq, moved_from = NULL, "
            "changed = CASE WHEN c.seq = k.seq THEN c.changed ELSE %s END "
            "FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS k(call, version, seq) "
            "WHERE c.org = %s AND c.call = k.call",
            (now, names, [v for _, v, _ in calls], [q for _, _, q in calls], org),
        )

    def take_change_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve change numbers of each organisation; the first of each. The organisations'
        rows stay locked until the commit (taken in name order): numbers are handed out in
        commit order. The commit notifies the waiting feed readers of every process."""
        names = sorted(counts)
        with self.db.pipeline():  # the three statements in one round trip
            self.db.execute(
                "SELECT name FROM orgs WHERE name = ANY(%b) ORDER BY name FOR UPDATE", (names,)
            )
            taken = self.db.execute(
                "UPDATE orgs o SET change_seq = o.change_seq + k.n "
                "FROM unnest(%b::text[], %b::bigint[]) AS k(name, n) WHERE o.name = k.name "
                "RETURNING o.name, o.change_seq",
                (names, [counts[name] for name in names]),
            )
            # Delivered at the commit, once per organisation.
            self.db.execute(
                "SELECT pg_notify(%s, k) FROM unnest(%b::text[]) AS k", (CHANNEL, names)
            )
        return {name: int(last) - counts[name] + 1 for name, last in taken.fetchall()}

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[Gone],
        calls: Sequence[CallRow],
        forget: Sequence[CallKey] = (),
        numbered: Mapping[str, int] | None = None,
    ) -> None:
        """Move the rows of calls whose day changed, delete `gone` records, upsert `records`
        and `calls`, delete the placeholders in `forget`. Many rows are staged (binary COPY)
        before the new versions' numbers are reserved (see WriteTx): from then on to the
        commit, which other writers of the organisations wait for, only two statements run,
        in the server. Holding the reservation while the client staged the rows (its Python
        sharing one GIL with the other writers) had the batches of an import written one
        after another: 18.3 s of its 20.7. A few rows (`ARRAYS_UP_TO`) go as arrays in the two
        statements themselves, which psycopg dumps in C, while the numbers are held, for well
        under a millisecond; that spares two COPYs' round trips (a live stream's batches of
        100: 0.88x the time)."""
        days = self._days
        with self.db.cursor() as cursor:
            moves = [
                (c, days[c.org, c.call]) for c in calls if days.get((c.org, c.call), c.day) != c.day
            ]
            for row, old_day in moves:  # rare: a late `started` from another date
                for table in PARTITIONED:
                    cursor.execute(
                        f"UPDATE {table} SET day = %s WHERE org = %s AND day = %s AND call = %s",
                        (row.day, row.org, old_day, row.call),
                    )
                days[row.org, row.call] = row.day
            if gone:
                cursor.executemany(
                    "DELETE FROM records WHERE org = %s AND day = %s AND start_ms = %s "
                    "AND call = %s",
                    [(org, days[org, call], ms, call) for org, ms, call in gone],
                )
            record_rows = self._rows_from(
                cursor, "records", _RECORD_COLUMNS, _RECORD_TYPES, records
            )
            call_rows = self._rows_from(cursor, "calls", _CALL_COLUMNS, _CALL_TYPES, calls)
            first = self.take_change_seqs(numbered) if numbered else {}
            # The k-th new version of an organisation, staged as -k, gets its number here.
            names = list(first)
            numbers = (names, [first[name] for name in names])
        # What is left goes in one round trip: no statement waits for another's answer.
        with self.db.pipeline(), self.db.cursor() as cursor:
            if records:
                source, arrays = record_rows
                cursor.execute(
                    "INSERT INTO records (org, day, start_ms, call, start, change_seq, json, "
                    "version, csv, outcome, caller_no, receiving_no, callee_no, duration, "
                    "answered_after) SELECT s.org, s.day, s.start_ms, s.call, s.start, "
                    "CASE WHEN s.change_seq < 0 THEN f.first - s.change_seq - 1 "
                    "ELSE s.change_seq END, s.json, s.version, s.csv, s.outcome, s.caller_no, "
                    "s.receiving_no, s.callee_no, s.duration, s.answered_after "
                    f"FROM {source} "
                    "LEFT JOIN unnest(%b::text[], %b::bigint[]) AS f(org, first) ON f.org = s.org "
                    "ON CONFLICT (org, start_ms, call, day) DO UPDATE "
                    "SET start = excluded.start, change_seq = excluded.change_seq, "
                    "json = excluded.json, version = excluded.version, csv = excluded.csv, "
                    "outcome = excluded.outcome, caller_no = excluded.caller_no, "
                    "receiving_no = excluded.receiving_no, callee_no = excluded.callee_no, "
                    "duration = excluded.duration, answered_after = excluded.answered_after",
                    (*arrays, *numbers),
                )
            if calls:
                source, arrays = call_rows
                cursor.execute(
                    "INSERT INTO calls (org, call, day, age, record_ms, open, last_seen, version, "
                    "seq, changed, started, ended) SELECT s.org, s.call, s.day, s.age, "
                    "s.record_ms, s.open, s.last_seen, s.version, "
                    "CASE WHEN s.seq < 0 THEN f.first - s.seq - 1 ELSE s.seq END, s.changed, "
                    f"s.started, s.ended FROM {source} "
                    "LEFT JOIN unnest(%b::text[], %b::bigint[]) AS f(org, first) ON f.org = s.org "
                    "ON CONFLICT (org, call) DO UPDATE SET day = excluded.day, "
                    "age = excluded.age, record_ms = excluded.record_ms, "
                    "open = excluded.open, last_seen = excluded.last_seen, "
                    "version = excluded.version, "
                    "moved_from = CASE WHEN excluded.seq = calls.seq THEN calls.moved_from END, "
                    "seq = excluded.seq, changed = excluded.changed, "
                    "started = excluded.started, ended = excluded.ended, settled = false",
                    (*arrays, *numbers),
                )
            if forget:
                cursor.executemany("DELETE FROM calls WHERE org = %s AND call = %s", forget)

    def _rows_from(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        columns: str,
        types: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[str, list[list[Any]]]:
        """Where a statement reads `rows` of `table` from (as `s`), and the parameters that
        takes. Up to `ARRAYS_UP_TO` rows go in the statement itself, one array a column: no
        round trip of their own. More are staged (see `_stage`), whose binary COPY dumps each
        value in C."""
        if len(rows) > ARRAYS_UP_TO:
            self._stage(cursor, table, columns, types, rows)
            return f"staged_{table} s", []
        arrays = ", ".join(f"%b::{kind}[]" for kind in types)
        return f"unnest({arrays}) AS s({columns})", _columns(rows)

    def _stage(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        columns: str,
        types: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """`rows` (in the order of `columns`) into `staged_<table>`, empty before, by binary
        COPY: each value is dumped in C, where arrays for `unnest` were built value by value in
        Python (10% of an import's time)."""
        staged = f"staged_{table}"
        if staged in self._staged:  # used before in this transaction
            cursor.execute(f"TRUNCATE {staged}")
        self._staged.add(staged)
        with cursor.copy(f"COPY {staged} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def settle(self, last_seen_before: int) -> int:
        """Note the calls that have settled (see WriteTx)."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs")]
        return self.db.execute(
            "UPDATE calls SET settled = true WHERE org = ANY(%b) AND ended AND NOT settled "
            "AND record_ms IS NOT NULL AND last_seen <= %s",
            (orgs, last_seen_before),
        ).rowcount

    def records_to_fill(self, limit: int) -> list[tuple[str, str, int]]:
        """Calls whose record has no outcome yet (stored before schema 7)."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs")]
        return self.db.execute(
            "SELECT org, call, start_ms FROM records WHERE org = ANY(%b) AND outcome IS NULL "
            "LIMIT %s",
            (orgs, limit),
        ).fetchall()

    def fill(self, rows: Sequence[tuple[str, int, str, str, int, int | None]]) -> None:
        """Store outcome and durations beside records stored before them."""
        with self.db.cursor() as cursor:
            cursor.executemany(
                "UPDATE records SET outcome = %s, duration = %s, answered_after = %s "
                "WHERE org = %s AND day = %s AND start_ms = %s AND call = %s",
                [
                    (o, d, a, org, self._days[org, call], ms, call)
                    for org, ms, call, o, d, a in rows
                ],
            )

    def stale_calls(self, last_seen_before: int) -> list[tuple[str, str, int, str]]:
        """Open calls idle since `last_seen_before`, locked, with the instant and `at` of their
        latest event; every organisation in one statement."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs ORDER BY name")]
        return self.db.execute(
            "SELECT c.org, c.call, e.instant, e.at FROM ("
            "  SELECT org, call, day FROM calls WHERE org = ANY(%b) AND open "
            "  AND last_seen <= %s ORDER BY org, call FOR UPDATE"
            ") c CROSS JOIN LATERAL ("
            "  SELECT instant, at FROM events WHERE org = c.org AND day = c.day "
            "  AND call = c.call ORDER BY instant DESC LIMIT 1"
            ") e",
            (orgs, last_seen_before),
        ).fetchall()


def _dropped(db: psycopg.Connection[Any]) -> bool:
    """Whether the server dropped `db` (then closed here): asked (a round trip; at every read
    and write, 12% of the process's time when each webhook message was another
    organisation's) only when the connection has something to read. An idle connection gets
    nothing, but one the server dropped has its farewell, or the end of the stream, waiting
    (`poll`, which takes any descriptor, where `select` stops at 1,024)."""
    if db.closed or db.broken:
        db.close()
        return True
    waiting = select.poll()
    waiting.register(db.fileno(), select.POLLIN)
    if not waiting.poll(0):
        return False
    try:
        ConnectionPool.check_connection(db)
    except psycopg.Error:
        # Closed, not only found: a connection that read the farewell can be left busy and
        # still called good, and the pool's COMMIT as it takes it back then failed (a 500 in
        # CI, just after a restart).
        db.close()
        return True
    return False


def _lost(db: psycopg.Connection[Any], exc: psycopg.OperationalError) -> bool:
    """Whether `exc`, raised by a statement on `db`, says the server dropped `db`."""
    return db.closed or db.broken or isinstance(exc, _FAREWELLS)


def _again(db: psycopg.Connection[Any], exc: psycopg.OperationalError, *, last: bool) -> bool:
    """Whether a statement that failed with `exc` on `db`, before anything was done on it, may
    be asked again on another connection: the server dropped `db` (closed here, for the pool
    to discard rather than commit) and this was not the `last` try."""
    if not _lost(db, exc):
        return False
    db.close()
    return not last


def _note_purged(db: psycopg.Connection[Any], org: str, seq: int) -> None:
    """Remember that versions up to change number `seq` of `org` may have been purged."""
    db.execute("UPDATE orgs SET purged_seq = greatest(purged_seq, %s) WHERE name = %s", (seq, org))


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest(...)` statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _partition(table: str, first: int, end: int) -> str:
    """The name of `table`'s partition of [first, end): events_2017_01_04 for a day,
    events_2017_01 for a month."""
    name = _date(first).replace("-", "_")
    return f"{table}_{name if end == first + 1 else name[:7]}"


def _date(day: int) -> str:
    return date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def _span_of(partition: str) -> tuple[int, int] | None:
    """The days [first, end) of a partition's name (None for the default partition)."""
    suffix = partition.split("_", 1)[1].replace("_", "-")
    try:
        if len(suffix) == 7:  # YYYY-MM: a month
            return _month_of(date.fromisoformat(suffix + "-01").toordinal() - _EPOCH_ORDINAL)
        first = date.fromisoformat(suffix).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    return first, first + 1


def _month_of(day: int) -> tuple[int, int]:
    """The days [first, end) of the month that holds `day`."""
    found = date.fromordinal(day + _EPOCH_ORDINAL)
    first = found.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first.toordinal() - _EPOCH_ORDINAL, following.toordinal() - _EPOCH_ORDINAL


def _within(day: int, spans: list[tuple[int, int]]) -> bool:
    return any(first <= day < end for first, end in spans)


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable URL)"
    info.pop("password", None)
    return repr(" ".join(f"{key}={value}" for key, value in info.items()))
