"""The production engine: PostgreSQL through psycopg 3 and a connection pool.

Several processes may write at once. Writers of one call take turns on a row lock of the call
(`lock_calls`); change numbers of an organisation are taken from its row, which stays locked
until the commit, so that they are given out in the order the changes become visible
(changes.md, "Visibility order"). Every key leads with `org` and every statement on call data
filters on it, so that the tables can be distributed by organisation (Citus; see README).
Text keys use the "C" collation: records are ordered by call id byte for byte, as on SQLite.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from samtal.errors import Conflict, NotFound, StoreError
from samtal.events import Event
from samtal.store._base import (
    CallRow,
    Change,
    Contention,
    Feed,
    KnownCall,
    Org,
    RecordPages,
    RecordRow,
    Token,
)
from samtal.times import US_PER_MS
from samtal.tokens import TokenKind

log = logging.getLogger(__name__)

#: Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orgs (
        name text COLLATE "C" PRIMARY KEY,
        tz text NOT NULL,
        created bigint NOT NULL,
        change_seq bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('read', 'ingest')),
        org text COLLATE "C" REFERENCES orgs (name),
        hash bytea NOT NULL UNIQUE,
        created bigint NOT NULL,
        last_used bigint,
        revoked bigint
    );
    -- One row per call: its lock, its day, what idle closing and purging need, where its
    -- record is. Not partitioned: it is the directory that says which day holds the call.
    CREATE TABLE calls (
        org text COLLATE "C" NOT NULL,
        call text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        age bigint NOT NULL,
        record_ms bigint,
        open boolean NOT NULL,
        last_seen bigint NOT NULL,
        PRIMARY KEY (org, call)
    );
    CREATE INDEX calls_by_age ON calls (org, age);
    CREATE INDEX calls_by_day ON calls (org, day);
    CREATE INDEX calls_open ON calls (org, last_seen) WHERE open;
    -- Events and records are partitioned by the call's day (the local date of its start, or
    -- of its earliest event while it has none): every row of a call is in one partition, and
    -- retention drops whole days. Append-only events, idempotent per (org, id) within a day.
    CREATE TABLE events (
        org text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        id text COLLATE "C" NOT NULL,
        call text COLLATE "C" NOT NULL,
        instant bigint NOT NULL,
        seq bigint,
        type text NOT NULL,
        party text,
        number text,
        kind text,
        dialed text,
        target text,
        at text NOT NULL,
        PRIMARY KEY (org, day, call, id)
    ) PARTITION BY RANGE (day);
    CREATE UNIQUE INDEX events_by_id ON events (org, day, id);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    CREATE TABLE records (
        org text COLLATE "C" NOT NULL,
        day integer NOT NULL,
        start_ms bigint NOT NULL,
        call text COLLATE "C" NOT NULL,
        start bigint NOT NULL,
        change_seq bigint NOT NULL,
        json bytea NOT NULL,
        PRIMARY KEY (org, start_ms, call, day)
    ) PARTITION BY RANGE (day);
    CREATE INDEX records_by_change ON records (org, change_seq);
    CREATE TABLE records_default PARTITION OF records DEFAULT;
    """,
    # 2: record identity (changes.md). A call's row holds its latest version and change
    # number, kept when its record goes (a tombstone): the feed is read from `calls`.
    """
    ALTER TABLE orgs ADD COLUMN purged_seq bigint NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN version integer NOT NULL DEFAULT 0,
        ADD COLUMN seq bigint NOT NULL DEFAULT 0,
        ADD COLUMN changed bigint NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN version integer NOT NULL DEFAULT 1;
    UPDATE calls c SET version = 1, changed = c.last_seen, seq = r.change_seq FROM records r
    WHERE r.org = c.org AND r.day = c.day AND r.start_ms = c.record_ms AND r.call = c.call;
    DROP INDEX records_by_change;
    CREATE INDEX calls_by_seq ON calls (org, seq);
    """,
    # 3: webhook subscriptions (webhooks.md) and the deliveries waiting for a retry.
    """
    CREATE TABLE webhooks (
        id text PRIMARY KEY,
        org text COLLATE "C" NOT NULL REFERENCES orgs (name),
        url text NOT NULL,
        secret text NOT NULL,
        created bigint NOT NULL,
        active integer NOT NULL,
        cursor bigint NOT NULL,
        last_success bigint,
        last_failure bigint,
        failing_since bigint,
        given_up bigint NOT NULL
    );
    CREATE TABLE webhook_retries (
        webhook text NOT NULL,
        seq bigint NOT NULL,
        attempt integer NOT NULL,
        due bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (webhook, seq)
    );
    CREATE INDEX webhook_retries_due ON webhook_retries (webhook, due);
    """,
    # 4: each record's CSV row, rendered with its JSON (NULL for records made before: those
    # are converted when read).
    """
    ALTER TABLE records ADD COLUMN csv bytea;
    """,
)
#: The channel a commit that gave out change numbers notifies, with its organisation.
CHANNEL = "samtal_changes"
#: Records per page of a period's scan, each page one short query.
PAGE = 2000
#: Raised by PostgreSQL when it broke a deadlock or a serialisation conflict by aborting us.
_RACES = (errors.DeadlockDetected, errors.SerializationFailure)
_EVENT_COLUMNS = "org, day, id, call, instant, seq, type, party, number, kind, dialed, target, at"
#: The partitioned tables, each with a partition per day it holds calls of.
PARTITIONED = ("events", "records")
_TOKEN_COLUMNS = "id, kind, org, created, last_used, revoked"


