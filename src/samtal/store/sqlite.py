"""The embedded engine: SQLite in WAL mode, one writer connection and a reader per thread.

Records are stored rendered (compact JSON in the organisation's zone, made once when the call's
record is recomputed) and clustered by (org, start in ms, call): a period query is a few ordered
range scans that hand out ready bytes. What every engine shares is in `_sql`, and the schema in
`_sqlite_schema`; this module keeps SQLite's connections, its bulk writes and its watcher.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson

from samtal.errors import StoreError
from samtal.events import Event
from samtal.filters import Filters
from samtal.store._base import CallKey, CallRow, Gone, KnownCall, RecordRow, Refused
from samtal.store._sql import Hint, SqlEngine, SqlTx
from samtal.store._sqlite_schema import MIGRATIONS
from samtal.wal import write_ahead

#: What SQLite says when its disk is full or failing: a write that cannot be made now.
_DISK_ERRORS = frozenset(
    {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC"}
)
#: Seconds a connection waits for another's lock before "database is locked".
BUSY_SECONDS = 30
#: Bytes a page of a new database (see `_connect`).
PAGE_SIZE = 16_384
#: Bytes of WAL after which a commit copies it into the database (see `_connect`).
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024
#: Seconds between two looks at whether another connection committed (see `watch`).
WATCH_EVERY = 0.1
#: What a statement that moves organisations' change numbers marks them with (`orgs.moved`):
#: above every mark before it. The one writer commits in order, so the watcher, which reads
#: the marks above the last it saw, misses none.
_MOVED = "(SELECT coalesce(max(moved), 0) + 1 FROM orgs)"


def path_of(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL. Not `:memory:`: such
    a database is one connection's alone, and the store reads on connections of its own."""
    if not url.startswith("sqlite:///"):
        raise StoreError(
            f"unsupported database URL {url!r}: use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = url[len("sqlite:///") :]
    if not path:
        raise StoreError(f"database URL {url!r} names no file")
    if "?" in path:  # SQLAlchemy's form of options; here it would name a file `x.db?mode=ro`
        raise StoreError(
            f"database URL {url!r} has options ({path[path.index('?') :]}): samtal takes "
            "none in a SQLite URL; name the file alone"
        )
    if path == ":memory:":
        raise StoreError(
            f"database URL {url!r}: an in-memory database is seen by one connection alone, "
            "and samtal reads and writes on connections of their own; name a file (for a "
            "throwaway store, one in a temporary directory)"
        )
    return path


class SqliteEngine(SqlEngine):
    """The engine on one SQLite file: writes go one at a time through one connection."""

    integrity_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.IntegrityError,)
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    writers = 1  # SQLite takes one writer at a time
    hourly = " INDEXED BY records_hourly"

    def __init__(
        self, url: str, migrations: tuple[str, ...] = MIGRATIONS, *, create: bool = True
    ) -> None:
        super().__init__(migrations)
        path = path_of(url)
        if not create and not Path(path).exists():
            # A mistyped path would otherwise be a new, empty database (and its folders): a
            # command that only reads or changes what is there would report "nothing" and
            # leave it behind.
            raise StoreError(
                f"no database at {str(Path(path).absolute())!r}: check the URL (a relative "
                "path is read from the current folder); `samtal org add` or `samtal import` "
                "makes a new one"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()  # not the writer's: a reader may open inside it
        self._lead: IO[str] | None = None
        try:
            self._writer = self._connect(path)
            # 64 MiB of page cache for the writer (the default is 2 MiB): the B-trees that
            # ingest touches stay in memory as the database grows. Readers keep the default:
            # they scan in order, and their memory stays flat however long the period.
            self._writer.execute("PRAGMA cache_size = -65536")
            if self._migrate() or not self._analyzed():
                self.tune()  # then the server's duty keeps it so, without a lock on each open
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path!r}: {exc}") from exc

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
        )
        # Pages of 16 KiB (SQLite's default is 4 KiB) for a database made now; one made before
        # keeps its own. An import of 1.46M events: 7-11% faster (fewer levels and splits, half
        # the system calls), 2% bigger on disk.
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        write_ahead(db, within=BUSY_SECONDS)
        # The WAL is copied into the database once it holds 64 MiB, whatever the page size
        # (SQLite's default is 4 MiB). Small batches, and batches of many organisations,
        # change the same pages commit after commit (each organisation's latest leaves): at
        # 4 MiB nearly every such commit copied them into the database too, at 64 MiB a
        # checkpoint copies the latest of each once for a dozen commits or more. A live
        # stream's batches of 100 took 0.80x the time (`bench/live.py`), a batch of 1,000
        # organisations' calls about 0.85x (`bench/tenants.py`); an import's batches of 20,000
        # lines, which pass 4 MiB alone, neither gain nor lose. The WAL file stays about that
        # size while the store is open (SQLite removes it when the last connection closes).
        page = db.execute("PRAGMA page_size").fetchone()[0]  # a database made before: its own
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page}")
        # FULL: a commit is on disk when it returns, so a 200 means durably stored.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @property
    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: a connection is never shared between threads."""
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._connect(self._path)
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    # -- the primitives of `_sql` ------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[object], *, binary: bool = False) -> list[Any]:
        """All rows at once: a statement left open would keep its snapshot (and hold back
        checkpoints) until the cursor is collected."""
        return self._reader.execute(sql, tuple(params)).fetchall()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the writer connection, one at a time. A disk that is full
        (or failing) is a StoreError: nothing of the transaction was stored, and it may be
        sent again once there is room (a 503, where it was a 500 with a traceback)."""
        with self._lock:
            db = self._writer
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") not in _DISK_ERRORS:
                    raise
                raise StoreError(
                    f"the database cannot be written ({exc}): nothing of this was stored; "
                    "free room on its disk, then send it again"
                ) from exc

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        db = self._reader
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    _migrating = _writing

    def _apply(self, db: Any, script: str) -> None:
        for statement in _statements(script):
            db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """A write transaction for the record workflow (see WriteTx)."""
        try:
            with self._writing() as db:
                yield _Tx(db)
        except (sqlite3.IntegrityError, sqlite3.DataError, UnicodeEncodeError) as exc:
            raise Refused(str(exc)) from exc

    # -- what is SQLite's own ----------------------------------------------------------------
    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """Poll SQLite's `data_version`, which moves whenever another connection (of this
        process or any other) commits; then `changed(org)` for each organisation whose change
        numbers moved (new versions, or a purge's). `data_version` does not say what changed,
        and waking every waiter at each commit had 1,000 idle webhook subscriptions take a
        whole core while one organisation's batches came in every 100 ms."""
        db = self._connect(self._path)
        try:
            last = db.execute("PRAGMA data_version").fetchone()[0]
            seen = db.execute("SELECT coalesce(max(moved), 0) FROM orgs").fetchone()[0]
            while not stop.wait(WATCH_EVERY):
                version = db.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    moved = db.execute(
                        "SELECT name, moved FROM orgs WHERE moved > ?", (seen,)
                    ).fetchall()
                    for org, mark in moved:
                        changed(org)
                        seen = max(seen, mark)
        finally:
            db.close()

    def lead_duties(self) -> bool:
        """Lead the duties while holding an exclusive lock on `<database>.duties`; the lock
        goes with the process, so another takes over when the leader dies."""
        if self._lead is None:
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

    def purge(self, *, org: str, before: int, at_most: int) -> int:
        """Remove whole calls of `org` whose age is before `before`, at most `at_most`, the
        lowest change numbers first; the number removed."""
        with self._writing() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (call TEXT PRIMARY KEY)")
            db.execute("DELETE FROM doomed")
            db.execute(
                "INSERT INTO doomed SELECT call FROM calls WHERE org = ? AND age < ? "
                "ORDER BY seq LIMIT ?",
                (org, before, at_most),
            )
            count = db.execute("SELECT count(*) FROM doomed").fetchone()[0]
            if count:
                db.execute(
                    "UPDATE orgs SET purged_seq = max(purged_seq, (SELECT coalesce(max(seq), 0) "
                    "FROM calls WHERE org = ? AND call IN (SELECT call FROM doomed))), "
                    f"moved = {_MOVED} WHERE name = ?",
                    (org, org),
                )
                for table in ("events", "records", "calls"):
                    db.execute(
                        f"DELETE FROM {table} WHERE org = ? AND call IN (SELECT call FROM doomed)",
                        (org,),
                    )
                self._renumber(db, org)
        return int(count)

    def _analyzed(self) -> bool:
        """Whether the planner has statistics (`tune` ran on this database)."""
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'", ()))

    def tune(self) -> None:
        """Let SQLite gather what its planner knows of the tables, a bounded look at each index
        (milliseconds, whatever their size): with it, a filter on a response group reads that
        group's index, not the whole period."""
        with self._lock:
            self._writer.execute("PRAGMA analysis_limit = 1000")
            self._writer.execute("ANALYZE")

    def _index_for(self, filters: Filters, low: int, high: int) -> Hint:
        """One exact number (a response group's, a caller's or a callee's): its index, which
        holds that value's records in order. SQLite's planner, with the rough statistics a
        bounded ANALYZE gives, would scan the whole period and filter it (2.3x slower for a
        group with 5% of the calls). A caller's and a callee's index are by day first: the
        period's days are named, so that SQLite seeks the number in each, in order."""
        exact = [
            name
            for name, matches in filters.numbers.items()
            if len(matches) == 1 and matches[0].value is not None and not matches[0].prefix
        ]
        if "receivingNo" in exact:
            return Hint(" INDEXED BY records_by_group")
        for name, index in (("callerNo", "caller"), ("calleeNo", "callee")):
            if name in exact:
                days = range(_day_of(low), _day_of(high) + 1)
                # Within what the SQLite library takes as parameters (999 in some builds).
                limit = self._writer.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 2
                if len(days) > min(MOST_DAYS_NAMED, limit):
                    return Hint()  # the planner's choice, for a period longer than is kept
                return Hint(
                    f" INDEXED BY records_{index}_by_day",
                    f" AND start_ms / {_MS_PER_DAY} IN ({', '.join('?' * len(days))})",
                    tuple(days),
                    f"start_ms / {_MS_PER_DAY}, start_ms, call",
                )
        return Hint()

    def prepare_days(self, days: set[int], *, today: int) -> None:
        """Nothing to prepare: one file holds every day."""

    def drop_days(self, before: int) -> int:
        """Nothing to drop whole: `purge` removes expired calls row by row, exactly."""
        return 0


