"""Webhook deliveries (spec/webhooks.md): every new version of an organisation's records,
POSTed to each of its subscriptions, signed as Standard Webhooks (v1) say, retried on the
spec's schedule.

One `Deliverer` runs per installation (in the process that leads the duties). Each subscription
has a task of its own with at most PARALLEL attempts in flight, so a slow or dead receiver
delays nobody else. They share one aiohttp session (one TLS context: a client each held about
0.85 MB, 8.5 GB for 10,000 subscriptions), whose pool finds a host's connections by key.
httpx, used before, cost 1.9-2.3 ms of CPU a POST on loopback against aiohttp's 0.23-0.29, and
its pool looked at every connection it held at each request (a third of the deliverer's CPU
with 1,000 subscriptions). The database work is awaited on the store, so the event loop never
blocks on it; what the subscriptions woken by one commit read, and what their rounds write, goes
in one transaction for many (`Together`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import aiohttp
import certifi

from samtal import metrics
from samtal.privacy import Pseudonyms
from samtal.store import (
    Advance,
    AsyncStore,
    Change,
    DeliveryNote,
    FeedPage,
    HookState,
    Org,
    Retry,
    Store,
    Webhook,
)
from samtal.times import US_PER_SECOND, render, retry_after_seconds, zone
from samtal.waits import Together, first_of

log = logging.getLogger(__name__)

#: Subscriptions whose reads, or whose writes, go in one transaction at most (see `Together`).
TOGETHER = 200
#: Seconds to wait for an answer before the attempt counts as failed.
TIMEOUT = 15.0
#: Versions read per round, and attempts in flight at once, per subscription.
BATCH = 100
PARALLEL = 8
#: webhooks.md: "no answer within 15 seconds is a failure", connecting included (httpx's
#: timeout was between two reads: a receiver that sent its answer a byte every 14 s kept it).
#: The pool has no limit: each subscription's are its PARALLEL attempts in flight.
TIMEOUTS = aiohttp.ClientTimeout(total=TIMEOUT)
#: Bytes of an answer's body read, at most, so that its connection goes back to the pool: one
#: whose body is left unread is closed, and every message took a new connection (a tenth of a
#: delivery's CPU on loopback, more with TLS). A longer body, or one still coming after
#: DRAIN_SECONDS, is left, and its connection closed.
DRAIN = 64 * 1024
DRAIN_SECONDS = 1.0
#: A subscription whose attempts have all failed this long is disabled.
FAILING_LIMIT = 5 * 24 * 3600 * US_PER_SECOND
#: Seconds between two listings of the subscriptions, which start the new ones and wake those
#: with something to do now (versions after their cursor, or a retry due) or disabled.
IDLE = 1.0
#: Seconds a subscription with nothing to do waits before looking again when nothing woke it
#: (neither its organisation's commit, which the change watcher signals, nor the listing, which
#: wakes every one with something to do each second: this is only a last resort). It used to look
#: every IDLE seconds: three reads each, so that 1,000 idle subscriptions took 27% of a core in
#: `samtal serve`. Then every 60 s: 10,000 of them on PostgreSQL took 80-90% of a core for 30 s
#: of every minute.
QUIET = 3600.0


def message(change: Change, tz: str, masks: Pseudonyms | None = None) -> bytes:
    """The body of a version's delivery: its type, when it became visible (in the org's zone,
    the record time format), and the detailed record or tombstone (with people's numbers as
    pseudonyms when `masks` is given)."""
    kind = b"cdr.deleted" if change.record is None else b"cdr.changed"
    visible = render(change.changed, zone(tz)).encode()
    data = change.json() if masks is None else masks.record(change.json())
    return b'{"type":"%b","timestamp":"%b","data":%b}' % (kind, visible, data)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of
    `<id>.<timestamp>.<body>` keyed with the secret's bytes (after `whsec_`)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Attempt:
    """How one POST went."""

    outcome: Literal["delivered", "failed", "gone"]
    #: Seconds the receiver asked us to wait (429 or 503 with `Retry-After`).
    retry_after: float | None = None
    reason: str = ""


class Deliverer:
    """Delivers every active subscription's messages until cancelled."""

    def __init__(
        self, store: AsyncStore, *, clock: Callable[[], int], schedule: Sequence[float]
    ) -> None:
        self._store = store
        self._clock = clock
        self._schedule = tuple(schedule)
        # What a wake reads (the subscription, whether a retry is due, the versions after its
        # cursor) and what its round writes, for every subscription woken at about the same
        # time together.
        self._look = Together(self._read_woken, TOGETHER)
        self._keep = Together(self._write_rounds, TOGETHER)

    async def run(self) -> None:
        """Keep one task per active subscription, listing them every IDLE seconds (see
        `_tend`; a commit of its organisation wakes a task at once, the listing is for the
        rest)."""
        tasks: dict[str, asyncio.Task[None]] = {}
        wakes: dict[str, asyncio.Event] = {}
        # The CAs httpx trusted (certifi's), and a proxy from the environment (HTTPS_PROXY,
        # NO_PROXY...), as httpx took. aiohttp looks for one at every request, in a thread (a
        # third of the process's CPU), so it looks only when the environment names one.
        tls = ssl.create_default_context(cafile=certifi.where())
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=tls),
            timeout=TIMEOUTS,
            trust_env=bool(urllib.request.getproxies()),
        )
        try:
            while True:
                try:
                    hooks = await self._store.read(lambda store: store.hooks.states(self._clock()))
                except Exception:
                    # Nobody is woken: every subscription would read the database that
                    # could not answer, every second, until it does.
                    log.exception("cannot list the webhook subscriptions; trying again")
                else:
                    metrics.WEBHOOK_BACKLOG.set(sum(hook.backlog for hook in hooks))
                    self._tend(hooks, tasks, wakes, session)
                await asyncio.sleep(IDLE)
        finally:
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(BaseException):
                    await task
            await self._look.close()
            await self._keep.close()
            await session.close()

    def _tend(
        self,
        hooks: list[HookState],
        tasks: dict[str, asyncio.Task[None]],
        wakes: dict[str, asyncio.Event],
        session: aiohttp.ClientSession,
    ) -> None:
        """After a listing (`hooks`): start a task for each active subscription without one,
        wake one with something to do now (a replay's, too) or that was disabled, wake a
        removed one's to find it gone, and forget a task that has returned (removed, disabled):
        an installation that removes thousands over the months keeps nothing of them. (A
        method of its own, so that no local of `run` holds a finished task.)

        A cursor or backlog that moved wakes nobody: the task moved it, delivering. (Waking
        on any change of the row had each subscription that delivered in the last second
        read three times more, for nothing: 3,000 reads a second when 1,000 organisations'
        calls came in.)"""
        for hook in hooks:
            running = tasks.get(hook.id)
            if hook.active and (running is None or running.done()):
                wake = wakes[hook.id] = asyncio.Event()
                tasks[hook.id] = asyncio.create_task(
                    self._follow(hook, wake, session, idle=not hook.ready)
                )
            elif hook.id in wakes and (hook.ready or not hook.active):
                wakes[hook.id].set()  # a disabled one never started has none
        current = {hook.id: hook for hook in hooks}
        for hook_id, task in list(tasks.items()):
            if task.done() and (hook_id not in current or not current[hook_id].active):
                del tasks[hook_id], wakes[hook_id]
            elif hook_id not in current:
                wakes[hook_id].set()

    async def _follow(
        self, state: HookState, wake: asyncio.Event, session: aiohttp.ClientSession, *, idle: bool
    ) -> None:
        """One subscription: its due retries, then its new versions, until it is disabled or
        removed. With nothing to do it waits for its organisation's next commit, for `wake`
        (set by `run`), or QUIET seconds. One started `idle` (nothing to do, the listing
        said) first waits for `wake`: 10,000 subscriptions reading at once took 20 s of a core
        at every start on PostgreSQL."""
        if idle:
            await wake.wait()
        while True:
            # Both before reading, as the signal is taken: no commit and no wake is missed.
            wake.clear()
            signal = self._store.changed(state.org)
            hook, page, org = await self._look(state.id)
            if hook is None or page is None or org is None:  # removed, or disabled
                return
            try:
                # Whether more is waiting now: then it goes on at once. Otherwise it waits: a
                # commit after the read signals, and a retry falling due is the listing's.
                # (Reading again to find nothing doubled the reads of each wake.)
                busy = await self._retry(session, hook)
                busy = await self._deliver_new(session, hook, page, org) or busy
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: delivering failed; trying again", hook.id)
                busy = False
            if not busy:
                await first_of(signal, wake, timeout=QUIET)

    async def _read_woken(self, hook_ids: list[str]) -> list[_Woken]:
        """For each of `hook_ids`: the subscription (None when removed), with whether a retry is
        due now, and, when it is active, its page of versions after its cursor and its
        organisation."""
        return await self._store.read(partial(_woken, hook_ids=hook_ids, now=self._clock()))

    async def _write_rounds(self, rounds: list[Advance]) -> list[None]:
        await self._store.write(lambda store: store.hooks.advance(rounds))
        return [None] * len(rounds)

    async def _deliver_new(
        self, session: aiohttp.ClientSession, hook: Webhook, page: FeedPage, org: Org
    ) -> bool:
        """Deliver a page of the versions after the subscription's cursor; whether there are
        more after it."""
        if not page.changes:
            return False
        tz = org.tz
        masks = Pseudonyms(org.secret) if hook.pseudonymize else None
        # A version a purge renumbered was sent when it became visible, if that was at or
        # before the cursor: it is not sent again (changes.md, version 3 correction).
        bodies = [
            (change.seq, message(change, tz, masks))
            for change in page.changes
            if change.moved_from is None or change.moved_from > hook.cursor
        ]
        attempts = await self._post_all(session, hook, bodies)
        now = self._clock()
        retries = [
            Retry(hook.id, seq, 1, now + self._delay(1, attempt.retry_after), body)
            for (seq, body), attempt in zip(bodies, attempts, strict=True)
            if attempt.outcome == "failed" and self._schedule
        ]
        given_up = sum(a.outcome == "failed" for a in attempts) - len(retries)
        note = self._judge(hook, attempts, given_up) if attempts else None
        await self._keep(Advance(hook.id, page.next, retries, note))
        return page.more

    async def _retry(self, session: aiohttp.ClientSession, hook: Webhook) -> bool:
        """Try the subscription's due retries again (one batch); whether more may be due."""
        if not hook.retry_due:
            return False
        now = self._clock()
        due = await self._store.read(lambda store: store.hooks.due(hook.id, now, BATCH))
        if not due:
            return False
        attempts = await self._post_all(session, hook, [(r.seq, r.body) for r in due])
        now, given_up = self._clock(), 0
        for retry, attempt in zip(due, attempts, strict=True):
            next_due = None
            if attempt.outcome == "failed":
                if retry.attempt < len(self._schedule):
                    next_due = now + self._delay(retry.attempt + 1, attempt.retry_after)
                else:
                    given_up += 1
                    log.warning("webhook %s: gave up on seq %d", hook.id, retry.seq)
            await self._store.write(partial(_retried, retry=retry, next_due=next_due))
        note = self._judge(hook, attempts, given_up)
        await self._store.write(lambda store: store.hooks.outcome(hook.id, note))
        return len(due) == BATCH

    def _judge(self, hook: Webhook, attempts: list[Attempt], given_up: int) -> DeliveryNote:
        """How a round went, to be kept: success clears the failing streak; a 410 or five days
        of failures disable the subscription."""
        now = self._clock()
        delivered = any(a.outcome == "delivered" for a in attempts)
        gone = any(a.outcome == "gone" for a in attempts)
        failing = not delivered and any(a.outcome != "delivered" for a in attempts)
        too_long = (
            failing and hook.failing_since is not None and now - hook.failing_since >= FAILING_LIMIT
        )
        if gone:
            log.warning("webhook %s: the receiver answered 410 Gone; disabled", hook.id)
        elif too_long:
            log.warning("webhook %s: every attempt failed for five days; disabled", hook.id)
        return DeliveryNote(now, delivered, given_up, gone or too_long)

    async def _post_all(
        self, session: aiohttp.ClientSession, hook: Webhook, bodies: list[tuple[int, bytes]]
    ) -> list[Attempt]:
        gate = asyncio.Semaphore(PARALLEL)

        async def one(seq: int, body: bytes) -> Attempt:
            async with gate:
                return await self._post(session, hook, seq, body)

        attempts = list(await asyncio.gather(*(one(seq, body) for seq, body in bodies)))
        for attempt in attempts:
            metrics.WEBHOOK_DELIVERIES.labels(attempt.outcome).inc()
        return attempts

    async def _post(
        self, session: aiohttp.ClientSession, hook: Webhook, seq: int, body: bytes
    ) -> Attempt:
        """One signed POST. The timestamp is the wall clock: receivers check it against theirs."""
        message_id = f"{hook.id}-{seq}"
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(hook.secret, message_id, timestamp, body),
        }
        try:
            # Only the status and headers count, and at most DRAIN bytes of the body are read,
            # so a receiver that answers with an endless body costs nothing but the connection.
            # A redirect is an answer like any other (not 2xx: failed), as it was with httpx.
            async with session.post(
                hook.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status, retry_header = response.status, response.headers.get("retry-after")
                await _drain(response)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Attempt("failed", reason=f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Attempt("delivered")
        if status == 410:
            return Attempt("gone")
        retry_after = (
            retry_after_seconds(retry_header, now=time.time()) if status in (429, 503) else None
        )
        return Attempt("failed", retry_after, f"HTTP {status}")

    def _delay(self, attempt: int, retry_after: float | None) -> int:
        """Microseconds before try number `attempt + 1`: the schedule's delay with +-10%
        jitter, at least what the receiver asked for."""
        seconds = self._schedule[attempt - 1] * random.uniform(0.9, 1.1)
        if retry_after is not None:
            seconds = max(seconds, retry_after)
        return int(seconds * US_PER_SECOND)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what is left of a short body (at most DRAIN bytes, for DRAIN_SECONDS), which lets
    the connection be kept. The answer is already known: a body that fails, runs long or
    trickles only loses the connection."""
    read = 0
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in response.content.iter_any():
                read += len(chunk)
                if read > DRAIN:
                    return


class _Woken(NamedTuple):
    """What a subscription's wake reads (see `Deliverer._read_woken`)."""

    #: The subscription, with whether a retry is due (None: removed).
    hook: Webhook | None
    #: Its page of versions after its cursor, and its organisation (None: not active).
    page: FeedPage | None = None
    org: Org | None = None


def _woken(store: Store, *, hook_ids: list[str], now: int) -> list[_Woken]:
    """See `Deliverer._read_woken`: a read of the subscriptions, one of their organisations
    not fresh in the cache, and one of the pages, for all of `hook_ids`."""
    hooks = store.hooks.get_many(hook_ids, due_at=now)
    active = [hook for hook in hooks.values() if hook.active]
    orgs = store.orgs_named(sorted({hook.org for hook in active}))
    pages = store.changes_of([(hook.org, hook.cursor) for hook in active], limit=BATCH)
    found = {
        hook.id: _Woken(hook, page, orgs.get(hook.org))
        for hook, page in zip(active, pages, strict=True)
    }
    return [found.get(hook_id) or _Woken(hooks.get(hook_id)) for hook_id in hook_ids]


def _retried(store: Store, *, retry: Retry, next_due: int | None) -> None:
    store.hooks.retried(retry, next_due=next_due)