class PostgresEngine(RecordPages):
    """The engine on one PostgreSQL database, shared by any number of processes."""

    def __init__(
        self, url: str, migrations: tuple[str, ...] = MIGRATIONS, *, max_size: int = 8
    ) -> None:
        self._migrations = migrations
        self._url = url
        self._lead: psycopg.Connection[Any] | None = None
        self._days: set[int] = set()  # days known to have their partitions
        try:
            self._pool = ConnectionPool(
                url, min_size=1, max_size=max_size, open=True, timeout=30, name="samtal"
            )
            self._pool.wait(timeout=10)
            self._migrate()
        except (psycopg.Error, Exception) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the database {_safe(url)}: {exc}") from exc

    def _migrate(self) -> None:
        with self._pool.connection() as db, db.transaction():
            # One process upgrades; the others wait for it and then find nothing to do.
            db.execute("SELECT pg_advisory_xact_lock(hashtext('samtal:migrate'))")
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > len(self._migrations):
                raise StoreError(
                    f"the database has schema version {version}, newer than this samtal knows "
                    f"({len(self._migrations)}): upgrade samtal"
                )
            for number, script in enumerate(self._migrations[version:], version + 1):
                db.execute(script)
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._one("SELECT value FROM meta WHERE key = 'schema_version'")[0])

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
        if self._lead is not None:
            try:
                self._lead.execute("SELECT 1")
                return True
            except psycopg.Error:
                log.warning("lost the connection that held the lead of the duties")
                self._lead.close()
                self._lead = None
        lead = psycopg.connect(self._url, autocommit=True)
        row = lead.execute("SELECT pg_try_advisory_lock(hashtext('samtal:duties'))").fetchone()
        if row is None or not row[0]:
            lead.close()
            return False
        self._lead = lead
        return True

    def close(self) -> None:
        """Release the engine's connections and the lead of the duties."""
        if self._lead is not None:
            self._lead.close()
            self._lead = None
        self._pool.close()

    def _all(self, sql: str, params: Sequence[object] = (), *, binary: bool = False) -> list[Any]:
        """The rows of one read statement, on a pooled connection in autocommit: each read is
        its own snapshot, and nothing is held once it returns. `binary` fetches in PostgreSQL's
        binary format (rendered records come as they are, not hex-encoded)."""
        with self._pool.connection() as db:
            db.autocommit = True
            with db.cursor(binary=binary) as cursor:
                return cursor.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction on a pooled connection; Contention when it lost a race."""
        try:
            with self._pool.connection() as db:
                db.autocommit = False
                with db.transaction():
                    yield db
        except _RACES as exc:
            raise Contention(str(exc).strip()) from exc

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """A write transaction (see WriteTx); not nestable."""
        with self._writing() as db:
            yield _Tx(db)

    def prepare_days(self, days: set[int]) -> None:
        """Make the partitions of these days, outside any write transaction (making one locks
        its table briefly). A day whose rows sit in the default partition already (events of a
        day dropped, sent again) stays there."""
        missing = days - self._days
        if not missing:
            return
        with self._pool.connection() as db:
            db.autocommit = True
            existing = {
                day
                for (name,) in db.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'events'::regclass"
                )
                if (day := _day_of(name)) is not None
            }
            self._days |= existing
            for day in sorted(missing - existing):
                try:
                    with db.transaction():
                        db.execute("SELECT pg_advisory_xact_lock(hashtext('samtal:partitions'))")
                        for table in PARTITIONED:
                            db.execute(
                                f"CREATE TABLE IF NOT EXISTS {_partition(table, day)} "
                                f"PARTITION OF {table} FOR VALUES FROM ({day}) TO ({day + 1})"
                            )
                except psycopg.Error as exc:
                    log.warning("day %s stays in the default partition: %s", _date(day), exc)
                self._days.add(day)

    def drop_days(self, before: int) -> int:
        """Drop the partitions of the days before `before`, and the calls of those days."""
        with self._pool.connection() as db:
            db.autocommit = True
            doomed = sorted(
                day
                for (name,) in db.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'events'::regclass"
                )
                if (day := _day_of(name)) is not None and day < before
            )
            if doomed:
                # The directory goes first, remembering the highest change number it held, so
                # that the feed never sees a call whose record is gone with its partition (that
                # would read as a tombstone). Rows of those days that were sent again into the
                # default partitions go too.
                for (org,) in db.execute("SELECT name FROM orgs").fetchall():
                    with db.transaction():
                        row = db.execute(
                            "WITH gone AS (DELETE FROM calls WHERE org = %s AND day < %s "
                            "RETURNING seq) SELECT max(seq) FROM gone",
                            (org, before),
                        ).fetchone()
                        if row is not None and row[0] is not None:
                            _note_purged(db, org, row[0])
                        for table in PARTITIONED:
                            db.execute(
                                f"DELETE FROM {table}_default WHERE org = %s AND day < %s",
                                (org, before),
                            )
            for day in doomed:
                with db.transaction():
                    for table in PARTITIONED:
                        db.execute(f"DROP TABLE IF EXISTS {_partition(table, day)}")
                self._days.discard(day)
            if doomed:
                log.info("dropped %d day(s) of calls before %s", len(doomed), _date(before))
        return len(doomed)

    def operator_sql(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool
    ) -> list[Any]:
        """Run `statements` (`?` placeholders) in one transaction; the rows of the last."""
        with self._writing() as db, db.cursor() as cursor:
            if not write:
                cursor.execute("SET TRANSACTION READ ONLY")
            rows: list[Any] = []
            for sql, params in statements:
                cursor.execute(sql.replace("?", "%s"), tuple(params))
                rows = cursor.fetchall() if cursor.description is not None else []
            return rows

    # -- organisations and tokens -----------------------------------------------------------

    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation; Conflict when it exists."""
        try:
            with self._writing() as db:
                db.execute(
                    "INSERT INTO orgs (name, tz, created) VALUES (%s, %s, %s)", (name, tz, now)
                )
        except errors.UniqueViolation:
            raise Conflict(f"organisation {name!r} exists already") from None
        return Org(name, tz, now)

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        return [Org(*row) for row in self._all("SELECT name, tz, created FROM orgs ORDER BY name")]

    def org(self, name: str) -> Org | None:
        """One organisation, or None."""
        row = self._one("SELECT name, tz, created FROM orgs WHERE name = %s", (name,))
        return Org(*row) if row else None

    def add_token(self, kind: TokenKind, *, org: str | None, hash: bytes, now: int) -> Token:
        """Store a token by the hash of its secret; NotFound for an unknown organisation."""
        try:
            with self._writing() as db:
                row = db.execute(
                    "INSERT INTO tokens (kind, org, hash, created) VALUES (%s, %s, %s, %s) "
                    "RETURNING id",
                    (kind, org, hash, now),
                ).fetchone()
        except errors.ForeignKeyViolation:
            raise NotFound(f"unknown organisation {org!r}: add it with `samtal org add`") from None
        assert row is not None
        return Token(row[0], kind, org, now, None, None)

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        return [
            Token(*row) for row in self._all(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY id")
        ]

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token (again: no change); NotFound when there is none with that id."""
        with self._writing() as db:
            row = db.execute(
                "UPDATE tokens SET revoked = coalesce(revoked, %s) WHERE id = %s "
                f"RETURNING {_TOKEN_COLUMNS}",
                (now, token_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no token with id {token_id}: `samtal token list` shows them")
        return Token(*row)

    def token_by_hash(self, hash: bytes) -> Token | None:
        """The token with this hash, or None."""
        row = self._one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = %s", (hash,))
        return Token(*row) if row else None

    def touch_token(self, token_id: int, *, now: int) -> None:
        """Note that a token was used."""
        with self._writing() as db:
            db.execute("UPDATE tokens SET last_used = %s WHERE id = %s", (now, token_id))

    # -- call data --------------------------------------------------------------------------

    def _pages(self, columns: str, org: str, start: int, end: int) -> Iterator[list[Any]]:
        """Pages of (start_ms, call, *columns) of the records of `org` whose start is in
        [start, end), in order; each page is one short query continuing after the last
        (start_ms, call) seen."""
        low, high = start // US_PER_MS, (end - 1) // US_PER_MS
        rows = self._all(
            f"SELECT start_ms, call, {columns} FROM records WHERE org = %s AND start_ms >= %s "
            "AND start_ms <= %s AND start >= %s AND start < %s ORDER BY start_ms, call LIMIT %s",
            (org, low, high, start, end, PAGE),
            binary=True,
        )
        while rows:
            yield rows
            if len(rows) < PAGE:
                return
            last_ms, last_call = rows[-1][:2]
            rows = self._all(
                f"SELECT start_ms, call, {columns} FROM records WHERE org = %s "
                "AND (start_ms, call) > (%s, %s) AND start_ms <= %s AND start >= %s "
                "AND start < %s ORDER BY start_ms, call LIMIT %s",
                (org, last_ms, last_call, high, start, end, PAGE),
                binary=True,
            )

    def feed(self, *, org: str, after: int, limit: int) -> Feed:
        """The latest versions of `org`'s calls after change number `after` (see Engine)."""
        with self._pool.connection() as db:
            db.autocommit = False
            with db.transaction(), db.cursor(binary=True) as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                numbers = cursor.execute(
                    "SELECT change_seq, purged_seq FROM orgs WHERE name = %s", (org,)
                ).fetchone()
                if numbers is None:
                    raise NotFound(f"unknown organisation {org!r}")
                rows = cursor.execute(
                    "SELECT c.seq, c.call, c.version, c.changed, r.json FROM calls c "
                    "LEFT JOIN records r ON r.org = c.org AND r.day = c.day "
                    "AND r.start_ms = c.record_ms AND r.call = c.call "
                    "WHERE c.org = %s AND c.seq > %s ORDER BY c.seq LIMIT %s",
                    (org, after, limit),
                ).fetchall()
        return Feed([Change(*row) for row in rows], *numbers)

    def latest_change(self, org: str) -> int:
        """The highest change number `org` has given out."""
        row = self._one("SELECT change_seq FROM orgs WHERE name = %s", (org,))
        if row is None:
            raise NotFound(f"unknown organisation {org!r}")
        return int(row[0])

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
        return len(doomed)


class _Tx:
    """One write transaction on a pooled connection (see WriteTx). It remembers the day of
    every call it locked: each statement on a call's rows names its day, so that PostgreSQL
    looks in that day's partition alone."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db
        self._days: dict[str, int] = {}  # (this organisation's) call -> its day

    def lock_calls(self, org: str, calls: Sequence[str]) -> dict[str, KnownCall]:
        """Lock each call's row (making a placeholder for a call not seen before, which the
        transaction fills in or rolls back); the calls seen before with what is known of their
        record."""
        made = {
            call
            for (call,) in self.db.execute(
                "INSERT INTO calls (org, call, day, age, record_ms, open, last_seen) "
                "SELECT %s, c, 0, 0, NULL, true, 0 FROM unnest(%s::text[]) AS c ORDER BY c "
                "ON CONFLICT DO NOTHING RETURNING call",
                (org, list(calls)),
            )
        }
        rows = self.db.execute(
            "SELECT call, day, record_ms, version, seq, changed FROM calls "
            "WHERE org = %s AND call = ANY(%s) ORDER BY call FOR UPDATE",
            (org, list(calls)),
        ).fetchall()
        self._days = {call: day for call, day, *_ in rows if call not in made}
        return {call: KnownCall(*rest) for call, _, *rest in rows if call not in made}

    def insert_events(
        self, org: str, events: Sequence[Event], new_days: Mapping[str, int]
    ) -> list[Event]:
        """COPY the batch into a staging table, then insert what is new in one statement."""
        first: dict[str, Event] = {}
        for event in events:
            first.setdefault(event.id, event)
        if not first:
            return []
        self._days.update(new_days)
        days = self._days
        db = self.db
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging (LIKE events INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        with db.cursor() as cursor:
            # In id order: two writers of the same events wait for each other in the same
            # order, never in a cycle.
            with cursor.copy(f"COPY staging ({_EVENT_COLUMNS}) FROM STDIN") as copy:
                for event_id, e in sorted(first.items()):
                    copy.write_row(
                        (
                            org,
                            days[e.call],
                            event_id,
                            e.call,
                            e.instant,
                            e.seq,
                            e.type,
                            e.party,
                            e.number,
                            e.kind,
                            e.dialed,
                            e.target,
                            e.at,
                        )
                    )
            inserted = cursor.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM staging "
                "ORDER BY id ON CONFLICT DO NOTHING RETURNING id"
            ).fetchall()
            db.execute("TRUNCATE staging")
        return [first[event_id] for (event_id,) in inserted]

    def call_events(self, org: str, calls: Sequence[str]) -> dict[str, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        stored: dict[str, list[Event]] = {}
        days = sorted({self._days[call] for call in calls})
        for call, event_id, instant, seq, type_, party, number, kind, at in self.db.execute(
            "SELECT call, id, instant, seq, type, party, number, kind, at FROM events "
            "WHERE org = %s AND day = ANY(%s) AND call = ANY(%s)",
            (org, days, list(calls)),
        ):
            stored.setdefault(call, []).append(
                Event(org, event_id, call, at, type_, seq, party, number, kind, instant=instant)
            )
        return stored

    def record_json(self, org: str, start_ms: int, call: str) -> bytes | None:
        """The stored rendering of a call's record, or None."""
        row = self.db.execute(
            "SELECT json FROM records WHERE org = %s AND day = %s AND start_ms = %s AND call = %s",
            (org, self._days[call], start_ms, call),
        ).fetchone()
        return bytes(row[0]) if row else None

    def zone_of(self, org: str) -> str:
        """The organisation's zone name; NotFound when unknown."""
        row = self.db.execute("SELECT tz FROM orgs WHERE name = %s", (org,)).fetchone()
        if row is None:
            raise NotFound(f"unknown organisation {org!r}")
        return str(row[0])

    def take_change_seqs(self, org: str, count: int) -> int:
        """Reserve `count` change numbers of `org`; the first. The organisation's row stays
        locked until the commit: numbers are handed out in commit order."""
        row = self.db.execute(
            "UPDATE orgs SET change_seq = change_seq + %s WHERE name = %s RETURNING change_seq",
            (count, org),
        ).fetchone()
        assert row is not None
        # Delivered at the commit (once per transaction and organisation): it wakes the
        # waiting feed readers of every process.
        self.db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, org))
        return int(row[0]) - count + 1

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[tuple[str, int, str]],
        calls: Sequence[CallRow],
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Move the rows of calls whose day changed, delete `gone` records, upsert `records`
        and `calls`, delete the placeholders in `forget`."""
        with self.db.cursor() as cursor:
            moves = [
                (c, self._days[c.call]) for c in calls if self._days.get(c.call, c.day) != c.day
            ]
            for row, old_day in moves:  # rare: a late `started` from another date
                for table in PARTITIONED:
                    cursor.execute(
                        f"UPDATE {table} SET day = %s WHERE org = %s AND day = %s AND call = %s",
                        (row.day, row.org, old_day, row.call),
                    )
                self._days[row.call] = row.day
            if gone:
                cursor.executemany(
                    "DELETE FROM records WHERE org = %s AND day = %s AND start_ms = %s "
                    "AND call = %s",
                    [(org, self._days[call], ms, call) for org, ms, call in gone],
                )
            if records:  # one statement for the batch, from arrays
                cursor.execute(
                    "INSERT INTO records SELECT * FROM unnest(%s::text[], %s::int[], "
                    "%s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::bytea[], "
                    "%s::int[], %s::bytea[]) ON CONFLICT (org, start_ms, call, day) DO UPDATE "
                    "SET start = excluded.start, change_seq = excluded.change_seq, "
                    "json = excluded.json, version = excluded.version, csv = excluded.csv",
                    _columns(
                        (
                            r.org,
                            r.day,
                            r.start_ms,
                            r.call,
                            r.start,
                            r.change_seq,
                            r.json,
                            r.version,
                            r.csv,
                        )
                        for r in records
                    ),
                )
            if calls:
                cursor.execute(
                    "INSERT INTO calls SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], "
                    "%s::bigint[], %s::bigint[], %s::boolean[], %s::bigint[], %s::int[], "
                    "%s::bigint[], %s::bigint[]) "
                    "ON CONFLICT (org, call) DO UPDATE SET day = excluded.day, "
                    "age = excluded.age, record_ms = excluded.record_ms, "
                    "open = excluded.open, last_seen = excluded.last_seen, "
                    "version = excluded.version, seq = excluded.seq, changed = excluded.changed",
                    _columns(
                        (
                            c.org,
                            c.call,
                            c.day,
                            c.age,
                            c.record_ms,
                            c.open,
                            c.last_seen,
                            c.version,
                            c.seq,
                            c.changed,
                        )
                        for c in calls
                    ),
                )
            if forget:
                cursor.executemany("DELETE FROM calls WHERE org = %s AND call = %s", forget)

    def stale_calls(self, last_seen_before: int) -> list[tuple[str, str, int, str]]:
        """Open calls idle since `last_seen_before`, locked, with the instant and `at` of their
        latest event; one organisation at a time, as a distributed table wants."""
        stale = []
        for (org,) in self.db.execute("SELECT name FROM orgs ORDER BY name").fetchall():
            for call, instant, at in self.db.execute(
                "SELECT c.call, e.instant, e.at FROM ("
                "  SELECT call, day FROM calls WHERE org = %s AND open AND last_seen <= %s "
                "  ORDER BY call FOR UPDATE"
                ") c CROSS JOIN LATERAL ("
                "  SELECT instant, at FROM events WHERE org = %s AND day = c.day "
                "  AND call = c.call ORDER BY instant DESC LIMIT 1"
                ") e",
                (org, last_seen_before, org),
            ).fetchall():
                stale.append((org, call, instant, at))
        return stale


def _note_purged(db: psycopg.Connection[Any], org: str, seq: int) -> None:
    """Remember that versions up to change number `seq` of `org` may have been purged."""
    db.execute("UPDATE orgs SET purged_seq = greatest(purged_seq, %s) WHERE name = %s", (seq, org))


def _columns(rows: Iterable[tuple[object, ...]]) -> list[list[object]]:
    """Rows as one list per column: the arrays an `unnest(...)` statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _partition(table: str, day: int) -> str:
    """The name of `table`'s partition of `day`, e.g. events_2017_01_04."""
    return f"{table}_{_date(day).replace('-', '_')}"


def _date(day: int) -> str:
    return date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def _day_of(partition: str) -> int | None:
    """The day of a partition's name (None for the default partition)."""
    try:
        found = date.fromisoformat(partition.split("_", 1)[1].replace("_", "-"))
    except ValueError:
        return None
    return found.toordinal() - _EPOCH_ORDINAL


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable URL)"
    info.pop("password", None)
    return repr(" ".join(f"{key}={value}" for key, value in info.items()))
