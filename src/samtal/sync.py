"""`samtal sync`: keep a copy of an organisation's call records in the customer's own SQL
database, from any samtal server, over HTTP alone (spec/changes.md).

The copy is one table, a row per call, and a cursor in `samtal_sync_state` (a row per source
URL) written in the same transaction as the rows it covers: a sync killed at any moment resumes
without gaps or doubles. A row is never replaced by an older `seq`; a tombstone deletes it;
retention on the server never deletes anything here. Targets: SQLite, PostgreSQL, MySQL and
MariaDB, through SQLAlchemy Core with each dialect's upsert.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import ArgumentError

from samtal.errors import UsageError, shorten

log = logging.getLogger(__name__)

#: The plain URL forms a customer writes, and the drivers samtal ships for them.
DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
STATE_TABLE = "samtal_sync_state"
#: Records asked for per page of the feed.
PAGE = 1000


def target_url(url: str) -> sa.URL:
    """The SQLAlchemy URL of `sqlite:///path`, `postgresql://...`, `mysql://...` or
    `mariadb://...` (a URL that names its driver is taken as it is)."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise UsageError(f"{shorten(url)} is not a database URL") from None
    if "+" in parsed.drivername:
        return parsed
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(
            f"{shorten(url)}: use sqlite:///path, postgresql://..., mysql://... or mariadb://..."
        )
    return parsed.set(drivername=driver)


def _timestamp() -> sa.types.TypeEngine[Any]:
    """An instant with milliseconds: `timestamptz` on PostgreSQL; elsewhere, UTC without zone
    (MySQL and MariaDB keep three fractional digits)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def tables(name: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The copy's table (`name`) and the cursor table."""
    metadata = sa.MetaData()
    records = sa.Table(
        name,
        metadata,
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("caller_no", sa.String(255)),
        sa.Column("start", _timestamp(), nullable=False, index=True),
        sa.Column("receiving_no", sa.String(255)),
        sa.Column("received", _timestamp()),
        sa.Column("callee_no", sa.String(255)),
        sa.Column("callee_answered", _timestamp()),
        sa.Column("stop", _timestamp(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    state = sa.Table(
        STATE_TABLE,
        metadata,
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    return metadata, records, state


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
    """The customer's copy in one database: its rows and its cursor for one source."""

    def __init__(self, url: str, source: str, *, table: str = "call_records") -> None:
        self.engine = sa.create_engine(target_url(url))
        self.source = source
        metadata, self.records, self.state = tables(table)
        metadata.create_all(self.engine)  # only what is missing
        self._zoned = self.engine.dialect.name == "postgresql"
        #: True while a page is being written (a stop must wait for the commit).
        self.writing = False

    def cursor(self) -> int:
        """The seq after which the copy is incomplete (0: nothing copied yet)."""
        with self.engine.connect() as db:
            found = db.execute(
                sa.select(self.state.c.cursor).where(self.state.c.source == self.source)
            ).scalar()
        return int(found or 0)

    def apply(self, records: Sequence[dict[str, Any]], cursor: int) -> None:
        """Upsert the records and delete the tombstones of one page, and move the cursor, in
        one transaction."""
        rows = [self._row(r) for r in records if not r.get("deleted")]
        gone = [r for r in records if r.get("deleted")]
        self.writing = True
        try:
            self._write(rows, gone, cursor)
        finally:
            self.writing = False

    def _write(self, rows: list[dict[str, Any]], gone: list[dict[str, Any]], cursor: int) -> None:
        with self.engine.begin() as db:
            if rows:
                db.execute(self._upsert(), rows)
            for tombstone in gone:
                db.execute(
                    sa.delete(self.records).where(
                        self.records.c.id == tombstone["id"],
                        self.records.c.seq < tombstone["seq"],
                    )
                )
            self._save_cursor(db, cursor)

    def _row(self, record: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": record["id"],
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

    def _save_cursor(self, db: sa.Connection, cursor: int) -> None:
        now = datetime.now(UTC)
        updated = now if self._zoned else now.replace(tzinfo=None)
        done = db.execute(
            sa.update(self.state)
            .where(self.state.c.source == self.source)
            .values(cursor=cursor, updated=updated)
        )
        if done.rowcount == 0:
            db.execute(
                sa.insert(self.state).values(source=self.source, cursor=cursor, updated=updated)
            )

    def restart(self) -> None:
        """Walk the feed again from the beginning (after a 410), keeping the rows."""
        with self.engine.begin() as db:
            self._save_cursor(db, 0)

    def close(self) -> None:
        self.engine.dispose()


class SyncError(Exception):
    """The server could not be read (after the retries a single run allows)."""


@dataclass
class Progress:
    """What a sync did so far."""

    records: int = 0
    deleted: int = 0
    pages: int = 0
    restarts: int = 0
    cursor: int = 0
    up_to_date: bool = False


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
        self._attempts = attempts  # None: keep trying
        self._sleep = sleep

    def page(self, after: int, *, limit: int = PAGE, wait: int = 0) -> dict[str, Any] | None:
        """One answer of the feed; None when the cursor expired (410)."""
        failures = 0
        while True:
            try:
                response = self._client.get(
                    "/cdr/changes", params={"after": after, "limit": limit, "wait": wait}
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    page: dict[str, Any] = response.json()
                    return page
                if response.status_code == 410:
                    return None
                if response.status_code == 429:
                    delay = _seconds(response.headers.get("retry-after"), 1.0)
                    log.info("rate limited: waiting %.0f s as the server asks", delay)
                    self._sleep(delay)
                    continue
                if response.status_code < 500:
                    raise SyncError(_problem(response))
                problem = _problem(response)
            failures += 1
            if self._attempts is not None and failures >= self._attempts:
                raise SyncError(f"the server did not answer after {failures} tries: {problem}")
            delay = min(60.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
            log.warning("%s; trying again in %.1f s", problem, delay)
            self._sleep(delay)

    def close(self) -> None:
        self._client.close()


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
    while stop is None or not stop.is_set():
        page = feed.page(done.cursor, limit=limit, wait=wait if done.up_to_date else 0)
        if page is None:
            log.warning(
                "the server no longer has versions after seq %d (retention): walking the whole "
                "feed again from the beginning, upserting",
                done.cursor,
            )
            copy.restart()
            done.cursor, done.restarts, done.up_to_date = 0, done.restarts + 1, False
            continue
        records = page["records"]
        if records or page["next"] != done.cursor:
            copy.apply(records, page["next"])
        done.records += sum(1 for r in records if not r.get("deleted"))
        done.deleted += sum(1 for r in records if r.get("deleted"))
        done.pages += 1
        done.cursor = page["next"]
        done.up_to_date = not page["more"]
        yield done
        if done.up_to_date and not wait:
            return


def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _problem(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except ValueError:
        detail = response.text[:200]
    return f"HTTP {response.status_code}: {detail}"
