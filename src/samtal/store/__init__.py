"""Storage: one `Store` over several engines, chosen by the database URL, and its async face.

`Store` is what commands and threads use: blocking calls, each its own transaction. What is
the same on every engine lives here and in `_sql` (the statements) and `_recompute` (the record
workflow); an engine module keeps only what is its own. `AsyncStore` (in `_async`) is what code
on an event loop uses: it owns the threads the database work runs on. Nothing outside this
package starts a thread or an executor for database work.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson

from samtal.aggregate import path_of_call
from samtal.errors import (
    CursorExpired,
    NotFound,
    SamtalError,
    StoreError,
    UsageError,
    quoted_url,
    shorten,
)
from samtal.events import Event
from samtal.filters import Filters
from samtal.privacy import DEFAULT_SCOPES, PERSON_FILTERS, Pseudonyms, number_hash
from samtal.records import csv_row, detailed_csv, path_json
from samtal.records import detailed as render_detailed
from samtal.stats.figures import Counting, Tally
from samtal.store import _recompute
from samtal.store._async import AsyncStore
from samtal.store._base import (
    IDLE_CLOSE_ID,
    CallKey,
    Change,
    Contention,
    Erasure,
    FeedPage,
    FeedRead,
    FeedWant,
    IngestSummary,
    Org,
    Refused,
    Token,
    WriteTx,
    check_org_name,
)
from samtal.store._recompute import MAX_CALL_EVENTS
from samtal.store._sql import SqlEngine
from samtal.store._webhooks import (
    Advance,
    DeliveryNote,
    HookState,
    Retry,
    Webhook,
    WebhookTable,
)
from samtal.times import US_PER_SECOND, local_day, named_zone, zone
from samtal.tokens import TokenKind, digest, new_secret

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Times a write transaction that lost a race (a deadlock, a serialisation failure) is tried.
ATTEMPTS = 5
US_PER_MINUTE = 60 * US_PER_SECOND
#: Seconds an organisation's row, once read, is trusted before it is read again: a change of
#: Idle calls closed in one transaction: 5,000 took SQLite's writer about 0.35 s (100,000 in
#: one took 6.8 s).
IDLE_CLOSE_AT_ONCE = 5_000
#: its settings reaches every process within this. (Its zone never changes.)
ORG_TTL = 5.0
#: The `meta` key that says every record has its outcome (`Store.fill` has nothing left to do).
FILLED = "outcomes_filled"
#: Characters of a webhook URL at most (what browsers and proxies commonly take).
MAX_WEBHOOK_URL = 2048


class Store:
    """Call data and operator data of every organisation, on one engine."""

    def __init__(self, engine: SqlEngine) -> None:
        self.engine = engine
        #: Webhook subscriptions and their pending retries (what the deliverer works on).
        self.hooks = WebhookTable(engine)
        self._orgs: dict[str, tuple[Org, float]] = {}
        self._orgs_lock = threading.Lock()
        self.fill()  # records from before an upgrade get their outcome, once

    @property
    def writers(self) -> int:
        """Write transactions the engine takes at once."""
        return self.engine.writers

    # -- organisations and tokens (operator side) ------------------------------------------
    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation; UsageError for a bad name or zone, Conflict when it exists."""
        check_org_name(name)
        named_zone(tz)  # UnknownZone for a name the IANA database does not know
        return self._remember(self.engine.add_org(name, tz, now=now))

    def add_orgs(self, rows: Sequence[tuple[str, str]], *, now: int) -> list[str]:
        """Create the organisations (name, zone) of `rows` that do not exist yet, all in one
        transaction; the names made. UsageError, and nothing made, when a name or zone is not
        valid (checked first, every one)."""
        for name, tz in rows:
            check_org_name(name)
            named_zone(tz)
        return self.engine.add_orgs(rows, now=now)

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        return [self._remember(org) for org in self.engine.orgs()]

    def set_retention(self, name: str, days: int | None) -> Org:
        """Give an organisation its own retention in days (None: the installation's again);
        NotFound. Every process sees it within ORG_TTL seconds."""
        if days is not None and days < 1:
            raise UsageError(f"a retention of {days} days keeps nothing: give 1 or more")
        return self._remember(self.engine.set_retention(name, days))

    def org(self, name: str) -> Org:
        """One organisation, read again at most every ORG_TTL seconds; NotFound when there is
        none of that name (never a silent default)."""
        found = self.orgs_named([name]).get(name)
        if found is None:
            raise NotFound(f"unknown organisation {shorten(name)}")
        return found

    def cached_org(self, name: str) -> Org | None:
        """The organisation as last read, while that is fresh; None when it must be read."""
        hit = self._orgs.get(name)
        return hit[0] if hit is not None and time.monotonic() - hit[1] < ORG_TTL else None

    def orgs_named(self, names: Sequence[str]) -> dict[str, Org]:
        """The organisations of `names` that exist, by name: one query for those not fresh in
        the cache, whatever their number."""
        found: dict[str, Org] = {}
        missing = []
        for name in names:
            org = self.cached_org(name)
            if org is None:
                missing.append(name)
            else:
                found[name] = org
        if missing:
            for org in self.engine.orgs_named(missing):
                found[org.name] = self._remember(org)
        return found

    def zones(self, names: Sequence[str]) -> dict[str, ZoneInfo]:
        """The zone of each of these organisations; NotFound when one does not exist."""
        found = self.orgs_named(names)
        missing = [name for name in names if name not in found]
        if missing:
            raise NotFound(f"unknown organisation {shorten(missing[0])}")
        return {name: zone(org.tz) for name, org in found.items()}

    def _remember(self, org: Org) -> Org:
        with self._orgs_lock:
            self._orgs[org.name] = (org, time.monotonic())
        return org

    def create_token(
        self,
        kind: TokenKind,
        *,
        org: str | None,
        now: int,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        groups: tuple[str, ...] | None = None,
        pseudonymize: bool = False,
    ) -> tuple[Token, str]:
        """A new token and its secret (shown once); only its hash is kept. A read token may
        be narrowed (privacy.md): its scopes, its response groups, pseudonyms for numbers."""
        ((made, secret),) = self.create_tokens(
            kind, orgs=[org], now=now, scopes=scopes, groups=groups, pseudonymize=pseudonymize
        )
        return made, secret

    def create_tokens(
        self,
        kind: TokenKind,
        *,
        orgs: Sequence[str | None],
        now: int,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        groups: tuple[str, ...] | None = None,
        pseudonymize: bool = False,
    ) -> list[tuple[Token, str]]:
        """A new token for each of `orgs` (None for an ingest token), all alike, in one
        transaction, with their secrets, in that order; NotFound, and none made, when an
        organisation does not exist."""
        if any((kind == "read") != (org is not None) for org in orgs):
            raise ValueError("a read token belongs to one organisation; an ingest token to none")
        secrets_ = [new_secret(kind) for _ in orgs]
        made = self.engine.add_tokens(
            kind,
            owners=[(org, digest(secret)) for org, secret in zip(orgs, secrets_, strict=True)],
            now=now,
            scopes=scopes if kind == "read" else (),
            groups=groups,
            pseudonymize=pseudonymize,
        )
        return list(zip(made, secrets_, strict=True))

    def tokens(self) -> list[Token]:
        """Every token, oldest first."""
        return self.engine.tokens()

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token; NotFound when there is none with that id."""
        if not 0 < token_id < 2**63:  # no row has it; the database takes no larger number
            raise NotFound(f"no token with id {token_id}: `samtal token list` shows them")
        return self.engine.revoke_token(token_id, now=now)

    def token_for(self, secret: str) -> Token | None:
        """The token whose secret this is, or None."""
        return self.tokens_for([secret])[0]

    def live_token_hashes(self) -> frozenset[bytes]:
        """The hash (`samtal.tokens.digest`) of every token not revoked."""
        return self.engine.live_token_hashes()

    def tokens_for(self, given: Sequence[str]) -> list[Token | None]:
        """The token of each of these secrets (None: no such token), in one read (see
        AsyncStore.token_for). At most a few hundred at once: one statement."""
        hashes = [digest(secret) for secret in given]
        found = self.engine.tokens_by_hash(sorted(set(hashes))) if hashes else {}
        return [found.get(hashed) for hashed in hashes]

    def touch_tokens(self, used: Mapping[int, int]) -> None:
        """Note when each token of `used` (id: when, µs) was last used, in one transaction; a
        token's `last_used` never moves back."""
        if used:
            self.engine.touch_tokens(used)

    def installation_id(self) -> str:
        """A random id of this installation (its database), made once: what keeps the keys of
        two installations apart where they share something, such as a Redis."""
        rows = self.engine.operator_sql(
            [
                (
                    "INSERT INTO meta (key, value) VALUES ('installation', ?) "
                    "ON CONFLICT (key) DO NOTHING",
                    (secrets.token_hex(8),),
                ),
                ("SELECT value FROM meta WHERE key = 'installation'", ()),
            ],
            write=True,
        )
        return str(rows[0][0])

    # -- webhook subscriptions (operator side) ------------------------------------------------
    def add_webhook(
        self, org: str, url: str, *, now: int, pseudonymize: bool = False
    ) -> tuple[Webhook, str]:
        """Subscribe `url` to `org`'s new versions; the subscription and its secret (shown
        once). UsageError for a URL that is not http(s), NotFound for an unknown org.
        `pseudonymize`: people's numbers go out as the organisation's pseudonyms."""
        try:
            parts = urlsplit(url)  # ValueError for a broken [IPv6] host
        except ValueError as exc:
            raise UsageError(f"{quoted_url(url)} is not a URL: {exc}") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise UsageError(f"{quoted_url(url)} is not an https:// (or http://) URL")
        try:
            port = parts.port  # a number from 0 to 65535, or ValueError
        except ValueError:
            port = 0
        if port == 0:
            raise UsageError(f"{quoted_url(url)} has no valid port (a number from 1 to 65535)")
        blank = next((c for c in url if c <= " " or c == "\x7f"), None)
        if blank is not None:
            raise UsageError(
                f"{quoted_url(url)} holds a space or control character (U+{ord(blank):04X}): "
                "no request could be sent there (write a space in a path as %20)"
            )
        if len(url) > MAX_WEBHOOK_URL:
            raise UsageError(
                f"{quoted_url(url)} is {len(url):,} characters long: a webhook URL has at most "
                f"{MAX_WEBHOOK_URL:,}"
            )
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        hook = self.hooks.add(
            "wh_" + secrets.token_hex(8), org, url, secret, now=now, pseudonymize=pseudonymize
        )
        if hook is None:
            raise NotFound(f"unknown organisation {org!r}: add it with `samtal org add`")
        return hook, secret

    def webhook(self, hook_id: str) -> Webhook:
        """One subscription, its backlog not counted (0: `hooks.all` counts it); NotFound
        when there is none with that id."""
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise NotFound(f"no webhook {hook_id!r}: `samtal webhook list` shows them")
        return hook

    def remove_webhook(self, hook_id: str) -> None:
        """Remove a subscription and what it had waiting; NotFound when there is none."""
        if not self.hooks.remove(hook_id):
            raise NotFound(f"no webhook {hook_id!r}: `samtal webhook list` shows them")

    def replay_webhook(self, hook_id: str, *, after: int) -> Webhook:
        """Deliver again every version after change number `after`, resuming the subscription
        if it was disabled."""
        hook = self.webhook(hook_id)
        latest = self.latest_change(hook.org)
        if not 0 <= after <= latest:
            # A cursor past the organisation's latest seq would skip, unsaid, every version up
            # to it.
            raise UsageError(
                f"`--after` must be from 0 to {latest}, the latest seq of {hook.org}, not {after}"
            )
        self.hooks.replay(hook.id, after)
        return self.webhook(hook_id)

    # -- call data --------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event], *, now: int) -> IngestSummary:
        """Store events of known organisations, idempotently, and recompute the record of
        every call that received a new event, all in one durable transaction.

        Should the database refuse a value (`Refused`), the batch is split by call until the
        calls that hold it are set apart: they are reported in `refused`, and every other call
        is stored.
        """
        zones = self.zones(sorted({event.org for event in events}))
        if self.engine.partitioned:
            self._prepare(events, zones, now)
        return self._ingest_apart(events, zones, now)

    def ingest_together(
        self, batches: Sequence[tuple[Sequence[Event], int]]
    ) -> list[IngestSummary]:
        """`ingest` of several callers' batches (each with its `now`), one after another in one
        transaction: each gets the summary it would have had alone, and all are durable at
        one commit. Should anything fail, nothing is stored (and `AsyncStore` then stores each
        batch alone, so that one batch's trouble stays its own).

        What it saves is the commit, and on SQLite more: its log takes whole pages, so a page
        that every batch changes (an organisation's latest records, say) is written once.
        """
        zones = self.zones(sorted({event.org for events, _ in batches for event in events}))
        if self.engine.partitioned:
            for events, now in batches:
                self._prepare(events, zones, now)
        summaries = self._write(
            lambda tx: [
                _recompute.ingest(tx, events, zones=zones, now=now) for events, now in batches
            ]
        )
        return [replace(summary, together=len(batches)) for summary in summaries]

    def _ingest_apart(
        self, events: Sequence[Event], zones: Mapping[str, ZoneInfo], now: int
    ) -> IngestSummary:
        try:
            return self._write(lambda tx: _recompute.ingest(tx, events, zones=zones, now=now))
        except Refused as exc:
            keys = sorted({(event.org, event.call) for event in events})
            if len(keys) == 1:
                log.warning("the database refused call %r of %r: %s", keys[0][1], keys[0][0], exc)
                return IngestSummary(0, 0, 0, refused=((keys[0], str(exc)),))
            half = set(keys[: len(keys) // 2])
            first = [event for event in events if (event.org, event.call) in half]
            rest = [event for event in events if (event.org, event.call) not in half]
            return self._ingest_apart(first, zones, now) + self._ingest_apart(rest, zones, now)

    def records(
        self,
        *,
        org: str,
        start: int,
        end: int,
        detailed: bool = False,
        filters: Filters | None = None,
        pseudonymize: bool = False,
    ) -> Iterator[list[bytes]]:
        """Pages of the rendered records of `org` whose start is in [start, end), in order;
        `detailed` adds `id`, `version` and `seq` (changes.md). No page holds a snapshot or a
        connection while the one before it is consumed. `pseudonymize`: the numbers of people
        as the organisation's pseudonyms, in the records and in the filters (privacy.md)."""
        if pseudonymize:
            yield from self._pseudonymized(org, start, end, filters, detailed=detailed)
            return
        if not detailed:
            for rows in self.engine.pages("json", org, start, end, filters):
                yield [row[2] for row in rows]
            return
        columns = "json, version, change_seq, outcome"
        for rows in self.engine.pages(columns, org, start, end, filters):
            yield [
                render_detailed(call, json, version, seq, outcome)
                for _, call, json, version, seq, outcome in rows
            ]

    def csv_records(
        self,
        *,
        org: str,
        start: int,
        end: int,
        detailed: bool = False,
        filters: Filters | None = None,
        pseudonymize: bool = False,
    ) -> Iterator[list[bytes]]:
        """Pages of the CSV rows of the records of `org` whose start is in [start, end), in
        order (changes.md, "Formats"); `detailed` adds `id` first and `version`, `seq` last.
        Rows are rendered when a record is made; a record stored before that is converted.
        `pseudonymize`: as `records`, the rows made from the pseudonymized JSON."""
        if pseudonymize:
            for masked in self._pseudonymized(org, start, end, filters, detailed=detailed):
                yield [csv_row(orjson.loads(record).values()) for record in masked]
            return
        # The JSON only where no CSV row was stored: the rest is not read twice.
        columns = "csv, CASE WHEN csv IS NULL THEN json END, version, change_seq, outcome"
        for page in self.engine.pages(columns, org, start, end, filters):
            rows = [
                row if row is not None else csv_row(orjson.loads(json or b"{}").values())
                for _, _, row, json, _, _, _ in page
            ]
            if detailed:
                rows = [
                    detailed_csv(call, row, version, seq, outcome)
                    for row, (_, call, _, _, version, seq, outcome) in zip(rows, page, strict=True)
                ]
            yield rows

    def _pseudonymized(
        self, org: str, start: int, end: int, filters: Filters | None, *, detailed: bool
    ) -> Iterator[list[bytes]]:
        masks = Pseudonyms(self.org(org).secret)
        if filters:
            filters = self._unmasked(org, start, end, filters, masks)
        for page in self.records(org=org, start=start, end=end, detailed=detailed, filters=filters):
            yield masks.records(page)

    def _unmasked(
        self, org: str, start: int, end: int, filters: Filters, masks: Pseudonyms
    ) -> Filters:
        """A pseudonymizing reader's filters in terms of the stored numbers of the period."""
        if not any(name in filters.numbers for name in PERSON_FILTERS):
            return filters
        return masks.unmask(filters, self.engine.person_numbers(org, start, end))

    def tallies(
        self,
        *,
        org: str,
        start: int,
        end: int,
        counting: Counting,
        filters: Filters | None = None,
        pseudonymize: bool = False,
    ) -> list[Tally]:
        """The tallies (stats.figures) of the records of `org` in [start, end) that match
        `filters`, summed where they are stored, from the columns kept beside each record.
        `pseudonymize`: the filters name people by their pseudonyms."""
        if pseudonymize and filters:
            filters = self._unmasked(org, start, end, filters, Pseudonyms(self.org(org).secret))
        return [
            Tally(row[0], row[1], row[2], row[3], tuple(row[4:]))
            for row in self.engine.tallies(
                org, start, end, filters,
                granule=counting.granule, threshold=counting.threshold, short=counting.short,
            )
        ]  # fmt: skip

    def call(self, *, org: str, call: str, pseudonymize: bool = False) -> bytes | None:
        """`org`'s call `call` as GET /cdr/calls/{id} serves it (query.md): its detailed record
        with its `path`; None when it has no record (in progress, never started, gone, or no
        such call). `pseudonymize`: every number of a person in it as a pseudonym."""
        found = self.engine.one_call(org, call)
        if found is None:
            return None
        (json, version, seq, outcome), events = found
        path = path_of_call(events)
        if path is None:  # the record is a step behind its events: a version on its way
            return None
        rendered = render_detailed(call, json, version, seq, outcome)
        found_org = self.org(org)
        walked = path_json(path, zone(found_org.tz))
        if pseudonymize:
            masks = Pseudonyms(found_org.secret)
            rendered = masks.record(rendered)
            walked = orjson.dumps(masks.path(orjson.loads(walked)))
        return rendered[:-1] + b',"path":' + walked + b"}"

    def erase(
        self,
        org: str,
        *,
        by: str,
        now: int,
        calls: Sequence[str] | None = None,
        number: str | None = None,
        period: tuple[int, int] | None = None,
        shown: tuple[str | None, str | None] = (None, None),
    ) -> Erasure:
        """Erase `org`'s calls (privacy.md): those named, or every one in which `number`
        appears in any event (that started in `period`, when given; `shown` is the period as
        asked, kept in the selector). With `number`, `calls` may be what `calls_with_number`
        found before (on a reader: the scan holds up no writer). One transaction; the audit
        trail keeps the number only as its keyed hash. NotFound for an unknown organisation."""
        found = self.org(org)
        selector: dict[str, object]
        if number is not None:
            chosen = (
                list(calls) if calls is not None else self.calls_with_number(org, number, period)
            )
            selector = {"number": number_hash(found.secret, number), "from": shown[0],
                        "to": shown[1]}  # fmt: skip
        else:
            chosen = list(dict.fromkeys(calls or ()))
            selector = {"calls": chosen}
        kept = orjson.dumps(selector).decode()
        erasure_id, count = self._write(
            lambda tx: _recompute.erase(tx, org, chosen, now=now, by=by, selector=kept)
        )
        return Erasure(erasure_id, now, by, selector, count)

    def calls_with_number(
        self, org: str, number: str, period: tuple[int, int] | None = None
    ) -> list[str]:
        """The calls of `org` in which `number` appears in any event (`number`, `dialed` or
        `target`), those that started in `period` when given."""
        return self.engine.calls_with_number(org, number, period)

    def erasures(self, org: str) -> list[Erasure]:
        """`org`'s erasures, newest first (the audit trail)."""
        return [
            Erasure(erasure_id, at, by, orjson.loads(selector), calls)
            for erasure_id, at, by, selector, calls in self.engine.erasures(org)
        ]

    def changes(self, *, org: str, after: int, limit: int, strict: bool = True) -> FeedPage:
        """The change feed of `org` after the cursor `after`, at most `limit` versions
        (changes.md); CursorExpired when versions after it were purged, or it was never given
        out (unless not `strict`: then what is left is read on)."""
        found = self.changes_many([FeedWant(org, after, limit, strict)])[0]
        if isinstance(found, SamtalError):
            raise found
        return found

    def changes_of(self, wants: Sequence[tuple[str, int]], *, limit: int) -> list[FeedPage]:
        """The change feeds of many organisations at once, one page after each (organisation,
        cursor) of `wants`, from one snapshot, not strict (what is left after a purged cursor
        is read on): the webhook deliverer's read for every subscription woken by a commit. An
        organisation that does not exist has an empty page."""
        found = self.changes_many(
            [FeedWant(org, after, limit, strict=False) for org, after in wants]
        )
        return [
            FeedPage([], after, False) if isinstance(page, SamtalError) else page
            for (_, after), page in zip(wants, found, strict=True)
        ]

    def changes_many(self, wants: Sequence[FeedWant]) -> list[FeedPage | SamtalError]:
        """`changes` for each of `wants`, from one snapshot: each its page, or the error that
        `changes` would raise for it alone (NotFound, CursorExpired). The held feed requests
        that one commit wakes read together (see AsyncStore.changes)."""
        reads = self.engine.feeds([(want.org, want.after, want.limit + 1) for want in wants])
        pages: list[FeedPage | SamtalError] = []
        for want, feed in zip(wants, reads, strict=True):
            try:
                if feed is None:
                    raise NotFound(f"unknown organisation {want.org!r}")
                if want.strict:
                    _check_cursor(want.after, feed)
            except SamtalError as exc:
                pages.append(exc)
            else:
                pages.append(_page(feed, want.after, want.limit))
        return pages

    def complete_through(self, org: str, *, now: int, settle: int) -> int:
        """`org`'s completeness watermark (query.md): the earlier of the earliest start among
        its calls that have not settled and `now` minus the settle time (microseconds)."""
        return self.complete_through_many([(org, now - settle)])[0]

    def complete_through_many(self, wants: Sequence[tuple[str, int]]) -> list[int]:
        """`complete_through` of each (organisation, `now` minus the settle time) of `wants`,
        from one snapshot (see AsyncStore.complete_through)."""
        earliest = self.engine.earliest_unsettled([org for org, _ in wants])
        return [
            settled if first is None else min(first, settled)
            for (_, settled), first in zip(wants, earliest, strict=True)
        ]

    def latest_change(self, org: str) -> int:
        """The highest change number `org` has given out (0 before any)."""
        return self.engine.latest_change(org)

    def _prepare(self, events: Sequence[Event], zones: Mapping[str, ZoneInfo], now: int) -> None:
        """Let the engine make ready, outside the write transaction, for every day a call of
        `events` may take (a call's day is the local date of one of its events)."""
        # A batch has few distinct minutes, and a minute lies in one local date wherever the
        # offset is whole minutes (an engine with partitions keeps a default one for whatever
        # falls outside).
        minutes = {(event.org, event.instant // US_PER_MINUTE) for event in events}
        days = {local_day(minute * US_PER_MINUTE, zones[org]) for org, minute in minutes}
        if days:
            self.engine.prepare_days(days, today=now // (86_400 * US_PER_SECOND))

    def drop_days(self, before: int) -> int:
        """Remove the calls of every organisation whose day (the local date of their start)
        is before `before` (days since 1970-01-01); the number of days dropped."""
        return self.engine.drop_days(before)

    def settle(self, *, now: int, settle: int) -> int:
        """Note as settled the calls with a record and an `ended` that have had no event for
        `settle` microseconds (query.md, "Completeness"); how many."""
        return self._write(lambda tx: tx.settle(now - settle))

    def fill(self) -> int:
        """Work out the outcome of records stored before samtal kept outcomes (a schema
        upgrade), in batches, each its own transaction; how many."""
        if self.engine.schema_version < self.engine.outcomes_from:
            return 0  # an engine opened on an older schema on purpose (tests of upgrades)
        if self.engine.meta(FILLED) is not None:
            return 0  # one read, so that opening a store never waits for the write lock
        filled = 0
        while done := self._write(lambda tx: _recompute.fill(tx)):
            filled += done
        self.engine.set_meta(FILLED, "1")
        if filled:
            log.info("filled in the outcome of %d record(s) stored before outcomes were", filled)
        return filled

    def close_idle_calls(
        self,
        *,
        now: int,
        idle: int,
        at_most: int = IDLE_CLOSE_AT_ONCE,
        between: Callable[[], None] | None = None,
    ) -> int:
        """Append an `ended` to every call idle for `idle` microseconds (cdr.md); how many.
        At most `at_most` calls a transaction, so that a crowd of them gone idle at once holds
        the writer no longer than a batch does (`between` is called between them); the next
        share is taken while the last one closed every call it picked."""
        zones = _Zones(self)
        closed = 0
        while True:
            done = self._write(
                lambda tx: _recompute.close_idle_calls(
                    tx, zones=zones, now=now, idle=idle, at_most=at_most
                )
            )
            closed += done
            if done < at_most:
                return closed
            if between is not None:
                between()

    def expired(self, cutoffs: Mapping[str, int]) -> list[str]:
        """The organisations of `cutoffs` that have calls started before their cutoff (what
        `purge` would remove), found in one read."""
        return self.engine.expired(cutoffs)

    def purge(
        self,
        *,
        org: str,
        before: int,
        at_most: int | None = None,
        between: Callable[[], None] | None = None,
    ) -> int:
        """Remove whole calls of `org` that started before `before`; the number removed. At
        most `at_most` (default: the engine's share) a transaction, `between` called between
        them, the lowest change numbers first."""
        at_most = at_most or self.engine.purge_share
        purged = 0
        while True:
            done = self.engine.purge(org=org, before=before, at_most=at_most)
            purged += done
            if done < at_most:
                return purged
            if between is not None:
                between()

    def watch(self, stop: threading.Event, changed: Callable[[str | None], None]) -> None:
        """Call `changed(org)` soon after any process commits new versions of `org`'s records
        (None: some organisation), until `stop` is set. Blocks: run it on a thread."""
        self.engine.watch(stop, changed)

    def tune(self) -> None:
        """Keep the database's planner informed (a duty of the server)."""
        self.engine.tune()

    def ping(self) -> None:
        """Read something: StoreError (or the driver's error) when the database cannot answer."""
        self.engine.schema_version  # noqa: B018

    def lead_duties(self) -> bool:
        """Whether this process runs the background duties (one process per installation)."""
        return self.engine.lead_duties()

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.close()

    def _write(self, work: Callable[[WriteTx], T]) -> T:
        """Run `work` in a write transaction, again when it lost a race with another writer."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.engine.transaction() as tx:
                    return work(tx)
            except Contention as exc:
                if attempt == ATTEMPTS:
                    raise
                log.info("a write lost a race (%s); trying again (%d)", exc, attempt)
        raise AssertionError("unreachable")


class _Zones(Mapping[str, ZoneInfo]):
    """The zone of whichever organisation is asked for, looked up when asked (idle calls may
    be of any organisation)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getitem__(self, name: str) -> ZoneInfo:
        return zone(self._store.org(name).tz)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _page(feed: FeedRead, after: int, limit: int) -> FeedPage:
    """The page of `feed` (read with one version more than `limit`) after the cursor `after`."""
    page = feed.changes[:limit]
    return FeedPage(page, page[-1].seq if page else after, len(feed.changes) > limit)


def _check_cursor(after: int, feed: FeedRead) -> None:
    """CursorExpired unless the feed can go on exactly from `after` (changes.md, Retention)."""
    if after > feed.latest:
        raise CursorExpired(
            f"the cursor after={after} was never given out (the latest is {feed.latest}): "
            "start again from after=0"
        )
    if 0 < after < feed.purged:
        raise CursorExpired(
            f"versions after {after} were lost to retention (purged up to {feed.purged}): "
            "start again from after=0, upserting"
        )


def open_store(url: str, *, reads: bool = True, create: bool = True) -> Store:
    """The store at `url`: `sqlite:///relative.db`, `sqlite:////absolute.db`, or
    `postgresql://user@host:port/database`. The engine is imported only when used.
    `reads=False`: the process mostly writes (an import), and an engine that takes several
    writers gives them more of its connections. `create=False`: a SQLite file that does not
    exist is an error rather than a new database, and so is a PostgreSQL database without
    samtal's tables (a database itself is never made)."""
    if url.startswith("sqlite:"):
        from samtal.store.sqlite import SqliteEngine

        return Store(SqliteEngine(url, create=create))
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from samtal.store.postgres import PostgresEngine
        except ImportError as exc:
            raise StoreError("PostgreSQL needs psycopg: pip install 'samtal[postgres]'") from exc
        return Store(PostgresEngine(url, reads=reads, create=create))
    raise StoreError(
        f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db"
    )


__all__ = [
    "IDLE_CLOSE_ID",
    "MAX_CALL_EVENTS",
    "Advance",
    "AsyncStore",
    "CallKey",
    "Change",
    "DeliveryNote",
    "Erasure",
    "FeedPage",
    "FeedWant",
    "HookState",
    "IngestSummary",
    "Org",
    "Retry",
    "Store",
    "Token",
    "Webhook",
    "check_org_name",
    "open_store",
]
