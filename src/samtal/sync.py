"""`samtal sync`: keep a copy of an organisation's call records in the customer's own SQL
database, from any samtal server, over HTTP alone (spec/changes.md).

The copy is one table of one organisation's calls, a row per call, and a cursor in
`samtal_sync_cursors` (a row per source URL and table, with the organisation the server named)
written in the same transaction as the rows it covers: a sync killed at any moment resumes
without gaps or doubles. A row is never replaced by an older `seq`; a tombstone
deletes it; retention on the server never deletes anything here. Targets: SQLite, PostgreSQL,
MySQL and MariaDB, through SQLAlchemy Core with each dialect's upsert.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import ArgumentError

from samtal.errors import UsageError, quoted_url, shorten
from samtal.times import retry_after_seconds
from samtal.wal import write_ahead

log = logging.getLogger(__name__)

#: The plain URL forms a customer writes, and the drivers samtal ships for them.
DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
STATE_TABLE = "samtal_sync_cursors"
#: Where samtal before 2026-12-05 kept the cursor, a row per source URL alone: two tables
#: copied from one server shared it, so the second got nothing. A copy's row there is taken
#: over once (`Copy._adopt`).
LEGACY_STATE_TABLE = "samtal_sync_state"
#: The columns every copy has had since the first: a table without them is someone else's.
COPY_CORE = ("id", "start", "stop", "version", "seq")
#: Records asked for per page of the feed: the most a page may hold (changes.md). A first
#: backfill of three months of 1,500 calls a working day (135,000 records) is then 14 requests,
#: where in pages of 1,000 it was 136, more than the token's default rate limit (60 a minute)
#: lets through: two minutes of waiting on 429s, against 6 s.
PAGE = 10_000


def shown(url: str) -> str:
    """A database URL as a message quotes it: its password as ***, up to 300 characters."""
    return quoted_url(url, 300)


def reason(exc: sa.exc.SQLAlchemyError) -> str:
    """What the database said, on one line: its driver's words where there are some, without
    SQLAlchemy's additions (the statement, a link to its documentation)."""
    orig = getattr(exc, "orig", None)
    said = str(orig if orig is not None else exc).split("\n")[0]
    return said if len(said) <= 300 else f"{said[:300]}..."


