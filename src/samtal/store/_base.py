"""The small typed objects the store passes around, and what a write transaction offers.

An engine knows tables and statements, never the domain: it stores and finds events, calls,
rendered records, organisations and tokens. What a new event means for a call's record is
worked out once, for every engine, by `_recompute` on top of a `WriteTx`.

Tenancy is in the signatures: every operation on call data names the organisation, alone or as
the first half of a call's key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from samtal.errors import StoreError, UsageError, shorten
from samtal.events import Event
from samtal.records import detailed, tombstone
from samtal.tokens import TokenKind
from samtal.types import ORG_NAME

#: Id of the `ended` event a server appends when it closes an idle call (cdr.md).
IDLE_CLOSE_ID = "samtal:idle-close:{call}"

#: A call's key: its organisation and its id.
CallKey = tuple[str, str]


def check_org_name(name: str) -> None:
    """UsageError unless `name` may name a new organisation (names made before the rule was
    there keep working: only new ones are checked)."""
    if not ORG_NAME.fullmatch(name) or name.startswith("-"):
        # A name that starts with `-` would be taken for an option by every command after.
        raise UsageError(
            f"{shorten(name)} cannot name an organisation: use 1 to 64 ASCII letters, digits, "
            "'-', '_' or '.' ('-' never first, '.' only between the others)"
        )


class Contention(StoreError):
    """A write transaction lost a race with another writer (a deadlock or serialisation
    failure the database resolved by aborting it): it is safe to run it again."""


class Refused(StoreError):
    """The database refused a value of the batch (a data error, not an outage): running the
    same batch again fails the same way, so the calls that hold the value must be set apart."""


@dataclass(frozen=True)
class Org:
    """An organisation (tenant): the zone its records are rendered in, its own retention
    (privacy.md; None: the installation's) and its secret (the key of its pseudonyms and of
    the hashes its erasures keep; never shown)."""

    name: str
    tz: str
    created: int
    retention_days: int | None = None
    secret: bytes = field(default=b"", repr=False)

    def retention(self, installation: int) -> int:
        """The days this organisation keeps, given the installation's (0: everything)."""
        return self.retention_days or installation


@dataclass(frozen=True)
class Token:
    """What is known of an API token (never the secret itself)."""

    id: int
    kind: TokenKind
    org: str | None
    created: int
    last_used: int | None
    revoked: int | None
    #: What a read token may do (privacy.md): records, stats, erase.
    scopes: tuple[str, ...] = ("records", "stats")
    #: The response groups whose records it sees (None: all).
    groups: tuple[str, ...] | None = None
    #: Whether the numbers of people reach it as pseudonyms.
    pseudonymize: bool = False


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
    #: Calls the database refused to store (`Refused`), each with the reason: their events
    #: are not stored, and the rest of the batch is.
    refused: tuple[tuple[CallKey, str], ...] = ()
    #: Events (org, id) not stored because their call holds `MAX_CALL_EVENTS` already.
    full: tuple[tuple[str, str], ...] = ()
    #: New events of calls that had settled (query.md, "Completeness").
    after_settling: int = 0
    #: Batches committed in the one transaction that stored this one (itself included): see
    #: `Store.ingest_together`.
    together: int = 1

    def __add__(self, other: IngestSummary) -> IngestSummary:
        return IngestSummary(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.records_changed + other.records_changed,
            self.records_new + other.records_new,
            self.records_deleted + other.records_deleted,
            self.lags + other.lags,
            self.refused + other.refused,
            self.full + other.full,
            self.after_settling + other.after_settling,
            max(self.together, other.together),
        )


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
    #: Set when a purge gave this version a new `seq` (changes.md, version 3 correction): the
    #: `seq` it had when it became visible. The version is not new: whoever had it then (a
    #: webhook subscription, say) has it.
    moved_from: int | None = None
    #: The record's outcome (query.md); None for a tombstone.
    outcome: str | None = None
    #: An erasure took the call (privacy.md): its tombstone says so.
    erased: bool = False

    def json(self) -> bytes:
        """The version as the feed serves it: the detailed record, or its tombstone."""
        if self.record is None:
            return tombstone(self.call, self.version, self.seq, erased=bool(self.erased))
        return detailed(self.call, self.record, self.version, self.seq, self.outcome or "")


@dataclass(frozen=True)
class Erasure:
    """An erasure as the audit trail keeps it (privacy.md): who asked, when, what it selected
    (a number only as its keyed hash) and how many calls went."""

    id: int
    at: int
    by: str
    selector: dict[str, object]
    calls: int


@dataclass(frozen=True)
class FeedRead:
    """One read of an organisation's feed, from one snapshot: the versions after a cursor, the
    highest change number given out, and the highest lost to retention."""

    changes: list[Change]
    latest: int
    purged: int


