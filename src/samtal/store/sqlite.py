"""The embedded engine: SQLite in WAL mode, one writer connection and a reader per thread.

Records are stored rendered (compact JSON in the organisation's zone, made once when the call's
record is recomputed) and clustered by (org, start in ms, call): a period query is a few ordered
range scans that hand out ready bytes.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from samtal.errors import Conflict, NotFound, StoreError
from samtal.events import Event
from samtal.store._base import CallRow, Change, Feed, KnownCall, Org, RecordPages, RecordRow, Token
from samtal.times import US_PER_MS
from samtal.tokens import TokenKind

#: Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orgs (
        name TEXT PRIMARY KEY,
        tz TEXT NOT NULL,
        created INTEGER NOT NULL,
        change_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('read', 'ingest')),
        org TEXT REFERENCES orgs (name),
        hash BLOB NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        last_used INTEGER,
        revoked INTEGER
    );
    -- Append-only, idempotent per (org, id); clustered by call, so that a call's events,
    -- which recomputing its record reads, lie together.
    CREATE TABLE events (
        org TEXT NOT NULL,
        id TEXT NOT NULL,
        call TEXT NOT NULL,
        instant INTEGER NOT NULL,
        seq INTEGER,
        type TEXT NOT NULL,
        party TEXT,
        number TEXT,
        kind TEXT,
        dialed TEXT,
        target TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (org, call, id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_by_id ON events (org, id);
    -- One row per call: what idle closing and purging need, and where its record is.
    CREATE TABLE calls (
        org TEXT NOT NULL,
        call TEXT NOT NULL,
        age INTEGER NOT NULL,        -- start of the call, or its earliest event without one
        record_ms INTEGER,           -- start_ms of its record, NULL while it has none
        open INTEGER NOT NULL,       -- 1 while it has not stopped
        last_seen INTEGER NOT NULL,  -- server clock of its latest event
        PRIMARY KEY (org, call)
    ) WITHOUT ROWID;
    CREATE INDEX calls_by_age ON calls (org, age);
    CREATE INDEX calls_open ON calls (last_seen) WHERE open = 1;
    CREATE TABLE records (
        org TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        call TEXT NOT NULL,
        start INTEGER NOT NULL,
        change_seq INTEGER NOT NULL,
        json BLOB NOT NULL,
        PRIMARY KEY (org, start_ms, call)
    ) WITHOUT ROWID;
    CREATE INDEX records_by_change ON records (org, change_seq);
    """,
    # 2: record identity (changes.md). A call's row holds its latest version and change
    # number, kept when its record goes (a tombstone): the feed is read from `calls`.
    """
    ALTER TABLE orgs ADD COLUMN purged_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    UPDATE calls SET version = 1, changed = last_seen, seq = (
        SELECT r.change_seq FROM records r
        WHERE r.org = calls.org AND r.start_ms = calls.record_ms AND r.call = calls.call
    ) WHERE record_ms IS NOT NULL;
    DROP INDEX records_by_change;
    CREATE INDEX calls_by_seq ON calls (org, seq);
    """,
    # 3: webhook subscriptions (webhooks.md) and the deliveries waiting for a retry.
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        org TEXT NOT NULL REFERENCES orgs (name),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created INTEGER NOT NULL,
        active INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        last_success INTEGER,
        last_failure INTEGER,
        failing_since INTEGER,
        given_up INTEGER NOT NULL
    );
    CREATE TABLE webhook_retries (
        webhook TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        due INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (webhook, seq)
    ) WITHOUT ROWID;
    CREATE INDEX webhook_retries_due ON webhook_retries (webhook, due);
    """,
    # 4: each record's CSV row, rendered with its JSON (NULL for records made before: those
    # are converted when read).
    """
    ALTER TABLE records ADD COLUMN csv BLOB;
    """,
)
CHUNK = 500  # parameters per IN (...) list
#: Records per page of a period's scan: each page is one short query (about 0.5 MB of JSON).
PAGE = 2000
#: Seconds between two looks at whether another connection committed (see `watch`).
WATCH_EVERY = 0.1


def path_of(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL (`:memory:` too)."""
    if not url.startswith("sqlite:///"):
        raise StoreError(
            f"unsupported database URL {url!r}: use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = url[len("sqlite:///") :]
    if not path:
        raise StoreError(f"database URL {url!r} names no file")
    return path


class SqliteEngine(RecordPages):
    """The engine on one SQLite file: writes go one at a time through one connection."""

    def __init__(self, url: str, migrations: tuple[str, ...] = MIGRATIONS) -> None:
        self._migrations = migrations
        path = path_of(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = self._connect(path)
            # 64 MiB of page cache for the writer (the default is 2 MiB): the B-trees that
            # ingest touches stay in memory as the database grows. The reader keeps the
            # default: it scans in order, and its memory stays flat however long the period.
            self._writer.execute("PRAGMA cache_size = -65536")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path!r}: {exc}") from exc
        self._path = path
        self._lock = threading.Lock()
        self._zones: dict[str, str] = {}
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()  # not the writer's: a reader may open inside it
        self._lead: IO[str] | None = None

    @property
    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: a connection is never shared between threads."""
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._connect(self._path)
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """The rows of a query on this thread's reader, all fetched: a statement left open
        would keep its snapshot (and hold back checkpoints) until the cursor is collected."""
        return self._reader.execute(sql, params).fetchall()

    def _read_one(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        """The first row of a query, or None (see `_read`)."""
        rows = self._read(sql, params)
        return rows[0] if rows else None

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when it returns, so a 200 means durably stored.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _migrate(self) -> None:
        db = self._writer
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > len(self._migrations):
            raise StoreError(
                f"the database has schema version {version}, newer than this samtal knows "
                f"({len(self._migrations)}): upgrade samtal"
            )
        for number, script in enumerate(self._migrations[version:], version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._read_one("SELECT value FROM meta WHERE key = 'schema_version'")[0])

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the writer connection, one at a time."""
        with self._lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """A write transaction (see WriteTx); not nestable."""
        with self._writing() as db:
            yield _Tx(db, self._zones)

    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """Poll SQLite's `data_version`, which moves whenever another connection (of this
        process or any other) commits; `changed(None)` then, since it does not say what."""
        if self._path == ":memory:":  # no other connection can see this database
            stop.wait()
            return
        db = self._connect(self._path)
        try:
            last = db.execute("PRAGMA data_version").fetchone()[0]
            while not stop.wait(WATCH_EVERY):
                version = db.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    changed(None)
        finally:
            db.close()

    def lead_duties(self) -> bool:
        """Lead the duties while holding an exclusive lock on `<database>.duties`; the lock
        goes with the process, so another takes over when the leader dies."""
        if self._lead is None:
            if self._path == ":memory:":
                return True
            lead = open(self._path + ".duties", "a")  # noqa: SIM115 (held while the engine lives)
            try:
                fcntl.flock(lead, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lead.close()
                return False
            self._lead = lead
        return True

    def close(self) -> None:
        """Release the engine's connections and the lead of the duties."""
        if self._lead is not None:
            self._lead.close()
            self._lead = None
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        with self._lock:
            self._writer.close()

    def operator_sql(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool
    ) -> list[Any]:
        """Run `statements` in one transaction (on the writer when `write`); the rows of the
        last."""
        if not write:
            db = self._reader
            db.execute("BEGIN")
            try:
                return _run(db, statements)
            finally:
                db.execute("COMMIT")
        with self._writing() as db:
            return _run(db, statements)

    # -- organisations and tokens -----------------------------------------------------------

    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation; Conflict when it exists."""
        with self._writing() as db:
            try:
                db.execute("INSERT INTO orgs (name, tz, created) VALUES (?, ?, ?)", (name, tz, now))
            except sqlite3.IntegrityError:
                raise Conflict(f"organisation {name!r} exists already") from None
        return Org(name, tz, now)

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        rows = self._read("SELECT name, tz, created FROM orgs ORDER BY name")
        return [Org(*row) for row in rows]

    def org(self, name: str) -> Org | None:
        """One organisation, or None."""
        row = self._read_one("SELECT name, tz, created FROM orgs WHERE name = ?", (name,))
        return Org(*row) if row else None

    def add_token(self, kind: TokenKind, *, org: str | None, hash: bytes, now: int) -> Token:
        """Store a token by the hash of its secret; NotFound for an unknown organisation."""
        with self._writing() as db:
            if (
                org is not None
                and db.execute("SELECT 1 FROM orgs WHERE name = ?", (org,)).fetchone() is None
            ):
                raise NotFound(f"unknown organisation {org!r}: add it with `samtal org add`")
            cursor = db.execute(
                "INSERT INTO tokens (kind, org, hash, created) VALUES (?, ?, ?, ?)",
                (kind, org, hash, now),
            )
            token_id = cursor.lastrowid
        assert token_id is not None
        return Token(token_id, kind, org, now, None, None)

    _TOKEN_COLUMNS = "id, kind, org, created, last_used, revoked"

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        rows = self._read(f"SELECT {self._TOKEN_COLUMNS} FROM tokens ORDER BY id")
        return [Token(*row) for row in rows]

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token (again: no change); NotFound when there is none with that id."""
        with self._writing() as db:
            db.execute(
                "UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ?", (now, token_id)
            )
            row = db.execute(
                f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no token with id {token_id}: `samtal token list` shows them")
        return Token(*row)

    def token_by_hash(self, hash: bytes) -> Token | None:
        """The token with this hash, or None."""
        row = self._read_one(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE hash = ?", (hash,))
        return Token(*row) if row else None

    def touch_token(self, token_id: int, *, now: int) -> None:
        """Note that a token was used."""
        with self._writing() as db:
            db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token_id))

    # -- call data --------------------------------------------------------------------------

    def _pages(self, columns: str, org: str, start: int, end: int) -> Iterator[list[Any]]:
        """Pages of (start_ms, call, *columns) of the records of `org` whose start is in
        [start, end), in order.

        Each page is its own short query, continuing after the last (start_ms, call) seen, so
        that no read transaction stays open between pages: a client that stops reading holds
        no snapshot, blocks no checkpoint and ties up no connection. (A record whose start moves
        across the cursor while a long answer streams can thus be missed or repeated in that
        answer; the change feed is the exact way to keep a copy.)
        """
        low, high = start // US_PER_MS, (end - 1) // US_PER_MS
        rows = self._read(
            f"SELECT start_ms, call, {columns} FROM records WHERE org = ? AND start_ms >= ? "
            "AND start_ms <= ? AND start >= ? AND start < ? ORDER BY start_ms, call LIMIT ?",
            (org, low, high, start, end, PAGE),
        )
        while rows:
            yield rows
            if len(rows) < PAGE:
                return
            last_ms, last_call = rows[-1][:2]
            rows = self._read(
                f"SELECT start_ms, call, {columns} FROM records WHERE org = ? "
                "AND (start_ms, call) > (?, ?) AND start_ms <= ? AND start >= ? AND start < ? "
                "ORDER BY start_ms, call LIMIT ?",
                (org, last_ms, last_call, high, start, end, PAGE),
            )

    def feed(self, *, org: str, after: int, limit: int) -> Feed:
        """The latest versions of `org`'s calls after change number `after` (see Engine)."""
        db = self._reader
        db.execute("BEGIN")  # one snapshot for the organisation's numbers and its versions
        try:
            numbers = db.execute(
                "SELECT change_seq, purged_seq FROM orgs WHERE name = ?", (org,)
            ).fetchone()
            if numbers is None:
                raise NotFound(f"unknown organisation {org!r}")
            rows = db.execute(
                "SELECT c.seq, c.call, c.version, c.changed, r.json FROM calls c "
                "LEFT JOIN records r "
                "ON r.org = c.org AND r.start_ms = c.record_ms AND r.call = c.call "
                "WHERE c.org = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
                (org, after, limit),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        return Feed([Change(*row) for row in rows], *numbers)

    def latest_change(self, org: str) -> int:
        """The highest change number `org` has given out."""
        row = self._read_one("SELECT change_seq FROM orgs WHERE name = ?", (org,))
        if row is None:
            raise NotFound(f"unknown organisation {org!r}")
        return int(row[0])

    def purge(self, *, org: str, before: int) -> int:
        """Remove whole calls of `org` whose age is before `before`; the number removed."""
        with self._writing() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (call TEXT PRIMARY KEY)")
            db.execute("DELETE FROM doomed")
            db.execute(
                "INSERT INTO doomed SELECT call FROM calls WHERE org = ? AND age < ?", (org, before)
            )
            count = db.execute("SELECT count(*) FROM doomed").fetchone()[0]
            if count:
                db.execute(
                    "UPDATE orgs SET purged_seq = max(purged_seq, (SELECT coalesce(max(seq), 0) "
                    "FROM calls WHERE org = ? AND call IN (SELECT call FROM doomed))) "
                    "WHERE name = ?",
                    (org, org),
                )
                for table in ("events", "records", "calls"):
                    db.execute(
                        f"DELETE FROM {table} WHERE org = ? AND call IN (SELECT call FROM doomed)",
                        (org,),
                    )
        return int(count)

    def prepare_days(self, days: set[int]) -> None:
        """Nothing to prepare: one file holds every day."""

    def drop_days(self, before: int) -> int:
        """Nothing to drop whole: `purge` removes expired calls row by row, exactly."""
        return 0


class _Tx:
    """One write transaction on the writer connection (see WriteTx)."""

    def __init__(self, db: sqlite3.Connection, zones: dict[str, str]) -> None:
        self.db = db
        self._zones = zones

    def insert_events(
        self, org: str, events: Sequence[Event], new_days: Mapping[str, int]
    ) -> list[Event]:
        """Insert the events not stored before (the first of any repeated); the ones inserted.
        (One file has no days to put them in.)"""
        first: dict[tuple[str, str], Event] = {}
        for event in events:
            first.setdefault((event.org, event.id), event)
        ids_by_org: dict[str, list[str]] = {}
        for org, event_id in first:
            ids_by_org.setdefault(org, []).append(event_id)
        for org, ids in ids_by_org.items():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for (event_id,) in self.db.execute(
                    f"SELECT id FROM events WHERE org = ? AND id IN ({marks})", (org, *chunk)
                ):
                    del first[(org, event_id)]
        fresh = list(first.values())
        self.db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.org,
                    e.id,
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
                for e in fresh
            ],
        )
        return fresh

    def lock_calls(self, org: str, calls: Sequence[str]) -> dict[str, KnownCall]:
        """The calls seen before with what is known of their record; the one writer needs no
        locks."""
        known: dict[str, KnownCall] = {}
        for chunk in _chunks(calls):
            marks = ",".join("?" * len(chunk))
            for call, *rest in self.db.execute(
                "SELECT call, record_ms, version, seq, changed FROM calls "
                f"WHERE org = ? AND call IN ({marks})",
                (org, *chunk),
            ):
                known[call] = KnownCall(*rest)
        return known

    def call_events(self, org: str, calls: Sequence[str]) -> dict[str, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        stored: dict[str, list[Event]] = {}
        for chunk in _chunks(calls):
            marks = ",".join("?" * len(chunk))
            for call, event_id, instant, seq, type_, party, number, kind, at in self.db.execute(
                "SELECT call, id, instant, seq, type, party, number, kind, at FROM events "
                f"WHERE org = ? AND call IN ({marks})",
                (org, *chunk),
            ):
                stored.setdefault(call, []).append(
                    Event(org, event_id, call, at, type_, seq, party, number, kind, instant=instant)
                )
        return stored

    def record_json(self, org: str, start_ms: int, call: str) -> bytes | None:
        """The stored rendering of a call's record, or None."""
        row = self.db.execute(
            "SELECT json FROM records WHERE org = ? AND start_ms = ? AND call = ?",
            (org, start_ms, call),
        ).fetchone()
        return row[0] if row else None

    def zone_of(self, org: str) -> str:
        """The organisation's zone name (cached: it never changes); NotFound when unknown."""
        tz = self._zones.get(org)
        if tz is None:
            row = self.db.execute("SELECT tz FROM orgs WHERE name = ?", (org,)).fetchone()
            if row is None:
                raise NotFound(f"unknown organisation {org!r}")
            tz = self._zones[org] = row[0]
        return tz

    def take_change_seqs(self, org: str, count: int) -> int:
        """Reserve `count` change numbers of `org`; the first (the one writer commits in order)."""
        (last,) = self.db.execute(
            "UPDATE orgs SET change_seq = change_seq + ? WHERE name = ? RETURNING change_seq",
            (count, org),
        ).fetchone()
        return int(last) - count + 1

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[tuple[str, int, str]],
        calls: Sequence[CallRow],
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Delete `gone` records, upsert `records` and `calls`, delete `forget` calls."""
        db = self.db
        db.executemany("DELETE FROM records WHERE org = ? AND start_ms = ? AND call = ?", gone)
        db.executemany("DELETE FROM calls WHERE org = ? AND call = ?", forget)
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (org, start_ms, call) DO UPDATE SET start = excluded.start, "
            "change_seq = excluded.change_seq, json = excluded.json, "
            "version = excluded.version, csv = excluded.csv",
            [
                (r.org, r.start_ms, r.call, r.start, r.change_seq, r.json, r.version, r.csv)
                for r in records
            ],
        )
        db.executemany(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org, call) "
            "DO UPDATE SET age = excluded.age, record_ms = excluded.record_ms, "
            "open = excluded.open, last_seen = excluded.last_seen, version = excluded.version, "
            "seq = excluded.seq, changed = excluded.changed",
            [
                (
                    c.org,
                    c.call,
                    c.age,
                    c.record_ms,
                    c.open,
                    c.last_seen,
                    c.version,
                    c.seq,
                    c.changed,
                )
                for c in calls
            ],
        )

    def stale_calls(self, last_seen_before: int) -> list[tuple[str, str, int, str]]:
        """Open calls idle since `last_seen_before`, with the instant and `at` of their latest
        event."""
        stale = []
        for org, call in self.db.execute(
            "SELECT org, call FROM calls WHERE open = 1 AND last_seen <= ?", (last_seen_before,)
        ).fetchall():
            instant, at = self.db.execute(
                "SELECT instant, at FROM events WHERE org = ? AND call = ? "
                "ORDER BY instant DESC LIMIT 1",
                (org, call),
            ).fetchone()
            stale.append((org, call, instant, at))
        return stale


def _run(db: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
    rows: list[Any] = []
    for sql, params in statements:
        rows = db.execute(sql, tuple(params)).fetchall()
    return rows


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, split where SQLite's own tokenizer says one ends."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # not a `;` inside a comment or a string
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
