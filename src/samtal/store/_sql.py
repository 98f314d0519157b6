"""The SQL every engine shares, said once: the schema's version and the loop that upgrades it,
organisations, tokens, a period's records in pages, the change feed, operator statements.

Statements are written with `?` placeholders and turned into the engine's own once
(`placeholder`); what differs between engines is a few class attributes and the primitives
below: how a read, a snapshot, a write transaction and a migration get their connection. Each
engine module keeps only what is its own (types, bulk paths, partitions, locks, the watcher).
"""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple, Protocol

from samtal.errors import Conflict, NotFound, StoreError
from samtal.events import Event
from samtal.filters import Filters, Match
from samtal.stats.figures import BUCKETS
from samtal.store._base import Change, FeedRead, Org, Token, WriteTx
from samtal.times import US_PER_MS, US_PER_SECOND
from samtal.tokens import TokenKind

#: Before any instant samtal stores: 0001-01-01T00:00Z, in microseconds since the epoch.
_EARLIEST = -62_135_596_800 * US_PER_SECOND
_MS_PER_HOUR = 3_600_000
_US_PER_HOUR = _MS_PER_HOUR * US_PER_MS
#: The UTC hour of a record's start, as the engines' hourly index (`hourly`) names it.
_HOUR = f"start_ms / {_MS_PER_HOUR}"
#: Records per page of a period's scan: each page is one short query (about 0.5 MB of JSON).
PAGE = 2000
_TOKEN_COLUMNS = "id, kind, org, created, last_used, revoked, scopes, groups, pseudonymize"
_ORG_COLUMNS = "name, tz, created, retention_days, secret"


#: A version of the feed as `Change` takes it, from `calls c` and `records r`.
FEED_COLUMNS = "c.seq, c.call, c.version, c.changed, r.json, c.moved_from, r.outcome, c.erased"


class Hint(NamedTuple):
    """How an engine reads the records that match some filters through one of its indexes."""

    table: str = ""  # after `records`: the index to use (`INDEXED BY ...`)
    where: str = ""  # more conditions (`?` placeholders) that let that index seek
    params: tuple[object, ...] = ()  # their parameters
    order: str = ""  # an ORDER BY that gives (start_ms, call) order in that index ("": that)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...

    @property
    def description(self) -> Any: ...


class Connection(Protocol):
    """What the shared SQL needs of a connection: sqlite3's and psycopg's both have it."""

    def execute(self, sql: Any, params: Any = ..., /) -> Cursor: ...


class SqlTx:
    """What every engine's write transaction (see WriteTx) says alike, in its placeholders."""

    #: The engine's parameter placeholder, for `?` in the shared statements.
    placeholder: ClassVar[str] = "?"
    db: Connection

    def note_erasure(self, org: str, at: int, by: str, selector: str, calls: int) -> int:
        """Keep an erasure in the audit trail (see WriteTx); its id."""
        row = self.db.execute(
            _swap(
                "INSERT INTO erasures (org, at, by, selector, calls) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                self.placeholder,
            ),
            (org, at, by, selector, calls),
        ).fetchone()
        assert row is not None
        return int(row[0])