class FeedWant(NamedTuple):
    """What a read of the change feed asks (see Store.changes): the versions of `org` after
    the cursor `after`, at most `limit`; with `strict`, a cursor lost to retention or never
    given out is an error."""

    org: str
    after: int
    limit: int
    strict: bool = True


@dataclass(frozen=True)
class FeedPage:
    """One answer of the change feed (changes.md): the versions, the cursor to ask after next,
    and whether newer versions exist already."""

    changes: list[Change]
    next: int
    more: bool


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
    #: It had settled (query.md, "Completeness"): an event now is an event after settling.
    settled: bool = False
    #: An erasure took it (privacy.md): its events, late or re-sent, are dropped.
    erased: bool = False


#: What is known of a call not seen before.
NEVER = KnownCall(None, 0, 0, 0)


class CallRow(NamedTuple):
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
    #: Whether it has a `started` event, and an `ended` one (query.md, "Completeness"). A call
    #: whose row is written has just had an event: it has not settled.
    started: bool = False
    ended: bool = False


class RecordRow(NamedTuple):
    """A rendered record as stored, with what filters need beside it (query.md)."""

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
    outcome: str = "unanswered"
    caller_no: str | None = None
    receiving_no: str | None = None
    callee_no: str | None = None
    #: stop - start, microseconds.
    duration: int = 0
    #: calleeAnswered - start, microseconds; None when nobody answered (stats.md).
    answered_after: int | None = None


class Gone(NamedTuple):
    """A stored record to delete: where it is."""

    org: str
    start_ms: int
    call: str


class WriteTx(Protocol):
    """One write transaction of an engine: set-based steps, each over every organisation of a
    batch at once, that `_recompute` composes."""

    def lock_calls(self, keys: Sequence[CallKey]) -> dict[CallKey, KnownCall]:
        """The calls of `keys` seen before, each with what is known of its record; every call
        of `keys` is locked until the transaction ends: writers of one call take turns."""
        ...

    def insert_events(
        self, events: Sequence[Event], new_days: Mapping[CallKey, int]
    ) -> list[Event]:
        """Insert the events not stored before (the first of any repeated); the ones inserted.
        Events of a call seen before go where its other events are; those of a call first seen
        now, in its day `new_days[key]`. None of them is stored under its own call (the caller
        has read those, under the calls' locks); a copy stored under another call is left out,
        and a concurrent writer of the same event is waited for, never doubled."""
        ...

    def call_events(self, keys: Sequence[CallKey]) -> dict[CallKey, list[Event]]:
        """Every stored event of each call (this transaction's included)."""
        ...

    def record_json(self, where: Sequence[Gone]) -> dict[CallKey, tuple[bytes, str | None]]:
        """The stored rendering and outcome of each of these records (those that exist)."""
        ...

    def note_erasure(self, org: str, at: int, by: str, selector: str, calls: int) -> int:
        """Keep an erasure in the organisation's audit trail; its id."""
        ...

    def erase(self, org: str, calls: Sequence[tuple[str, int, int]], now: int) -> None:
        """Delete the events of each call (call, version, seq) of `org`, locked by
        `lock_calls`, and mark its row erased: no record, closed, settled, at that version and
        seq (the seq unchanged for a call without a visible record)."""
        ...

    def take_change_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve `counts[org]` change numbers of each organisation; the first of each.
        Numbers are taken in the order the transactions commit (the reservation holds until
        the end of the transaction)."""
        ...

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[Gone],
        calls: Sequence[CallRow],
        forget: Sequence[CallKey] = (),
        numbered: Mapping[str, int] | None = None,
    ) -> None:
        """Delete the records in `gone`, upsert `records`, upsert `calls` (moving a call's rows
        where its day changed), and delete the rows of the locked calls in `forget`, which
        turned out to have no event of their own.

        A negative change number (a record's `change_seq`, a call's `seq`), -k, stands for the
        k-th of the `numbered[org]` new versions of its organisation: `write` reserves them
        (as `take_change_seqs` does) as late as it can, after the rows are at hand, and stores
        the first reserved + k - 1. So the reservation, which makes other writers of the
        organisation wait until this transaction commits, is held for the last statements
        alone."""
        ...

    def stale_calls(self, last_seen_before: int, limit: int) -> list[tuple[str, str, int, str]]:
        """At most `limit` open calls whose latest event came at or before the given server
        time, each as (org, call, instant, at) of its latest event."""
        ...

    def settle(self, last_seen_before: int) -> int:
        """Note as settled every call that has a record, has ended, and whose latest event came
        at or before the given server time (query.md, "Completeness"); how many."""
        ...

    def records_to_fill(self, limit: int) -> list[tuple[str, str, int]]:
        """Records stored before outcomes were (a schema upgrade), at most `limit`, each as
        (org, call, start_ms)."""
        ...

    def fill(self, rows: Sequence[tuple[str, int, str, str, int, int | None]]) -> None:
        """Store (org, start_ms, call, outcome, duration, answered_after) beside records stored
        before them."""
        ...
