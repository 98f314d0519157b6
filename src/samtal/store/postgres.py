"""The production engine: PostgreSQL through psycopg 3 and a connection pool.

Several processes, and several writer threads in each, may write at once. Writers of one call
take turns on a row lock of the call (`lock_calls`); change numbers of an organisation are taken
from its row, which stays locked until the commit, so that they are given out in the order the
changes become visible (changes.md, "Visibility order"). Every key leads with `org` and every
statement on call data filters on it, so that the tables can be distributed by organisation
(Citus; see README). Text keys use the "C" collation: records are ordered by call id byte for
byte, as on SQLite. What every engine shares is in `_sql`, the schema in `_postgres_schema`
and the write transaction (its statements and bulk writes: COPY, arrays) in `_postgres_tx`;
this module keeps PostgreSQL's pool, its partitions and its LISTEN/NOTIFY watcher.
"""

from __future__ import annotations

import logging
import select
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from typing import Any, ClassVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from samtal.errors import StoreError
from samtal.store._base import (
    Change,
    Contention,
    FeedRead,
    Refused,
)
from samtal.store._postgres_schema import MIGRATIONS
from samtal.store._postgres_tx import CHANNEL, PARTITIONED, PostgresTx
from samtal.store._sql import FEED_COLUMNS, SqlEngine
from samtal.times import US_PER_SECOND

log = logging.getLogger(__name__)

#: The tables a write transaction stages rows in (`PostgresTx._stage`): a connection's own,
#: made once for it, emptied by each commit.
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
    # Other writers go on during a purge (its organisation's only at its end): shares of
    # 10,000 took 1.8x the time of one transaction for 120,000 calls and shortened no wait.
    purge_share: ClassVar[int] = 200_000

    def __init__(
        self,
        url: str,
        migrations: tuple[str, ...] = MIGRATIONS,
        *,
        max_size: int = 8,
        reads: bool = True,
        create: bool = True,
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
                configure=_no_jit,
            )
            self._pool.wait(timeout=10)
            if not create and not self._made():
                # Another database of the server (the customer's, the default one): a command
                # that only reads or changes what is there would make samtal's tables in it.
                raise StoreError(
                    f"no samtal database at {_safe(url)}: it has no samtal tables; check the "
                    "URL (`samtal org add` or `samtal import` makes them in a database)"
                )
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
                said = str(exc).strip().splitlines()[0]
                if exc.sqlstate == _DISK_FULL:
                    raise StoreError(
                        f"the database's disk is full ({said}): nothing of this was stored; "
                        "free room, then send it again"
                    ) from exc
                if db is None or not _lost(db, exc):
                    raise
                raise StoreError(f"the connection to the database was lost: {said}") from exc

    @contextmanager
    def _migrating(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connection() as db, db.transaction():
            # One process upgrades; the others wait for it and then find nothing to do.
            db.execute("SELECT pg_advisory_xact_lock(hashtext('samtal:migrate'))")
            yield db

    def _apply(self, db: Any, script: str) -> None:
        db.execute(script)

    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        """A write transaction for the record workflow (see WriteTx)."""
        try:
            with self._writing(staging=True) as db:
                yield PostgresTx(db)
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

    def purge(self, *, org: str, before: int, at_most: int) -> int:
        """Remove whole calls of `org` whose age is before `before`, at most `at_most`, the
        lowest change numbers first; the number removed."""
        with self._writing() as db:
            # Counted first, up to one more than the share, from the index by age: picking the
            # share by `seq` when all of them fit took 1.4x the time of the purge.
            over = db.execute(
                "SELECT count(*) > %s FROM (SELECT 1 FROM calls WHERE org = %s AND age < %s "
                "LIMIT %s) s",
                (at_most, org, before, at_most + 1),
            ).fetchone()
            if over is not None and over[0]:
                doomed = db.execute(
                    "DELETE FROM calls WHERE org = %s AND call IN (SELECT call FROM calls "
                    "WHERE org = %s AND age < %s ORDER BY seq LIMIT %s) RETURNING call, day, seq",
                    (org, org, before, at_most),
                ).fetchall()
            else:
                doomed = db.execute(
                    "DELETE FROM calls WHERE org = %s AND age < %s RETURNING call, day, seq",
                    (org, before),
                ).fetchall()
            if doomed:
                # A statement a day, each in its own partition: one for every day at once took
                # PostgreSQL's planner 5 s to plan for 120,000 calls (each call weighed for each
                # partition) before it deleted anything in 0.9 s.
                days: dict[int, list[str]] = {}
                for call, day, _ in doomed:
                    days.setdefault(day, []).append(call)
                for table in PARTITIONED:
                    with db.cursor() as cur:
                        cur.executemany(
                            f"DELETE FROM {table} WHERE org = %s AND day = %s AND call = ANY(%s)",
                            [(org, day, calls) for day, calls in sorted(days.items())],
                        )
                # Last: the organisation's row, which its ingest also writes, is held from here
                # to the commit only.
                _note_purged(db, org, max(seq for _, _, seq in doomed))
                self._renumber(db, org)
        return len(doomed)


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


#: SQLSTATE disk_full: PostgreSQL could not extend a file.
_DISK_FULL = "53100"


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


def _no_jit(db: psycopg.Connection[Any]) -> None:
    """Each connection of the pool without JIT compiling. A statement of a few thousand keys
    over a few months of partitions is costed above `jit_above_cost` (its planner counts a
    probe of every partition a key), and compiling it took 100 ms or more where running it
    takes 8 ms."""
    db.execute("SET jit = off")
    db.commit()