class SqlEngine(ABC):
    """A database samtal can run on: the shared SQL over an engine's primitives."""

    #: The engine's parameter placeholder, for `?` in the shared statements.
    placeholder: ClassVar[str] = "?"
    #: How a call's row (`c`) finds its record's row (`r`).
    record_join: ClassVar[str] = "r.org = c.org AND r.start_ms = c.record_ms AND r.call = c.call"
    #: The driver's exceptions for a broken constraint.
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = ()
    #: The driver's exceptions for any failed statement.
    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()
    #: Write transactions the engine takes at once: one on SQLite, several on PostgreSQL.
    writers: int = 1
    #: Calls a purge removes in one transaction at most (`Store.purge`). SQLite's one writer
    #: took 1.75 s for 120,000 calls, every organisation's batches waiting; 10,000 is about
    #: 0.15 s, and the batches that came meanwhile are stored between the shares.
    purge_share: ClassVar[int] = 10_000
    #: The calls that hold back an organisation's completeness watermark, in the words of the
    #: partial index that finds them (query.md, "Completeness").
    unsettled: ClassVar[str] = "started = 1 AND settled = 0"
    #: A hint after `records` naming an index of an organisation's records by the UTC hour of
    #: their start (`start_ms / 3600000`), then response group, holding every column the
    #: tallies sum: the figures of whole hours, with no filter, are then summed as the index
    #: is read, with no sort. None: the engine groups well without it.
    hourly: ClassVar[str | None] = None
    #: The schema version from which records keep their outcome (query.md).
    outcomes_from: ClassVar[int] = 6
    #: Whether calls are kept in partitions by day, which `prepare_days` makes before a write:
    #: without them, ingest does not work out the days a batch may take.
    partitioned: ClassVar[bool] = False

    def __init__(self, migrations: tuple[str, ...]) -> None:
        self._migrations = migrations

    # -- the primitives each engine provides ---------------------------------------------------
    @abstractmethod
    def _rows(self, sql: str, params: Sequence[object], *, binary: bool = False) -> list[Any]:
        """The rows of one read statement in its own snapshot; nothing is held once it
        returns. `binary`: rendered records come as bytes, as they are."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Connection]:
        """A write transaction: committed durably when the block ends, rolled back when it
        raises; Contention when it lost a race."""

    @abstractmethod
    def _snapshot(self) -> AbstractContextManager[Connection]:
        """A read-only transaction: several statements seeing one snapshot."""

    @abstractmethod
    def _migrating(self) -> AbstractContextManager[Connection]:
        """The one transaction in which the schema is upgraded, taken by one process at a
        time."""

    @abstractmethod
    def _apply(self, db: Connection, script: str) -> None:
        """Run one migration script inside `_migrating`'s transaction."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[WriteTx]:
        """A write transaction for the record workflow (see WriteTx); not nestable."""

    @abstractmethod
    def purge(self, *, org: str, before: int, at_most: int) -> int:
        """Remove whole calls of `org` whose age is before `before`, at most `at_most` of them,
        those of the lowest change numbers first (so that a call that stays is renumbered by
        one share at most), remembering the highest change number removed as the
        organisation's purged one; the number removed."""

    @abstractmethod
    def prepare_days(self, days: set[int], *, today: int) -> None:
        """Make ready to hold calls of these days (an engine with partitions makes them);
        `today` is the server's date, as days since 1970-01-01."""

    @abstractmethod
    def drop_days(self, before: int) -> int:
        """Remove the calls of every organisation whose day is before `before`, whole days at
        a time where the engine can; the number of days dropped."""

    @abstractmethod
    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """Until `stop` is set, call `changed(org)` soon (well within a second) after any
        process commits new versions of `org`'s records; `changed(None)` when the engine cannot
        tell which organisation (or may have missed some). Blocks: run it on a thread."""

    @abstractmethod
    def lead_duties(self) -> bool:
        """Whether this process runs the background duties of the installation: the first to
        ask takes the lead and keeps it while it lives; the others get False until it is gone."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine's connections (and the lead of the duties)."""

    def _period_hint(self, start: int, end: int) -> tuple[str, tuple[object, ...]]:
        """More conditions on `records` that find a period's rows faster (partitions)."""
        return "", ()

    def tune(self) -> None:  # noqa: B027 (most engines need nothing here)
        """Keep the planner's statistics fresh where the engine does not do it itself."""

    def _index_for(self, filters: Filters, low: int, high: int) -> Hint:
        """How to read the records that match `filters` and start in [low, high] ms: the index
        to use (none: the planner chooses), with what that index needs (see Hint)."""
        return Hint()

    # -- the shared SQL ------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        """A shared statement in the engine's placeholders."""
        return _swap(text, self.placeholder)

    def _read(self, sql: str, params: Sequence[object] = (), *, binary: bool = False) -> list[Any]:
        return self._rows(self.sql(sql), params, binary=binary)

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def _run(self, db: Connection, sql: str, params: Sequence[object] = ()) -> Cursor:
        return db.execute(self.sql(sql), tuple(params))

    def _migrate(self) -> int:
        """Bring the schema to the newest version this samtal knows, in one transaction; how
        many versions it moved. A schema already current costs one read and takes no lock, so
        that opening a store never queues behind other processes' writes."""
        if self._current():
            return 0
        with self._migrating() as db:
            self._run(
                db, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = self._run(db, "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > len(self._migrations):
                raise StoreError(
                    f"the database has schema version {version}, newer than this samtal knows "
                    f"({len(self._migrations)}): upgrade samtal"
                )
            for number, script in enumerate(self._migrations[version:], version + 1):
                self._apply(db, script)
                self._run(
                    db,
                    "INSERT INTO meta VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
            return len(self._migrations) - version

    def _made(self) -> bool:
        """Whether the database holds a samtal schema of any version."""
        try:
            return self._one("SELECT value FROM meta WHERE key = 'schema_version'") is not None
        except self.driver_errors:  # no `meta` table
            return False

    def _current(self) -> bool:
        """Whether the schema is this samtal's newest (False too when there is none yet)."""
        try:
            row = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
        except self.driver_errors:  # no `meta` table: a new database
            return False
        return row is not None and int(row[0]) == len(self._migrations)

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._one("SELECT value FROM meta WHERE key = 'schema_version'")[0])

    def meta(self, key: str) -> str | None:
        """A value the database keeps about itself (`meta`), None when it has none."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Keep `value` under `key` in `meta`."""
        with self._writing() as db:
            self._run(
                db,
                "INSERT INTO meta VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def operator_sql(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool
    ) -> list[Any]:
        """Run portable statements (`?` placeholders) in one transaction, read-only unless
        `write`; the rows of the last (see `_webhooks`)."""
        with self._writing() if write else self._snapshot() as db:
            rows: list[Any] = []
            for sql, params in statements:
                cursor = self._run(db, sql, params)
                rows = cursor.fetchall() if cursor.description is not None else []
            return rows

    # -- organisations and tokens ----------------------------------------------------------------
    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation, with a secret of its own; Conflict when it exists."""
        secret = secrets.token_bytes(32)
        try:
            with self._writing() as db:
                self._run(
                    db,
                    "INSERT INTO orgs (name, tz, created, secret) VALUES (?, ?, ?, ?)",
                    (name, tz, now, secret),
                )
        except self.integrity_errors:
            raise Conflict(f"organisation {name!r} exists already") from None
        return Org(name, tz, now, None, secret)

    def set_retention(self, name: str, days: int | None) -> Org:
        """Give an organisation its own retention (None: the installation's); NotFound."""
        with self._writing() as db:
            row = self._run(
                db,
                f"UPDATE orgs SET retention_days = ? WHERE name = ? RETURNING {_ORG_COLUMNS}",
                (days, name),
            ).fetchone()
        if row is None:
            raise NotFound(f"unknown organisation {name!r}")
        return _org(row)

    def add_orgs(self, rows: Sequence[tuple[str, str]], *, now: int) -> list[str]:
        """Create the organisations (name, zone) that do not exist, in one transaction; the
        names made (the others exist already and are left as they are)."""
        made: list[str] = []
        with self._writing() as db:
            for start in range(0, len(rows), 300):
                chunk = rows[start : start + 300]
                values = _values(len(chunk), 4)
                params = [
                    value
                    for name, tz in chunk
                    for value in (name, tz, now, secrets.token_bytes(32))
                ]
                made += [
                    name
                    for (name,) in self._run(
                        db,
                        f"INSERT INTO orgs (name, tz, created, secret) VALUES {values} "
                        "ON CONFLICT (name) DO NOTHING RETURNING name",
                        params,
                    ).fetchall()
                ]
        return made

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        return [_org(row) for row in self._read(f"SELECT {_ORG_COLUMNS} FROM orgs ORDER BY name")]

    def orgs_named(self, names: Sequence[str]) -> list[Org]:
        """The organisations of these names that exist."""
        found: list[Org] = []
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += [
                _org(row)
                for row in self._read(
                    f"SELECT {_ORG_COLUMNS} FROM orgs WHERE name IN ({marks})", chunk
                )
            ]
        return found

    def expired(self, cutoffs: Mapping[str, int]) -> list[str]:
        """The organisations that have a call whose age is before their cutoff in `cutoffs`,
        a few hundred to a statement, in one read. Each one's first age is one probe of
        calls_by_age whatever the planner guesses of how calls spread over organisations. (A
        round of duties used to try a purge of every organisation, a transaction each: 10,000
        organisations took 7-15 s on PostgreSQL when nothing had expired.)"""
        pairs = list(cutoffs.items())
        found: list[str] = []
        for start in range(0, len(pairs), 500):
            chunk = pairs[start : start + 500]
            found += [
                name
                for (name,) in self._read(
                    f"SELECT k.column1 FROM (VALUES {_values(len(chunk), 2)}) AS k "
                    "WHERE (SELECT min(c.age) FROM calls c WHERE c.org = k.column1) < k.column2",
                    [value for pair in chunk for value in pair],
                )
            ]
        return found

    def add_tokens(
        self,
        kind: TokenKind,
        *,
        owners: Sequence[tuple[str | None, bytes]],
        now: int,
        scopes: tuple[str, ...] = ("records", "stats"),
        groups: tuple[str, ...] | None = None,
        pseudonymize: bool = False,
    ) -> list[Token]:
        """Store tokens by the hashes of their secrets, (organisation, hash) each, in one
        transaction, in that order; NotFound naming the unknown organisations, and none
        stored."""
        with self._writing() as db:
            named = sorted({org for org, _ in owners if org is not None})
            known: set[str] = set()
            for first in range(0, len(named), 500):
                chunk = named[first : first + 500]
                marks = ",".join("?" * len(chunk))
                known.update(
                    name
                    for (name,) in self._run(
                        db, f"SELECT name FROM orgs WHERE name IN ({marks})", chunk
                    ).fetchall()
                )
            unknown = [name for name in named if name not in known]
            if unknown:
                shown = ", ".join(repr(name) for name in unknown[:5])
                more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
                raise NotFound(f"unknown organisation {shown}{more}: add it with `samtal org add`")
            scope_text = ",".join(scopes)
            group_text = None if groups is None else ",".join(groups)
            # 300 rows a statement (one a round trip took 3.6 s for 10,000 on PostgreSQL),
            # each paired with its owner by its hash, whatever order the rows come back in.
            made: dict[bytes, Token] = {}
            for first in range(0, len(owners), 300):
                rows = owners[first : first + 300]
                values = _values(len(rows), 7)
                params = [
                    value
                    for org, hash in rows
                    for value in (kind, org, hash, now, scope_text, group_text, pseudonymize)
                ]
                for hash, *row in self._run(
                    db,
                    "INSERT INTO tokens (kind, org, hash, created, scopes, groups, pseudonymize) "
                    f"VALUES {values} RETURNING hash, {_TOKEN_COLUMNS}",
                    params,
                ).fetchall():
                    made[bytes(hash)] = _token(row)
            return [made[hash] for _, hash in owners]

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        return [
            _token(row) for row in self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY id")
        ]

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token (again: no change); NotFound when there is none with that id."""
        with self._writing() as db:
            row = self._run(
                db,
                "UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ? "
                f"RETURNING {_TOKEN_COLUMNS}",
                (now, token_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no token with id {token_id}: `samtal token list` shows them")
        return _token(row)

    def tokens_by_hash(self, hashes: Sequence[bytes]) -> dict[bytes, Token]:
        """The tokens with these hashes (those that exist), by hash, in one statement."""
        rows = self._read(
            f"SELECT hash, {_TOKEN_COLUMNS} FROM tokens "
            f"WHERE hash IN ({', '.join('?' * len(hashes))})",
            list(hashes),
        )
        return {bytes(row[0]): _token(row[1:]) for row in rows}

    def live_token_hashes(self) -> frozenset[bytes]:
        """The hash of every token not revoked."""
        return frozenset(
            bytes(row[0]) for row in self._read("SELECT hash FROM tokens WHERE revoked IS NULL")
        )

    def touch_tokens(self, used: Mapping[int, int]) -> None:
        """Note when each token of `used` (id: when) was last used, in one transaction, a few
        hundred to a statement. A token's `last_used` only moves forward: processes that note
        uses at once may write them out of order."""
        pairs = sorted(used.items())  # every writer takes the rows' locks in one order
        with self._writing() as db:
            for start in range(0, len(pairs), 500):
                chunk = pairs[start : start + 500]
                self._run(
                    db,
                    "UPDATE tokens SET last_used = u.column2 "
                    f"FROM (VALUES {', '.join([_USED_ROW] * len(chunk))}) AS u "
                    "WHERE tokens.id = u.column1 "
                    "AND (tokens.last_used IS NULL OR tokens.last_used < u.column2)",
                    [value for pair in chunk for value in pair],
                )

    # -- call data -------------------------------------------------------------------------------
    def _scope(
        self, start: int, end: int, filters: Filters | None = None
    ) -> tuple[str, int, int, str, tuple[object, ...], str]:
        """What every read of a period's records names besides `org = ?`: the table (with an
        index hint for the filters), the bounds of `start_ms` (its clustering column), the
        conditions after `start < ?` with their parameters (days, filters), and the ORDER BY
        that gives the rows in (start_ms, call) order."""
        hint, hinted = self._period_hint(start, end)
        table, low, high = "records", start // US_PER_MS, (end - 1) // US_PER_MS
        order = "start_ms, call"
        if filters:
            where, matching = _filter_sql(filters)
            index = self._index_for(filters, low, high)
            hint += where + index.where
            hinted = (*hinted, *matching, *index.params)
            table += index.table
            order = index.order or order
        return table, low, high, hint, hinted, order

    def pages(
        self, columns: str, org: str, start: int, end: int, filters: Filters | None = None
    ) -> Iterator[list[Any]]:
        """Pages of (start_ms, call, *columns) of the records of `org` whose start is in
        [start, end) and that match `filters` (query.md), in order. The filters are conditions
        on the columns kept beside each record: the rows that do not match are never read.

        Each page is its own short query, continuing after the last (start_ms, call) seen, so
        that no read transaction stays open between pages: a client that stops reading holds
        no snapshot, blocks no checkpoint and ties up no connection. (A record whose start moves
        across the cursor while a long answer streams can thus be missed or repeated in that
        answer; the change feed is the exact way to keep a copy.)
        """
        table, low, high, hint, hinted, order = self._scope(start, end, filters)
        rows = self._read(
            f"SELECT start_ms, call, {columns} FROM {table} WHERE org = ? AND start_ms >= ? "
            f"AND start_ms <= ? AND start >= ? AND start < ?{hint} ORDER BY {order} LIMIT ?",
            (org, low, high, start, end, *hinted, PAGE),
            binary=True,
        )
        while rows:
            yield rows
            if len(rows) < PAGE:
                return
            last_ms, last_call = rows[-1][:2]
            rows = self._read(
                f"SELECT start_ms, call, {columns} FROM {table} WHERE org = ? "
                "AND (start_ms, call) > (?, ?) AND start_ms <= ? AND start >= ? AND start < ?"
                f"{hint} ORDER BY {order} LIMIT ?",
                (org, last_ms, last_call, high, start, end, *hinted, PAGE),
                binary=True,
            )

    def calls_with_number(
        self, org: str, number: str, period: tuple[int, int] | None = None
    ) -> list[str]:
        """The calls of `org` in which `number` appears in any event (`number`, `dialed` or
        `target`), only those that started in [start, end) when a period is given."""
        params: tuple[object, ...] = (org, number, number, number)
        started = ""
        if period is not None:
            started = (
                " AND e.call IN (SELECT call FROM calls WHERE org = ? AND age >= ? AND age < ?)"
            )
            params += (org, *period)
        rows = self._read(
            "SELECT DISTINCT e.call FROM events e WHERE e.org = ? "
            f"AND (e.number = ? OR e.dialed = ? OR e.target = ?){started}",
            params,
        )
        return [call for (call,) in rows]

    def erasures(self, org: str) -> list[tuple[int, int, str, str, int]]:
        """`org`'s erasures, newest first: (id, at, by, selector, calls)."""
        return self._read(
            "SELECT id, at, by, selector, calls FROM erasures WHERE org = ? ORDER BY id DESC",
            (org,),
        )

    def person_numbers(self, org: str, start: int, end: int) -> list[str]:
        """The numbers of people (`callerNo`, `calleeNo`) among the records of `org` whose
        start is in [start, end), each once."""
        _, low, high, hint, hinted, _ = self._scope(start, end)
        period = f"start_ms >= ? AND start_ms <= ? AND start >= ? AND start < ?{hint}"
        params = (org, low, high, start, end, *hinted)
        return [
            number
            for (number,) in self._read(
                f"SELECT caller_no FROM records WHERE org = ? AND {period} "
                "AND caller_no IS NOT NULL UNION "
                f"SELECT callee_no FROM records WHERE org = ? AND {period} "
                "AND callee_no IS NOT NULL",
                (*params, *params),
            )
        ]

    def tallies(
        self,
        org: str,
        start: int,
        end: int,
        filters: Filters | None,
        *,
        granule: int,
        threshold: int,
        short: int,
    ) -> list[Any]:
        """The sums of stats.md over the records of `org` whose start is in [start, end) and
        that match `filters`, per granule of their start and response group, in one query
        (the rows of stats.figures.Tally, its sums as columns)."""
        table, low, high, hint, hinted, _ = self._scope(start, end, filters)
        sums = _sums_parameters(threshold, short)
        if self.hourly and granule == _US_PER_HOUR and start >= 0 and not filters:
            # Whole hours of an organisation's records, with no filter: the engine's index
            # that keeps them in (hour, group) order, summed as it is read, with no sort.
            return self._read(
                f"SELECT {_HOUR} * {_US_PER_HOUR}, receiving_no, {_SUMS} FROM records"
                f"{self.hourly} WHERE org = ? AND {_HOUR} >= ? AND {_HOUR} <= ? AND start >= ? "
                f"AND start < ?{hint} GROUP BY {_HOUR}, receiving_no",
                (*sums, org, low // _MS_PER_HOUR, high // _MS_PER_HOUR, start, end, *hinted),
            )
        lift = -(_EARLIEST // granule) * granule
        return self._read(
            # The granule's start: floor division of an instant made positive by a multiple
            # of the granule (`/` on integers truncates towards zero in both engines).
            f"SELECT (start + ?) / ? * ? - ?, receiving_no, {_SUMS} FROM {table} WHERE org = ? "
            f"AND start_ms >= ? AND start_ms <= ? AND start >= ? AND start < ?{hint} "
            "GROUP BY 1, 2",
            (lift, granule, granule, lift, *sums, org, low, high, start, end, *hinted),
        )

    def feeds(self, wants: Sequence[tuple[str, int, int]]) -> list[FeedRead | None]:
        """For each (organisation, cursor, limit) of `wants`: the calls of the organisation
        whose latest version has a change number above the cursor, by change number, at most
        `limit`, with its latest and purged change numbers (None for an organisation that does
        not exist); all from one snapshot, one transaction for many, where each alone took its
        own (on PostgreSQL four round trips beside its two statements)."""
        reads: list[FeedRead | None] = []
        with self._snapshot() as db:
            for org, after, limit in wants:
                numbers = self._run(
                    db, "SELECT change_seq, purged_seq FROM orgs WHERE name = ?", (org,)
                ).fetchone()
                if numbers is None:
                    reads.append(None)
                    continue
                rows = self._run(db, self._feed_sql, (org, after, limit)).fetchall()
                reads.append(FeedRead([Change(*row) for row in rows], *numbers))
        return reads

    @property
    def _feed_sql(self) -> str:
        return (
            f"SELECT {FEED_COLUMNS} FROM calls c LEFT JOIN records r ON {self.record_join} "
            "WHERE c.org = ? AND c.seq > ? ORDER BY c.seq LIMIT ?"
        )

    def _renumber(self, db: Connection, org: str) -> int:
        """After a purge of `org`, in its transaction: give every call that stays with a `seq`
        below the highest purged one a new `seq`, in the same order, the same version (changes.md,
        version 3 correction), so that a walk of the feed from 0 never meets a cursor lost to
        retention. The number renumbered."""
        purged = self._run(db, "SELECT purged_seq FROM orgs WHERE name = ?", (org,)).fetchone()[0]
        stay = self._run(
            db, "SELECT count(*) FROM calls WHERE org = ? AND seq > 0 AND seq < ?", (org, purged)
        ).fetchone()[0]
        if not stay:
            return 0
        last = self._run(
            db,
            "UPDATE orgs SET change_seq = change_seq + ? WHERE name = ? RETURNING change_seq",
            (stay, org),
        ).fetchone()[0]
        first = int(last) - int(stay) + 1
        self._run(
            db,
            "WITH stay AS (SELECT call, row_number() OVER (ORDER BY seq) AS n FROM calls "
            "WHERE org = ? AND seq > 0 AND seq < ?) "
            "UPDATE calls SET moved_from = coalesce(moved_from, seq), seq = ? + stay.n - 1 "
            "FROM stay WHERE calls.org = ? AND calls.call = stay.call",
            (org, purged, first, org),
        )
        self._run(
            db,
            "UPDATE records AS r SET change_seq = c.seq FROM calls AS c "
            f"WHERE r.org = ? AND c.org = ? AND c.seq >= ? AND {self.record_join}",
            (org, org, first),
        )
        return int(stay)

    def _call_events_where(self, org: str, call: str) -> tuple[str, tuple[object, ...]]:
        """The condition on `events`, beside `org = ?`, that finds one call's events."""
        return "call = ?", (call,)

    def one_call(self, org: str, call: str) -> tuple[tuple[Any, ...], list[Event]] | None:
        """`org`'s call `call`: its record (json, version, seq, outcome) and its events, from
        one snapshot; None when it has no record."""
        where, params = self._call_events_where(org, call)
        with self._snapshot() as db:
            row = self._run(
                db,
                "SELECT r.json, c.version, c.seq, r.outcome FROM calls c "
                f"JOIN records r ON {self.record_join} WHERE c.org = ? AND c.call = ?",
                (org, call),
            ).fetchone()
            if row is None:
                return None
            rows = self._run(
                db,
                "SELECT id, instant, seq, type, party, number, kind, dialed, target, at "
                f"FROM events WHERE org = ? AND {where}",
                (org, *params),
            ).fetchall()
        events = [
            Event(org, event_id, call, at, type_, seq, party, number, kind, dialed, target, instant)
            for event_id, instant, seq, type_, party, number, kind, dialed, target, at in rows
        ]
        return tuple(row), events

    def earliest_unsettled(self, orgs: Sequence[str]) -> list[int | None]:
        """For each of `orgs`, the earliest start among its calls that started and have not
        settled (None: none), from one snapshot: one lookup in a partial index each, whatever
        the number of calls."""
        found: list[int | None] = []
        with self._snapshot() as db:
            for org in orgs:
                row = self._run(
                    db, f"SELECT min(age) FROM calls WHERE org = ? AND {self.unsettled}", (org,)
                ).fetchone()
                found.append(None if row is None or row[0] is None else int(row[0]))
        return found

    def latest_change(self, org: str) -> int:
        """The highest change number `org` has given out (0: none; NotFound: no such org)."""
        row = self._one("SELECT change_seq FROM orgs WHERE name = ?", (org,))
        if row is None:
            raise NotFound(f"unknown organisation {org!r}")
        return int(row[0])


#: The column kept beside each record for each number field of query.md.
_NUMBER_COLUMNS = {"callerNo": "caller_no", "receivingNo": "receiving_no", "calleeNo": "callee_no"}


def _org(row: Sequence[Any]) -> Org:
    name, tz, created, retention, secret = row
    return Org(name, tz, created, retention, bytes(secret or b""))


#: A row of `touch_tokens`' VALUES: typed, so that PostgreSQL does not guess from the first.
_USED_ROW = "(CAST(? AS BIGINT), CAST(? AS BIGINT))"


def _values(rows: int, width: int) -> str:
    """The placeholders of a VALUES list: `rows` rows of `width` values each."""
    row = "(" + ", ".join(["?"] * width) + ")"
    return ", ".join([row] * rows)


def _token(row: Sequence[Any]) -> Token:
    token_id, kind, org, created, last_used, revoked, scopes, groups, pseudonymize = row
    # Scopes are a read token's: an ingest token made before them holds the column's default,
    # `records,stats`, which it never had (it names no organisation to read).
    return Token(
        token_id, kind, org, created, last_used, revoked,
        tuple(scopes.split(",")) if scopes and kind == "read" else (),
        None if groups is None else tuple(groups.split(",")),
        bool(pseudonymize),
    )  # fmt: skip


def _counted(column: str, bucket: int, *, also: str = "") -> str:
    """The count of rows whose `column` (microseconds) lies in wait bucket `bucket` of
    stats.md (the first from below zero, the last without end), and that meet `also`."""
    conditions = [also] if also else []
    if bucket > 0:
        conditions.append(f"{column} >= {BUCKETS[bucket] * US_PER_SECOND}")
    if bucket < len(BUCKETS) - 1:
        conditions.append(f"{column} < {BUCKETS[bucket + 1] * US_PER_SECOND}")
    if not also:
        conditions.append(f"{column} IS NOT NULL")
    return f"COUNT(*) FILTER (WHERE {' AND '.join(conditions)})"


_SHORT = "answered_after IS NULL AND duration < ?"
_ABANDONED = "answered_after IS NULL AND duration >= ?"
#: A tally's columns after its granule and group (stats.figures.Tally: its records, their
#: talk, then its sums in the order of stats.figures.SUMS), with parameters for the
#: short-abandon threshold twice, the service level threshold, and the short-abandon threshold
#: again, once for the abandoned waits and once per wait bucket (`_sums_parameters`).
_SUMS = (
    "COUNT(*), CAST(COALESCE(SUM(duration - answered_after), 0) AS BIGINT), "
    f"COUNT(*) - COUNT(*) FILTER (WHERE {_SHORT}), "
    "COUNT(*) FILTER (WHERE answered_after IS NOT NULL), "
    f"COUNT(*) FILTER (WHERE {_SHORT}), "
    "COUNT(*) FILTER (WHERE answered_after <= ?), "
    "CAST(COALESCE(SUM(answered_after), 0) AS BIGINT), "
    f"CAST(COALESCE(SUM(duration) FILTER (WHERE {_ABANDONED}), 0) AS BIGINT), "
    + ", ".join(_counted("answered_after", bucket) for bucket in range(len(BUCKETS)))
    + ", "
    + ", ".join(_counted("duration", bucket, also=_ABANDONED) for bucket in range(len(BUCKETS)))
)


def _sums_parameters(threshold: int, short: int) -> tuple[int, ...]:
    """The parameters of `_SUMS`."""
    return (short, short, threshold, short, *[short] * len(BUCKETS))


def _filter_sql(filters: Filters) -> tuple[str, list[object]]:
    """Conditions on `records` (`?` placeholders) that hold where `filters` do, each ANDed."""
    parts: list[str] = []
    params: list[object] = []
    # Each group holds where any of its (field, values) does; `number` is any of the three.
    groups = [
        [(field, matches) for field in (_NUMBER_COLUMNS if name == "number" else (name,))]
        for name, matches in filters.numbers.items()
    ]
    if filters.either:
        groups.append(list(filters.either))
    for group in groups:
        either = []
        for name, matches in group:
            for match in matches:
                condition, values = _match_sql(_NUMBER_COLUMNS[name], match)
                either.append(condition)
                params += values
        # No value at all (a pseudonym that names no number): nothing matches.
        parts.append("(" + " OR ".join(either) + ")" if either else "1 = 0")
    if filters.outcomes:
        parts.append(f"outcome IN ({', '.join('?' * len(filters.outcomes))})")
        params += filters.outcomes
    if filters.min_duration is not None:
        parts.append("duration >= ?")
        params.append(filters.min_duration)
    if filters.max_duration is not None:
        parts.append("duration <= ?")
        params.append(filters.max_duration)
    if filters.groups is not None:
        parts.append(f"receiving_no IN ({', '.join('?' * len(filters.groups))})")
        params += filters.groups
    return "".join(f" AND {part}" for part in parts), params


def _match_sql(column: str, match: Match) -> tuple[str, list[object]]:
    """A condition on `column` for one value: equal, a prefix (a range, which an index
    serves), or null."""
    if match.value is None:
        return f"{column} IS NULL", []
    if not match.prefix:
        return f"{column} = ?", [match.value]
    if match.value == "":
        return f"{column} IS NOT NULL", []
    last = match.value[-1]
    if ord(last) >= 0x10FFFF:
        return f"{column} >= ?", [match.value]
    # Every text that starts with the stem sorts from it up to, not including, the stem with
    # its last character one up (byte order and code point order agree in UTF-8).
    return f"({column} >= ? AND {column} < ?)", [match.value, match.value[:-1] + chr(ord(last) + 1)]


@lru_cache(maxsize=512)
def _swap(text: str, placeholder: str) -> str:
    return text if placeholder == "?" else text.replace("?", placeholder)