def target_url(url: str) -> sa.URL:
    """The SQLAlchemy URL of `sqlite:///path`, `postgresql://...`, `mysql://...` or
    `mariadb://...` (a URL that names its driver is taken as it is)."""
    try:
        parsed = sa.make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError(f"{shown(url)} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    ):
        raise UsageError(
            f"{shown(url)} names no file: SQLite would hold the copy in memory, gone at exit; "
            "give a file, e.g. sqlite:///calls.db"
        )
    if "+" in parsed.drivername:
        return parsed
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(
            f"{shown(url)}: use sqlite:///path, postgresql://..., mysql://... or mariadb://..."
        )
    return parsed.set(drivername=driver)


def _timestamp() -> sa.types.TypeEngine[Any]:
    """An instant with milliseconds: `timestamptz` on PostgreSQL; elsewhere, UTC without zone
    (MySQL and MariaDB keep three fractional digits)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def exact_collation(engine: sa.Engine) -> str | None:
    """The collation in which MySQL or MariaDB compares ids as events.md means them, byte for
    byte (None elsewhere: SQLite and PostgreSQL do by default). Their default collations fold
    case and accents and ignore trailing spaces, so `Kx9`, `kx9` and `kx9 ` were one row.
    MySQL before 8.0 has no collation that keeps trailing spaces: there they still meet."""
    dialect = engine.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return None
    with engine.connect():  # the server's kind and version are known once connected
        pass
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin" if (dialect.server_version_info or ()) >= (8, 0) else "utf8mb4_bin"


def _id_type(length: int, collation: str | None) -> sa.types.TypeEngine[Any]:
    kind = sa.String(length)
    if collation is None:
        return kind
    exact = mysql.VARCHAR(length, charset="utf8mb4", collation=collation)
    return kind.with_variant(exact, "mysql", "mariadb")


def split_name(name: str) -> tuple[str | None, str]:
    """A table's (schema, name) from `schema.name` (on MySQL and MariaDB the schema is a
    database), or (None, name): a warehouse keeps its tables in schemas."""
    schema, dot, table = name.rpartition(".")
    if not table or (dot and not schema):
        raise UsageError(f"--table {name!r} names no table: give `name` or `schema.name`")
    return (schema or None), table


def tables(name: str, *, id_collation: str | None = None) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The copy's table (`name`, or `schema.name`) and the cursor table (in the default
    schema); on MySQL and MariaDB, ids in `id_collation` (`exact_collation`)."""
    metadata = sa.MetaData()
    schema, table = split_name(name)
    records = sa.Table(
        table,
        metadata,
        # Sized from the spec (events.md): an id is at most 128 characters. Numbers are at
        # most 64, but a server may still serve longer ones it stored before that rule: the
        # copy takes any text.
        sa.Column("id", _id_type(128, id_collation), primary_key=True),
        sa.Column("caller_no", sa.Text),
        sa.Column("start", _timestamp(), nullable=False, index=True),
        sa.Column("receiving_no", sa.Text),
        sa.Column("received", _timestamp()),
        sa.Column("callee_no", sa.Text),
        sa.Column("callee_answered", _timestamp()),
        sa.Column("stop", _timestamp(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        # query.md: how the call ended. Added in place to a copy made before (empty until a
        # row's record is written again).
        sa.Column("outcome", sa.String(16)),
        schema=schema,
    )
    state = sa.Table(
        STATE_TABLE,
        metadata,
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("copy_table", sa.String(128), primary_key=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        # Whose calls the table keeps, as the server names it (`Samtal-Organisation`): empty
        # for a cursor kept before 2026-12-05, or from a server that does not say.
        sa.Column("organisation", sa.String(64)),
    )
    return metadata, records, state


def _legacy_state() -> sa.Table:
    return sa.Table(
        LEGACY_STATE_TABLE,
        sa.MetaData(),
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
    )


#: The copy's columns of the seven fields, and which of them are instants.
COLUMNS = {
    "callerNo": "caller_no",
    "start": "start",
    "receivingNo": "receiving_no",
    "received": "received",
    "calleeNo": "callee_no",
    "calleeAnswered": "callee_answered",
    "stop": "stop",
}
INSTANTS = frozenset({"start", "received", "calleeAnswered", "stop"})


def column_instant(moment: datetime, *, zoned: bool) -> datetime:
    """An aware instant as a timestamp column holds it: as it is where the column has a zone
    (PostgreSQL), else in UTC without one."""
    return moment if zoned else moment.astimezone(UTC).replace(tzinfo=None)


class Copy:
    """The customer's copy in one database: its rows, and its cursor for one source and table."""

    def __init__(self, url: str, source: str, *, table: str = "call_records") -> None:
        self.engine = sa.create_engine(target_url(url))
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _shared_sqlite)
        self.url = url
        self.source = source
        #: The table as it was named (`schema.name` too): the key of its cursor.
        self.table = table
        self._zoned = self.engine.dialect.name == "postgresql"
        try:
            self._collation = exact_collation(self.engine)
            metadata, self.records, self.state = tables(table, id_collation=self._collation)
            new = not sa.inspect(self.engine).has_table(
                self.records.name, schema=self.records.schema
            )
            self._made(metadata)
            self._adopt(new=new)
            self._exact_ids()
        except UsageError:
            self.engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise UsageError(f"cannot open the copy at {shown(url)}: {reason(exc)}") from None
        #: True while a page is being written (a stop must wait for the commit).
        self.writing = False

    def _made(self, metadata: sa.MetaData, attempts: int = 3) -> None:
        """Make the tables that are missing and bring older ones to shape (`_upgrade`).

        Another process may be doing the same at the same moment (two syncs started
        together, or a sync and its `stats`): on MySQL and MariaDB a CREATE or an ALTER is
        not transactional, so one process's look and change can fall between the other's,
        and its change then fails on what the other just made. It looks again, and finds
        nothing left to do."""
        for attempt in range(1, attempts + 1):
            try:
                metadata.create_all(self.engine)  # only what is missing
                self._upgrade()
                return
            except sa.exc.DBAPIError as exc:
                if attempt == attempts:
                    raise
                log.info("the copy's tables changed meanwhile (%s); looking again", exc.orig)
                time.sleep(0.1 * attempt)

    def _upgrade(self) -> None:
        """Bring a copy made by an older samtal to this table's shape, in place: columns it
        (or the cursor table) lacks are added (empty), and number columns of a bounded size
        become text."""
        found = self._found(self.records)
        missing = [name for name in COPY_CORE if name not in found]
        if missing:  # another table of the customer's: not ours to change
            raise UsageError(
                f"the table {self.table!r} is not a copy samtal keeps (it has no "
                f"{', '.join(missing)} column): name another with --table"
            )
        statements = [
            *self._alterations(self.records, found),
            *self._alterations(self.state, self._found(self.state)),
        ]
        if statements:
            with self.engine.begin() as db:
                for statement in statements:
                    db.execute(sa.text(statement))
            log.info("upgraded the copy's tables in place: %s", "; ".join(statements))

    def _found(self, table: sa.Table) -> dict[str, Any]:
        """The columns `table` has in the database, by name."""
        columns = sa.inspect(self.engine).get_columns(table.name, schema=table.schema)
        return {c["name"]: c for c in columns}

    def _alterations(self, table: sa.Table, found: dict[str, Any]) -> list[str]:
        """The statements that give `table`, as `found`, the columns it lacks, and text where
        it has a number column of a bounded size."""
        dialect = self.engine.dialect
        quote = dialect.identifier_preparer.quote
        name_of_table = dialect.identifier_preparer.format_table(table)
        statements = []
        for column in table.columns:
            have = found.get(column.name)
            name = quote(column.name)
            if have is None:
                kind = column.type.compile(dialect=dialect)
                statements.append(f"ALTER TABLE {name_of_table} ADD COLUMN {name} {kind}")
            elif (
                isinstance(column.type, sa.Text)
                and getattr(have["type"], "length", None) is not None
                and dialect.name != "sqlite"  # SQLite never enforced the length
            ):
                if dialect.name == "postgresql":
                    statements.append(f"ALTER TABLE {name_of_table} ALTER COLUMN {name} TYPE text")
                else:
                    statements.append(f"ALTER TABLE {name_of_table} MODIFY COLUMN {name} TEXT NULL")
        return statements

    def _adopt(self, *, new: bool) -> None:
        """Make this copy's cursor true to its table. A table made just now has no rows, so a
        cursor kept for its name (the table dropped since) would skip them all: it goes. A
        table with rows and no cursor of its own takes the one an older samtal kept for the
        source alone, once: a second table then starts from the beginning, as it should have."""
        mine = self._mine()
        with self.engine.begin() as db:
            if new:
                db.execute(sa.delete(self.state).where(*mine))
                return
            if db.execute(sa.select(self.state.c.cursor).where(*mine)).first() is not None:
                return
            if not sa.inspect(db).has_table(LEGACY_STATE_TABLE):
                return
            if db.execute(sa.select(self.records.c.id).limit(1)).first() is None:
                return
            legacy = _legacy_state()
            kept = db.execute(
                sa.select(legacy.c.cursor).where(legacy.c.source == self.source)
            ).scalar()
            if kept is not None:
                self._save_cursor(db, int(kept))
                db.execute(sa.delete(legacy).where(legacy.c.source == self.source))
                log.info("took over the cursor %d kept for %s before tables had their own",
                         kept, self.source)  # fmt: skip

    def _exact_ids(self) -> None:
        """Make the ids of a copy an older samtal made on MySQL or MariaDB exact, in place, and
        forget every cursor of its table: a call whose id met another's there (`Kx9`, `kx9`)
        lost its row to it, and comes back as the feed is walked again (an upsert that never
        takes an older version: walking it again changes nothing else)."""
        if self._collation is None:
            return
        with self.engine.begin() as db:
            found = db.execute(
                sa.text(
                    "SELECT collation_name, character_maximum_length FROM information_schema"
                    ".columns WHERE table_schema = coalesce(:schema, DATABASE()) AND "
                    "table_name = :table AND column_name = 'id'"
                ),
                {"schema": self.records.schema, "table": self.records.name},
            ).first()
            if found is None or found[0] == self._collation:
                return
            kind = _id_type(int(found[1]), self._collation).compile(dialect=self.engine.dialect)
            table = self.engine.dialect.identifier_preparer.format_table(self.records)
            db.execute(sa.text(f"ALTER TABLE {table} MODIFY COLUMN id {kind} NOT NULL"))
            db.execute(sa.delete(self.state).where(self.state.c.copy_table == self.table))
        log.warning(
            "the copy's ids were compared in %s, which takes ids alike but for case, accents or "
            "trailing spaces for one call: made exact (%s); the feed is walked again from the "
            "start to bring back the calls that lost their row",
            found[0],
            self._collation,
        )

    def _mine(self) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            self.state.c.source == self.source,
            self.state.c.copy_table == self.table,
        )

    def cursor(self) -> int:
        """The seq after which the copy is incomplete (0: nothing copied yet)."""
        with self.engine.connect() as db:
            found = db.execute(sa.select(self.state.c.cursor).where(*self._mine())).scalar()
        return int(found or 0)

    def claim(self, organisation: str) -> None:
        """OtherOrganisation if the table keeps another organisation's calls (by the cursor of
        any source): ids are unique, and `seq`s ordered, only within one organisation, so a
        second one's calls would take the first's rows and start from its cursor."""
        try:
            with self.engine.connect() as db:
                self._claim(db, organisation)
        except sa.exc.DBAPIError as exc:
            raise CopyError(f"cannot read the copy at {shown(self.url)}: {reason(exc)}") from exc

    def _claim(self, db: sa.Connection, organisation: str) -> None:
        state = self.state
        found = db.execute(
            sa.select(state.c.organisation, state.c.source)
            .where(
                state.c.copy_table == self.table,
                state.c.organisation.is_not(None),
                state.c.organisation != organisation,
            )
            .limit(1)
        ).first()
        if found is None:
            return
        own = re.sub(r"[^a-z0-9]+", "_", f"{self.records.name}_{organisation}".lower())
        raise OtherOrganisation(
            f"the table {self.table!r} keeps the calls of organisation {found[0]} (from "
            f"{found[1]}), and this token reads organisation {organisation}'s: each "
            f"organisation's ids and seqs are its own, so copy it into a table of its own, "
            f"e.g. --table {own}"
        )

    def apply(
        self, records: Sequence[dict[str, Any]], cursor: int, *, organisation: str | None = None
    ) -> None:
        """Upsert the records and delete the tombstones of one page, and move the cursor, in
        one transaction; with `organisation` (the server's name for it), checked as `claim`
        does and kept with the cursor."""
        rows = [self._row(r) for r in records if not r.get("deleted")]
        gone = [r for r in records if r.get("deleted")]
        self.writing = True
        try:
            self._write_page(rows, gone, cursor, organisation)
        except sa.exc.DBAPIError as exc:
            # Nothing of the page is written, and the cursor stays where it was.
            raise CopyError(
                f"cannot write to the copy at {shown(self.url)}: {reason(exc)}"
            ) from exc
        finally:
            self.writing = False

    def _write_page(
        self,
        rows: list[dict[str, Any]],
        gone: list[dict[str, Any]],
        cursor: int,
        organisation: str | None,
    ) -> None:
        with self.engine.begin() as db:
            if organisation is not None:
                self._claim(db, organisation)
            if rows:
                db.execute(self._upsert(), rows)
            for tombstone in gone:
                db.execute(
                    sa.delete(self.records).where(
                        self.records.c.id == tombstone["id"],
                        self.records.c.seq < tombstone["seq"],
                    )
                )
            self._save_cursor(db, cursor, organisation)

    def _row(self, record: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": record["id"],
            "outcome": record.get("outcome"),
            "version": record["version"],
            "seq": record["seq"],
            "record": record,
        }
        for field, column in COLUMNS.items():
            value = record[field]
            row[column] = value if field not in INSTANTS or value is None else self._instant(value)
        return row

    def _instant(self, text: str) -> datetime:
        return column_instant(datetime.fromisoformat(text), zoned=self._zoned)

    def _upsert(self) -> Any:
        """INSERT of a row, or UPDATE of the one there when it has an older seq."""
        table, dialect = self.records, self.engine.dialect.name
        columns = [c.name for c in table.columns if c.name != "id"]
        if dialect in ("postgresql", "sqlite"):
            insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
            return insert.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={name: insert.excluded[name] for name in columns},
                where=table.c.seq < insert.excluded.seq,
            )
        if dialect in ("mysql", "mariadb"):
            insert = mysql.insert(table)
            newer = insert.inserted.seq > table.c.seq
            # MySQL assigns left to right: `seq` goes last, so every test sees the old one.
            ordered = [name for name in columns if name != "seq"] + ["seq"]
            return insert.on_duplicate_key_update(
                [
                    (name, sa.case((newer, insert.inserted[name]), else_=table.c[name]))
                    for name in ordered
                ]
            )
        raise UsageError(f"cannot sync into a {dialect} database")

    def _save_cursor(self, db: sa.Connection, cursor: int, organisation: str | None = None) -> None:
        now = datetime.now(UTC)
        updated = now if self._zoned else now.replace(tzinfo=None)
        values: dict[str, Any] = {"cursor": cursor, "updated": updated}
        if organisation is not None:
            values["organisation"] = organisation
        done = db.execute(sa.update(self.state).where(*self._mine()).values(values))
        if done.rowcount == 0:
            db.execute(
                sa.insert(self.state).values(source=self.source, copy_table=self.table, **values)
            )

    def close(self) -> None:
        self.engine.dispose()


