"""What the engines provide: SQL-shaped operations, and the small typed objects they return.

An engine knows tables and statements, never the domain: it stores and finds events, calls,
rendered records, organisations and tokens. What a new event means for a call's record is
worked out once, for every engine, by `_recompute` on top of a `WriteTx`.

Tenancy is in the signatures: every operation on call data takes the organisation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from samtal.errors import StoreError, UsageError, shorten
from samtal.events import Event
from samtal.records import detailed, tombstone
from samtal.tokens import TokenKind
from samtal.types import ORG_NAME

#: Id of the `ended` event a server appends when it closes an idle call (cdr.md).
IDLE_CLOSE_ID = "samtal:idle-close:{call}"


def check_org_name(name: str) -> None:
    """UsageError unless `name` may name a new organisation (names made before the rule was
    there keep working: only new ones are checked)."""
    if not ORG_NAME.fullmatch(name):
        raise UsageError(
            f"{shorten(name)} cannot name an organisation: use 1 to 64 letters, digits, "
            "'-', '_' or '.'"
        )


class Contention(StoreError):
    """A write transaction lost a race with another writer (a deadlock or serialisation
    failure the database resolved by aborting it): it is safe to run it again."""


@dataclass(frozen=True)
class Org:
    """An organisation (tenant) and the zone its records are rendered in."""

    name: str
    tz: str
    created: int


@dataclass(frozen=True)
class Token:
    """What is known of an API token (never the secret itself)."""

    id: int
    kind: TokenKind
    org: str | None
    created: int
    last_used: int | None
    revoked: int | None


@dataclass(frozen=True)
class IngestSummary:
    """What a batch of valid events did: accepted (new) and duplicates (already there)."""

    accepted: int
    duplicates: int
    #: Calls whose record was made, changed or removed by this batch.
    records_changed: int
    #: Of those, records that became visible for the first time, and records that went.
    records_new: int = 0
    records_deleted: int = 0
    #: For each record made or changed: microseconds from its call's stop to now.
    lags: tuple[int, ...] = ()


@dataclass(frozen=True)
class Change:
    """A call's latest version in the change feed (changes.md): its place in the
    organisation's sequence, its version, when it became visible (server clock), and its
    rendered record (the seven fields), None when the record is gone (a tombstone)."""

    seq: int
    call: str
    version: int
    changed: int
    record: bytes | None

    def json(self) -> bytes:
        """The version as the feed serves it: the detailed record, or its tombstone."""
        if self.record is None:
            return tombstone(self.call, self.version, self.seq)
        return detailed(self.call, self.record, self.version, self.seq)


@dataclass(frozen=True)
class Feed:
    """One read of an organisation's feed, from one snapshot: the versions after a cursor, the
    highest change number given out, and the highest lost to retention."""

    changes: list[Change]
    latest: int
    purged: int


class KnownCall(NamedTuple):
    """What a write transaction finds of a call seen before."""

    #: The start in milliseconds of its record, None while it has none.
    record_ms: int | None
    #: Its record's version (changes.md): 0 before it first had one.
    version: int
    #: The change number of that version, 0 before it first had one.
    seq: int
    #: Server clock when that version became visible, 0 before.
    changed: int


@dataclass(frozen=True)
class FeedPage:
    """One answer of the change feed (changes.md): the versions, the cursor to ask after next,
    and whether newer versions exist already."""

    changes: list[Change]
    next: int
    more: bool


@dataclass(frozen=True)
class CallRow:
    """What the store keeps of a call beside its events: enough to find its record, close it
    when idle and purge it whole."""

    org: str
    call: str
    #: The local date (days since 1970-01-01, in the organisation's zone) of its age: every
    #: row of the call lives in that day's partition, where an engine has them.
    day: int
    #: The call's start, or its earliest event while it has no `started`: what retention uses.
    age: int
    #: The start in milliseconds of its record (where the record row is), None while it has none.
    record_ms: int | None
    #: True while the call has neither a record nor an `ended`.
    open: bool
    #: Server clock of its latest event.
    last_seen: int
    #: Its record's version, the change number and server time of that version (changes.md);
    #: 0 before it ever had a record. A call with a version and no record is a tombstone.
    version: int = 0
    seq: int = 0
    changed: int = 0


@dataclass(frozen=True)
class RecordRow:
    """A rendered record as stored."""

    org: str
    day: int
    start_ms: int
    call: str
    start: int
    change_seq: int
    json: bytes
    version: int = 1
    #: The record's CSV row (changes.md, "Formats"), rendered with the JSON.
    csv: bytes | None = None


class RecordPages:
    """The three readings of a period's records that every engine gives, from its one paged
    scan `_pages(columns, org, start, end)`: pages of (start_ms, call, *columns), in order,
    each page its own short query."""

    def _pages(self, columns: str, org: str, start: int, end: int) -> Iterator[list[Any]]:
        raise NotImplementedError

    def records(self, *, org: str, start: int, end: int) -> Iterator[list[bytes]]:
        """Pages of the rendered records of `org` whose start is in [start, end), in order."""
        for rows in self._pages("json", org, start, end):
            yield [row[2] for row in rows]

    def detailed_records(
        self, *, org: str, start: int, end: int
    ) -> Iterator[list[tuple[str, bytes, int, int]]]:
        """As `records`, each as (call, rendered record, version, change number)."""
        for rows in self._pages("json, version, change_seq", org, start, end):
            yield [row[1:] for row in rows]

    def csv_records(
        self, *, org: str, start: int, end: int
    ) -> Iterator[list[tuple[str, bytes | None, bytes | None, int, int]]]:
        """As `records`, each as (call, CSV row or None, JSON where there is no CSV row,
        version, change number)."""
        # The JSON only where no CSV row was stored: the rest is not read twice.
        columns = "csv, CASE WHEN csv IS NULL THEN json END, version, change_seq"
        for rows in self._pages(columns, org, start, end):
            yield [row[1:] for row in rows]


class WriteTx(Protocol):
    """One write transaction of an engine: SQL-shaped steps that `_recompute` composes."""

    def lock_calls(self, org: str, calls: Sequence[str]) -> dict[str, KnownCall]:
        """The calls of `calls` seen before, each with what is known of its record; every
        call of `calls` is locked until the transaction ends: writers of one call take turns."""
        ...

    def insert_events(
        self, org: str, events: Sequence[Event], new_days: Mapping[str, int]
    ) -> list[Event]:
        """Insert the events of `org` not stored before (the first of any repeated); the ones
        inserted. Events of a call seen before go where its other events are; those of a call
        first seen now, in its day `new_days[call]`. A concurrent writer of the same event is
        waited for, never doubled."""
        ...

    def call_events(self, org: str, calls: Sequence[str]) -> dict[str, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        ...

    def record_json(self, org: str, start_ms: int, call: str) -> bytes | None:
        """The stored rendering of a call's record, or None."""
        ...

    def zone_of(self, org: str) -> str:
        """The organisation's zone name; NotFound when there is no such organisation."""
        ...

    def take_change_seqs(self, org: str, count: int) -> int:
        """Reserve `count` change numbers of `org`; the first. Numbers are taken in the order
        the transactions commit (the reservation holds until the end of the transaction)."""
        ...

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[tuple[str, int, str]],
        calls: Sequence[CallRow],
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Delete the records at (org, start_ms, call) in `gone`, upsert `records`, upsert
        `calls` (moving a call's rows where its day changed), and delete the rows of the locked
        calls in `forget` (org, call), which turned out to have no event of their own."""
        ...

    def stale_calls(self, last_seen_before: int) -> list[tuple[str, str, int, str]]:
        """Open calls whose latest event came at or before the given server time, each as (org,
        call, instant, at) of its latest event."""
        ...


class Engine(Protocol):
    """A database that samtal can run on: the same operations on every engine."""

    # -- organisations and tokens (operator side) ------------------------------------------
    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation; Conflict when it exists."""
        ...

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        ...

    def org(self, name: str) -> Org | None:
        """One organisation, or None."""
        ...

    def add_token(self, kind: TokenKind, *, org: str | None, hash: bytes, now: int) -> Token:
        """Store a token by the hash of its secret; NotFound for an unknown organisation."""
        ...

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        ...

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token (again: no change); NotFound when there is none with that id."""
        ...

    def token_by_hash(self, hash: bytes) -> Token | None:
        """The token with this hash, or None."""
        ...

    def touch_token(self, token_id: int, *, now: int) -> None:
        """Note that a token was used."""
        ...

    def operator_sql(
        self, statements: Sequence[tuple[str, Sequence[object]]], *, write: bool
    ) -> list[Any]:
        """Run portable statements on operator tables (`?` placeholders) in one transaction,
        read-only unless `write`; the rows of the last (see `_webhooks`)."""
        ...

    # -- call data --------------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[WriteTx]:
        """A write transaction: committed durably when the block ends, rolled back when it
        raises. Not nestable."""
        ...

    def records(self, *, org: str, start: int, end: int) -> Iterator[list[bytes]]:
        """Pages of the rendered records of `org` whose start is in [start, end), in order;
        no page holds a snapshot or a connection while the one before it is consumed."""
        ...

    def detailed_records(
        self, *, org: str, start: int, end: int
    ) -> Iterator[list[tuple[str, bytes, int, int]]]:
        """As `records`, each record as (call, rendered record, version, change number)."""
        ...

    def csv_records(
        self, *, org: str, start: int, end: int
    ) -> Iterator[list[tuple[str, bytes | None, bytes | None, int, int]]]:
        """As `records`, each as (call, CSV row or None where none was stored, the rendered
        JSON where no CSV row was stored, version, change number)."""
        ...

    def feed(self, *, org: str, after: int, limit: int) -> Feed:
        """The calls of `org` whose latest version has a change number above `after`, by
        change number, at most `limit`, with the organisation's latest and purged change
        numbers, all read from one snapshot; NotFound for an unknown organisation."""
        ...

    def latest_change(self, org: str) -> int:
        """The highest change number `org` has given out (0: none; NotFound: no such org)."""
        ...

    def purge(self, *, org: str, before: int) -> int:
        """Remove whole calls of `org` whose age is before `before`, remembering the highest
        change number removed as the organisation's purged one; the number removed."""
        ...

    def prepare_days(self, days: set[int]) -> None:
        """Make ready to hold calls of these days (an engine with partitions makes them)."""
        ...

    def drop_days(self, before: int) -> int:
        """Remove the calls of every organisation whose day is before `before`, whole days at
        a time where the engine can; the number of days dropped."""
        ...

    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """Until `stop` is set, call `changed(org)` soon (well within a second) after any
        process commits new versions of `org`'s records; `changed(None)` when the engine cannot
        tell which organisation (or may have missed some). Blocks: run it on a thread."""
        ...

    def lead_duties(self) -> bool:
        """Whether this process runs the background duties of the installation: the first to
        ask takes the lead and keeps it while it lives; the others get False until it is gone."""
        ...

    def close(self) -> None:
        """Release the engine's connections (and the lead of the duties)."""
        ...