_MS_PER_DAY = 86_400_000
#: The most days of a period that a query by caller or callee names one by one.
MOST_DAYS_NAMED = 1000


def _day_of(ms: int) -> int:
    """SQLite's `ms / 86400000`: integer division truncates towards zero."""
    day = abs(ms) // _MS_PER_DAY
    return day if ms >= 0 else -day


def _keys(keys: Sequence[CallKey] | Sequence[tuple[str, str]]) -> bytes:
    """Pairs as one JSON parameter that `json_each` turns into rows: a set of keys in one
    statement, whatever their organisations."""
    return orjson.dumps(keys)


class _Tx(SqlTx):
    """One write transaction on the writer connection (see WriteTx). Sets of keys go in as one
    JSON array that `json_each` reads, so that a batch of many organisations costs the same
    few statements as a batch of one."""

    db: sqlite3.Connection

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def lock_calls(self, keys: Sequence[CallKey]) -> dict[CallKey, KnownCall]:
        """The calls seen before with what is known of their record; the one writer needs no
        locks."""
        return {
            (org, call): KnownCall(*rest)
            for org, call, *rest in self.db.execute(
                "SELECT c.org, c.call, c.record_ms, c.version, c.seq, c.changed, c.settled, "
                "c.erased FROM json_each(?) k JOIN calls c "
                "ON c.org = k.value ->> 0 AND c.call = k.value ->> 1",
                (_keys(keys),),
            )
        }

    def insert_events(
        self, events: Sequence[Event], new_days: Mapping[CallKey, int]
    ) -> list[Event]:
        """Insert the events not stored before (the first of any repeated); the ones inserted.
        (One file has no days to put them in.)

        Most events are new: each group of `_rows_per_statement` goes in as one statement,
        and only when that fails on a key stored before (the statement then leaves nothing
        behind) are the group's stored ones looked up and the rest inserted. The look-up
        first for every event cost 6.9 us an event where this costs 5.7. Events sent again
        come in runs (a retried batch, a redelivery): after a group that held some, the next
        is looked up first, until one holds none."""
        first: dict[tuple[str, str], Event] = {}
        for event in events:
            first.setdefault((event.org, event.id), event)
        unique = list(first.values())
        size = _rows_per_statement(self.db, _EVENT_WIDTH)
        whole = len(unique) - len(unique) % size
        many = f"INSERT INTO events VALUES {_values(_EVENT_VALUES, size)}"
        fresh: list[Event] = []
        careful = False
        for at in range(0, whole, size):
            group = unique[at : at + size]
            if not careful:
                try:
                    self.db.execute(many, [value for e in group for value in _event_row(e)])
                except sqlite3.IntegrityError:
                    pass
                else:
                    fresh += group
                    continue
            new = self._insert_new(group)
            fresh += new
            careful = len(new) < len(group)
        return fresh + self._insert_new(unique[whole:])

    def _insert_new(self, events: list[Event]) -> list[Event]:
        """Of these events (no two with one key), insert those not stored before; those."""
        if not events:
            return []
        new = {(event.org, event.id): event for event in events}
        for org, event_id in self.db.execute(
            "SELECT e.org, e.id FROM json_each(?) k JOIN events e "
            "ON e.org = k.value ->> 0 AND e.id = k.value ->> 1",
            (_keys(list(new)),),
        ).fetchall():
            del new[(org, event_id)]
        self.db.executemany(
            f"INSERT INTO events VALUES {_EVENT_VALUES}",
            [_event_row(e) for e in new.values()],
        )
        return list(new.values())

    def call_events(self, keys: Sequence[CallKey]) -> dict[CallKey, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        stored: dict[CallKey, list[Event]] = {}
        for org, call, event_id, instant, seq, type_, party, number, kind, at in self.db.execute(
            "SELECT e.org, e.call, e.id, e.instant, e.seq, e.type, e.party, e.number, e.kind, "
            "e.at FROM json_each(?) k JOIN events e "
            "ON e.org = k.value ->> 0 AND e.call = k.value ->> 1",
            (_keys(keys),),
        ):
            stored.setdefault((org, call), []).append(
                Event(org, event_id, call, at, type_, seq, party, number, kind, instant=instant)
            )
        return stored

    def record_json(self, where: Sequence[Gone]) -> dict[CallKey, tuple[bytes, str | None]]:
        """The stored rendering and outcome of each of these records (those that exist)."""
        return {
            (org, call): (json, outcome)
            for org, call, json, outcome in self.db.execute(
                "SELECT r.org, r.call, r.json, r.outcome FROM json_each(?) k JOIN records r "
                "ON r.org = k.value ->> 0 AND r.start_ms = k.value ->> 1 "
                "AND r.call = k.value ->> 2",
                (orjson.dumps([tuple(g) for g in where]),),
            )
        }

    def erase(self, org: str, calls: Sequence[tuple[str, int, int]], now: int) -> None:
        """Delete the calls' events and mark them erased (see WriteTx)."""
        rows = orjson.dumps(calls)  # one parameter: [[call, version, seq], ...]
        self.db.execute(
            "DELETE FROM events WHERE org = ? AND call IN (SELECT value ->> 0 FROM json_each(?))",
            (org, rows),
        )
        # A statement a call, not one `UPDATE ... FROM json_each`: with `org = ?` a constant,
        # SQLite without statistics of `calls` (a file imported into, not yet tuned) looped
        # over the organisation's calls and read the whole list for each: 16,000 calls of
        # 120,000 held the writer for minutes.
        self.db.executemany(
            "UPDATE calls SET erased = 1, record_ms = NULL, open = 0, settled = 1, "
            "version = ?1, seq = ?2, moved_from = NULL, "
            "changed = CASE WHEN seq = ?2 THEN changed ELSE ?3 END "
            "WHERE org = ?4 AND call = ?5",
            [(version, seq, now, org, call) for call, version, seq in calls],
        )

    def take_change_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve change numbers of each organisation; the first of each (the one writer
        commits in order)."""
        return {
            org: int(last) - counts[org] + 1
            for org, last in self.db.execute(
                f"UPDATE orgs SET change_seq = change_seq + (k.value ->> 1), moved = {_MOVED} "
                "FROM json_each(?) k WHERE orgs.name = k.value ->> 0 "
                "RETURNING orgs.name, orgs.change_seq",
                (orjson.dumps(list(counts.items())),),
            )
        }

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[Gone],
        calls: Sequence[CallRow],
        forget: Sequence[CallKey] = (),
        numbered: Mapping[str, int] | None = None,
    ) -> None:
        """Delete `gone` records, upsert `records` and `calls` (their new versions numbered:
        see WriteTx), delete `forget` calls. The one writer reserves the numbers first."""
        first = self.take_change_seqs(numbered) if numbered else {}
        db = self.db
        db.executemany("DELETE FROM records WHERE org = ? AND start_ms = ? AND call = ?", gone)
        db.executemany("DELETE FROM calls WHERE org = ? AND call = ?", forget)
        # One row a statement here: a hundred records' upserts in one statement cost 12% more
        # a row than one each (measured; their rows carry the renderings).
        db.executemany(
            "INSERT INTO records (org, start_ms, call, start, change_seq, json, version, csv, "
            "outcome, caller_no, receiving_no, callee_no, duration, answered_after) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, {_TEXT_OR_NULL}, ?, {_TEXT_OR_NULL}, "
            f"{_TEXT_OR_NULL}, {_TEXT_OR_NULL}, ?, {_INT_OR_NULL}) "
            "ON CONFLICT (org, start_ms, call) DO UPDATE SET start = excluded.start, "
            "change_seq = excluded.change_seq, json = excluded.json, "
            "version = excluded.version, csv = excluded.csv, outcome = excluded.outcome, "
            "caller_no = excluded.caller_no, receiving_no = excluded.receiving_no, "
            "callee_no = excluded.callee_no, duration = excluded.duration, "
            "answered_after = excluded.answered_after",
            [
                (
                    r.org,
                    r.start_ms,
                    r.call,
                    r.start,
                    r.change_seq if r.change_seq >= 0 else first[r.org] - r.change_seq - 1,
                    bytearray(r.json),
                    r.version,
                    _NULL_TEXT if r.csv is None else bytearray(r.csv),
                    r.outcome,
                    _NULL_TEXT if r.caller_no is None else r.caller_no,
                    _NULL_TEXT if r.receiving_no is None else r.receiving_no,
                    _NULL_TEXT if r.callee_no is None else r.callee_no,
                    r.duration,
                    _NULL_INT if r.answered_after is None else r.answered_after,
                )
                for r in records
            ],
        )
        _insert_rows(
            db,
            "INSERT INTO calls (org, call, age, record_ms, open, last_seen, version, seq, "
            "changed, started, ended, settled) VALUES",
            f"(?, ?, ?, {_INT_OR_NULL}, ?, ?, ?, ?, ?, ?, ?, 0)",
            [
                (
                    c.org,
                    c.call,
                    c.age,
                    _NULL_INT if c.record_ms is None else c.record_ms,
                    1 if c.open else 0,
                    c.last_seen,
                    c.version,
                    c.seq if c.seq >= 0 else first[c.org] - c.seq - 1,
                    c.changed,
                    1 if c.started else 0,
                    1 if c.ended else 0,
                )
                for c in calls
            ],
            "ON CONFLICT (org, call) "
            "DO UPDATE SET age = excluded.age, record_ms = excluded.record_ms, "
            "open = excluded.open, last_seen = excluded.last_seen, version = excluded.version, "
            "moved_from = CASE WHEN excluded.seq = calls.seq THEN calls.moved_from END, "
            "seq = excluded.seq, changed = excluded.changed, started = excluded.started, "
            "ended = excluded.ended, settled = 0",
        )

    def settle(self, last_seen_before: int) -> int:
        """Note the calls that have settled (see WriteTx)."""
        return self.db.execute(
            "UPDATE calls SET settled = 1 WHERE settled = 0 AND ended = 1 "
            "AND record_ms IS NOT NULL AND last_seen <= ?",
            (last_seen_before,),
        ).rowcount

    def records_to_fill(self, limit: int) -> list[tuple[str, str, int]]:
        """Calls whose record has no outcome yet (stored before schema 6)."""
        return self.db.execute(
            "SELECT org, call, start_ms FROM records WHERE outcome IS NULL LIMIT ?", (limit,)
        ).fetchall()

    def fill(self, rows: Sequence[tuple[str, int, str, str, int, int | None]]) -> None:
        """Store outcome and durations beside records stored before them."""
        self.db.executemany(
            "UPDATE records SET outcome = ?, duration = ?, answered_after = ? WHERE org = ? "
            "AND start_ms = ? AND call = ?",
            [(o, d, a, org, ms, call) for org, ms, call, o, d, a in rows],
        )

    def stale_calls(self, last_seen_before: int, limit: int) -> list[tuple[str, str, int, str]]:
        """At most `limit` open calls idle since `last_seen_before`, with the instant and `at`
        of their latest event, in one statement."""
        return self.db.execute(
            "SELECT c.org, c.call, e.instant, e.at FROM calls c JOIN events e "
            "ON e.org = c.org AND e.call = c.call AND e.id = (SELECT id FROM events l "
            "WHERE l.org = c.org AND l.call = c.call ORDER BY l.instant DESC LIMIT 1) "
            "WHERE c.open = 1 AND c.last_seen <= ? LIMIT ?",
            (last_seen_before, limit),
        ).fetchall()


#: Rows that one INSERT statement carries at most (`_rows_per_statement`).
ROWS_PER_STATEMENT = 100

# What a row binds in place of None, and the SQL that makes it NULL again. Python's sqlite3
# binds an int (not a bool), a float, a str or a bytearray as it is. Any other value (None, a
# bool, bytes) it first offers to its adapters, then asks for `__adapt__` and `__conform__`,
# clearing two AttributeErrors: about 0.8 us a value. (Adapters registered for None and bools,
# as samtal had, are found in one look-up but still cost a call: 0.13 us a None more than a
# str, where an int costs less than a str.) So the rows of ingest's inserts carry none of
# them: a nullable text or BLOB column takes the integer 0 for None (no text or BLOB equals
# it), a nullable integer column takes '' (no integer equals it), BLOBs go as bytearrays and
# bools as ints. What is stored is the same; the store alone took 0.96x the time.
_NULL_TEXT = 0
_TEXT_OR_NULL = "NULLIF(?, 0)"
_NULL_INT = ""
_INT_OR_NULL = "NULLIF(?, '')"
#: An event's row (`_event_row`), in the order of the table's columns.
_EVENT_VALUES = (
    f"(?, ?, ?, ?, {_INT_OR_NULL}, ?, {_TEXT_OR_NULL}, {_TEXT_OR_NULL}, {_TEXT_OR_NULL}, "
    f"{_TEXT_OR_NULL}, {_TEXT_OR_NULL}, ?)"
)
_EVENT_WIDTH = _EVENT_VALUES.count("?")


def _event_row(e: Event) -> tuple[object, ...]:
    return (
        e.org,
        e.id,
        e.call,
        e.instant,
        _NULL_INT if e.seq is None else e.seq,
        e.type,
        _NULL_TEXT if e.party is None else e.party,
        _NULL_TEXT if e.number is None else e.number,
        _NULL_TEXT if e.kind is None else e.kind,
        _NULL_TEXT if e.dialed is None else e.dialed,
        _NULL_TEXT if e.target is None else e.target,
        e.at,
    )


def _rows_per_statement(db: sqlite3.Connection, width: int) -> int:
    """How many rows of `width` values one INSERT carries: `executemany` steps a statement once
    a row, and each step's own cost (1.1 us of the 5.9 an event's row costs) is paid once for
    the hundred. Fewer where the SQLite library was built to take fewer parameters."""
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, limit // width))


def _values(row: str, rows: int) -> str:
    """`row, row, ...`: `rows` times `row` (its values, as `(?, ?, ...)`)."""
    return ", ".join([row] * rows)


def _insert_rows(
    db: sqlite3.Connection,
    head: str,
    values: str,
    rows: Sequence[tuple[object, ...]],
    tail: str = "",
) -> None:
    """`head` (an INSERT up to its VALUES) with `values` (a row's, `(?, ...)`) for each of
    `rows`, then `tail` (its ON CONFLICT), `_rows_per_statement` rows a statement. The rows left
    over go one a statement, so that only two statements are prepared (sqlite3 keeps the last
    128 a connection used)."""
    if not rows:
        return
    size = _rows_per_statement(db, values.count("?"))
    whole = len(rows) - len(rows) % size
    if whole:
        many = f"{head} {_values(values, size)} {tail}"
        for at in range(0, whole, size):
            db.execute(many, [value for row in rows[at : at + size] for value in row])
    db.executemany(f"{head} {values} {tail}", rows[whole:])


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, split where SQLite's own tokenizer says one ends."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # not a `;` inside a comment or a string
            if pending.strip(" \n;"):
                yield pending
            pending = ""