class SyncError(Exception):
    """The server could not be read (after the retries a single run allows), or the copy not
    written."""


class CopyError(SyncError):
    """The copy's database refused a page (a lock held past its wait, a full disk, a rule of
    its own): nothing of the page is written."""


class OtherOrganisation(SyncError):
    """The copy's table keeps another organisation's calls than the token reads: nothing is
    written, and waiting changes nothing."""


#: The first pause, doubled up to a minute, before a page the copy refused is written again
#: by a sync that follows the feed (`--every`).
COPY_RETRY_SECONDS = 1.0
#: How long a write to a SQLite copy waits for a lock another program holds (SQLite's own
#: default is none; Python's 5 s).
SQLITE_BUSY_SECONDS = 60


def _shared_sqlite(db: Any, _record: Any) -> None:
    """A SQLite copy is read while it is kept (a dashboard, `samtal stats`): in WAL mode a
    reader never holds up the sync's commit (in SQLite's default mode, a reader in a
    transaction did, and the page failed after 5 s), and a writer of its own waits its turn."""
    db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
    write_ahead(db, within=SQLITE_BUSY_SECONDS)


@dataclass
class Progress:
    """What a sync did so far."""

    records: int = 0
    deleted: int = 0
    pages: int = 0
    restarts: int = 0
    cursor: int = 0
    up_to_date: bool = False


def server_url(text: str) -> str:
    """The samtal server's URL as the copy keys its cursor by it: scheme and host in lower
    case, no default port, no password, no trailing `/`. So `https://api.example.com/`
    resumes where `https://api.example.com` stopped instead of walking the whole feed again.
    UsageError for anything but an http(s) URL with a host: nothing to retry."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise UsageError(f"--from {quoted_url(text)} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"--from {quoted_url(text)} is not a server's URL: give http:// or https:// and "
            "its host, e.g. https://api.example.com"
        )
    if url.port is not None and not 1 <= url.port <= 65535:
        raise UsageError(f"--from {quoted_url(text)} has no valid port (a number from 1 to 65535)")
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path.rstrip('/')}"


class Feed:
    """The change feed of a samtal server, read with a read token, with retries: 429 waits for
    `Retry-After`; 5xx and connection errors back off exponentially with jitter."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        attempts: int | None = 8,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
    ) -> None:
        self._client = client or httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10, read=90),
        )
        self._base = base_url.rstrip("/")
        self._attempts = attempts  # None: keep trying
        self._sleep = sleep

    def page(self, after: int, *, limit: int = PAGE, wait: int = 0) -> dict[str, Any] | None:
        """One answer of the feed, checked (`checked_page`); None when the cursor expired
        (410). SyncError when the server's answer is not a page of the feed."""
        failures = 0
        while True:
            try:
                status, headers, body = self._get(after, limit, wait)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    # A server before 2026-12-05 does not name the organisation: None.
                    return {**checked_page(body, after), "organisation": headers.get(ORGANISATION)}
                if status == 410:
                    return None
                if status == 429:
                    asked = retry_after_seconds(headers.get("retry-after"), now=time.time())
                    delay = 1.0 if asked is None else asked
                    log.info("rate limited: waiting %.0f s as the server asks", delay)
                    self._sleep(delay)
                    continue
                if status == 404:
                    raise SyncError(
                        f"{_problem(status, body)}: {quoted_url(self._base)} has no change feed "
                        "(/cdr/changes); give --from the server's root, e.g. "
                        "https://api.example.com"
                    )
                if status < 500:
                    raise SyncError(_problem(status, body))
                problem = _problem(status, body)
            failures += 1
            if self._attempts is not None and failures >= self._attempts:
                raise SyncError(f"the server did not answer after {failures} tries: {problem}")
            delay = min(60.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
            log.warning("%s; trying again in %.1f s", problem, delay)
            self._sleep(delay)

    def _get(self, after: int, limit: int, wait: int) -> tuple[int, httpx.Headers, bytes]:
        """The status, headers and body of one request, the body read up to
        MAX_PAGE_BYTES (a page of the feed is a few MB at most: more is not a page, and is
        not held)."""
        params = {"after": after, "limit": limit, "wait": wait}
        with self._client.stream("GET", "/cdr/changes", params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise SyncError(
                        f"the server's answer is over {MAX_PAGE_BYTES // 2**20} MiB: that is not "
                        "a page of the change feed (is the URL a samtal server?)"
                    )
            return response.status_code, response.headers, bytes(body)

    def close(self) -> None:
        self._client.close()


#: The header in which the server names the organisation whose feed it is.
ORGANISATION = "Samtal-Organisation"
#: The largest answer read as one page of the feed (10,000 records are about 4 MB).
MAX_PAGE_BYTES = 64 * 2**20
MAX_SEQ = 2**63 - 1
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
_Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
#: A field of a record that holds text or null (numbers are at most 64 characters; older data
#: may hold more, which the copy takes).
_Text = Annotated[str, msgspec.Meta(max_length=4096)] | None


class _Page(msgspec.Struct):
    records: list[dict[str, Any]]
    next: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    more: bool


class _Record(msgspec.Struct):
    id: _Id
    callerNo: _Text
    start: str
    receivingNo: _Text
    received: str | None
    calleeNo: _Text
    calleeAnswered: str | None
    stop: str
    version: _Version
    seq: _Seq
    outcome: Literal["answered", "voicemail", "abandoned", "rejected", "unanswered"] | None = None


class _Tombstone(msgspec.Struct):
    id: _Id
    deleted: Literal[True]
    version: _Version
    seq: _Seq
    reason: Literal["erased"] | None = None  # privacy.md: an erasure took it


def checked_page(body: bytes, after: int) -> dict[str, Any]:
    """A page of the change feed from the server's answer, checked before anything is written:
    the spec's shape for every record and tombstone, `seq`s ascending after `after` and up to
    `next`, and `next` never behind `after`. SyncError, in one line, otherwise: one bad answer
    never becomes the copy's cursor or rows."""
    try:
        page = msgspec.json.decode(body, type=_Page)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise SyncError(
            f"the server's answer is not a page of the change feed: {_why(exc)}"
        ) from None
    last = after
    for position, record in enumerate(page.records, 1):
        try:
            if record.get("deleted") is not None:
                msgspec.convert(record, _Tombstone)
            else:
                checked = msgspec.convert(record, _Record)
                for name in ("start", "received", "calleeAnswered", "stop"):
                    value = getattr(checked, name)
                    if value is not None:
                        _instant(value, name)
        except (msgspec.ValidationError, ValueError) as exc:
            raise SyncError(
                f"record {position} of the server's page is not a record of the change feed: "
                f"{_why(exc)}"
            ) from None
        if not last < record["seq"] <= page.next:
            raise SyncError(
                f"record {position} of the server's page has seq {record['seq']}, not after "
                f"{last} and up to next={page.next}: the server is not following the feed"
            )
        last = record["seq"]
    if page.next < after or (page.records and page.next != last):
        raise SyncError(
            f"the server's page goes to next={page.next} from after={after}: a cursor never "
            "moves back, and `next` is the last record's seq"
        )
    if not page.records and page.next != after:
        raise SyncError(
            f"the server's page is empty but moves the cursor from {after} to {page.next}"
        )
    if page.more and not page.records:
        raise SyncError("the server's page says there is more but holds nothing")
    return {"records": page.records, "next": page.next, "more": page.more}


def _instant(text: str, name: str) -> None:
    """ValueError unless `text` is a time as records give them, with an offset."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"`{name}` ({shorten(text)}) has no offset")


def _why(exc: Exception) -> str:
    return shorten(str(exc).split("\n")[0], 200)


def sync(
    feed: Feed,
    copy: Copy,
    *,
    wait: int = 0,
    stop: threading.Event | None = None,
    limit: int = PAGE,
) -> Iterator[Progress]:
    """Copy every version after the copy's cursor, page by page, one transaction each; yields
    the progress after each page. Stops when the copy is up to date (`wait` 0) or, with `wait`,
    keeps following the feed until `stop` is set (checked between transactions)."""
    done = Progress(cursor=copy.cursor())
    refused = 0  # pages the copy refused in a row, while following
    claimed: str | None = None  # the organisation the copy was found to keep
    # After a 410 the copy's cursor goes back to 0 with the first page read from there, and
    # only then is the walk told of: by then the server has named the organisation, and a
    # copy of another's (whose cursor this organisation never gave out) is left as it was.
    restarted = False
    expired = 0
    while stop is None or not stop.is_set():
        page = feed.page(done.cursor, limit=limit, wait=wait if done.up_to_date else 0)
        if page is None:
            expired, restarted = done.cursor, True
            done.cursor, done.up_to_date = 0, False
            continue
        organisation = page["organisation"]
        if organisation is not None and organisation != claimed:
            copy.claim(organisation)
            claimed = organisation
        if expired:
            log.warning(
                "the server no longer has versions after seq %d (retention): walking the whole "
                "feed again from the beginning, upserting",
                expired,
            )
            done.restarts, expired = done.restarts + 1, 0
        records = page["records"]
        if records or page["next"] != done.cursor or restarted:
            try:
                copy.apply(records, page["next"], organisation=organisation)
            except CopyError as exc:
                if not wait:
                    raise
                # Following, the copy's database may come back (a lock let go, a restart,
                # room made): the same page again, later.
                refused += 1
                pause = min(COPY_RETRY_SECONDS * 2 ** (refused - 1), 60)
                log.warning("%s; trying again in %d s", exc, pause)
                if stop is None:
                    time.sleep(pause)
                else:
                    stop.wait(pause)
                continue
            refused, restarted = 0, False
        done.records += sum(1 for r in records if not r.get("deleted"))
        done.deleted += sum(1 for r in records if r.get("deleted"))
        done.pages += 1
        done.cursor = page["next"]
        done.up_to_date = not page["more"]
        yield done
        if done.up_to_date and not wait:
            return


def _problem(status: int, body: bytes) -> str:
    try:
        detail = str(msgspec.json.decode(body).get("detail", ""))
    except (msgspec.DecodeError, AttributeError):
        detail = body[:200].decode(errors="replace")
    return f"HTTP {status}: {shorten(detail, 200)}"
