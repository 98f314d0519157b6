"""Webhook deliveries end to end (spec/webhooks.md): a real samtal server delivering to a real
receiver on loopback, which checks every signature with the `standardwebhooks` package (code we
did not write). On both engines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pytest
from click.testing import CliRunner
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook as Verifier

from samtal.api import create_app
from samtal.cli import main
from samtal.clock import system_clock
from samtal.metrics import render
from samtal.outbound.webhooks import DRAIN_SECONDS, IDLE, PARALLEL, QUIET, Deliverer
from samtal.privacy import Pseudonyms
from samtal.settings import Settings
from samtal.store import (
    Advance,
    AsyncStore,
    DeliveryNote,
    HookState,
    Retry,
    Store,
    open_store,
)
from samtal.times import US_PER_SECOND
from tests.helpers import PRODUCT, T0, disappearing, events_of
from tests.helpers.servers import Server, metric_values

# Serves, receives and retries webhooks on real servers.
pytestmark = pytest.mark.slow

T = TypeVar("T")


@dataclass
class Receiver:
    """A webhook endpoint: verifies each delivery, and answers as `answer` says for the n-th
    attempt at a message id."""

    secret: str = ""
    answer: Callable[[str, int], int] = lambda _id, _n: 204
    attempts: dict[str, int] = field(default_factory=dict)
    verified: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Headers of every answer (a `Retry-After`, say).
    headers: dict[str, str] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            message_id = request.headers["webhook-id"]
            with self.lock:
                n = self.attempts[message_id] = self.attempts.get(message_id, 0) + 1
            status = self.answer(message_id, n)
            if status < 300:
                # Raises (and so answers 500) when the signature does not verify.
                payload = Verifier(self.secret).verify(body, dict(request.headers))
                with self.lock:
                    self.verified.append(payload)
                    self.ids.append(message_id)
            return Response(status_code=status, headers=self.headers)

        return app


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass
class Setup:
    store: Store
    receiver: Receiver
    hook_id: str
    url: str


@pytest.fixture
def setup(store_url: str) -> Iterator[Setup]:
    receiver = Receiver()
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    settings = Settings(
        database_url=store_url,
        retention_days=0,
        duty_interval_seconds=0.2,
        webhook_retry_seconds="0.2,0.2,0.2",
    )
    with Server(receiver.app()) as receiving:
        hook, secret = store.add_webhook("acme", receiving.url + "/hook", now=system_clock())
        receiver.secret = secret
        with Server(create_app(settings, store=store)):
            yield Setup(store, receiver, hook.id, store_url)
    store.close()


def test_every_version_and_tombstone_is_delivered_signed(setup: Setup) -> None:
    store, receiver = setup.store, setup.receiver
    before = metric_values(render().decode())
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3)
    assert {m["type"] for m in receiver.verified} == {"cdr.changed"}
    sent = sorted(receiver.verified, key=lambda m: m["data"]["seq"])
    feed = store.changes(org="acme", after=0, limit=10).changes
    assert [m["data"] for m in sent] == [orjson.loads(c.json()) for c in feed]
    assert sorted(receiver.ids) == sorted(f"{setup.hook_id}-{c.seq}" for c in feed)
    assert all(m["timestamp"].endswith("+01:00") for m in sent)  # the org's zone
    events, late = disappearing()
    store.ingest(events, now=system_clock())
    store.ingest([late], now=system_clock())
    wait_for(lambda: any(m["type"] == "cdr.deleted" for m in receiver.verified))
    deleted = next(m for m in receiver.verified if m["type"] == "cdr.deleted")
    assert list(deleted["data"]) == ["id", "deleted", "version", "seq"]
    # Counted by `hooks.all` (`store.webhook` leaves it at 0: waiting on that raced the
    # tombstone's answer, and its metric, now and then).
    wait_for(lambda: store.hooks.all()[0].backlog == 0)
    # The operators see it: deliveries by outcome, and the duties (every 0.2 s here) running.
    after = metric_values(render().decode())
    delivered = ("samtal_webhook_deliveries_total", (("outcome", "delivered"),))
    assert after.get(delivered, 0) - before.get(delivered, 0) >= 4
    runs = ("samtal_duty_runs_total", ())
    wait_for(lambda: metric_values(render().decode()).get(runs, 0) > before.get(runs, 0))


def test_an_erasure_is_delivered_as_a_tombstone_that_says_so(setup: Setup) -> None:
    """privacy.md: each erased call's tombstone, `"reason": "erased"`, as `cdr.deleted`."""
    store, receiver = setup.store, setup.receiver
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3)
    call = receiver.verified[0]["data"]["id"]
    assert store.erase("acme", calls=[call], by="cli", now=system_clock()).calls == 1
    wait_for(lambda: any(m["type"] == "cdr.deleted" for m in receiver.verified))
    (deleted,) = [m for m in receiver.verified if m["type"] == "cdr.deleted"]
    assert deleted["data"] == {
        "id": call, "deleted": True, "version": 2, "seq": 4, "reason": "erased"
    }  # fmt: skip


def test_a_pseudonymizing_subscription_gets_pseudonyms(setup: Setup) -> None:
    """privacy.md: `webhook add --pseudonymize` sends what a pseudonymizing token would see."""
    store, receiver = setup.store, setup.receiver
    url = store.webhook(setup.hook_id).url
    store.remove_webhook(setup.hook_id)
    hook, receiver.secret = store.add_webhook("acme", url, now=system_clock(), pseudonymize=True)
    assert hook.pseudonymize and store.hooks.all("acme")[0].pseudonymize
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3)
    masks = Pseudonyms(store.org("acme").secret)
    feed = store.changes(org="acme", after=0, limit=10).changes
    sent = sorted((m["data"] for m in receiver.verified), key=lambda data: data["seq"])
    assert sent == [masks.fields(orjson.loads(c.json())) for c in feed]
    assert all(r["callerNo"].startswith("p:") for r in sent)


def test_failed_deliveries_are_retried_with_the_same_id(setup: Setup) -> None:
    store, receiver = setup.store, setup.receiver
    receiver.answer = lambda _id, n: 503 if n <= 2 else 200  # the first two attempts fail
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3)
    assert sorted(receiver.attempts.values()) == [3, 3, 3]
    # Then the last outcome is written: the failing streak ends with the success.
    wait_for(lambda: (h := store.hooks.all()[0]).backlog == 0 and h.failing_since is None)
    (hook,) = store.hooks.all()
    assert hook.last_success is not None and hook.last_failure is not None
    assert (hook.failing_since, hook.backlog, hook.given_up) == (None, 0, 0)


def test_a_redirect_is_a_failure(setup: Setup) -> None:
    """webhooks.md: any 2xx is success, anything else a failure. A 307 is not followed: the
    message is retried (with its signature, to the subscription's own URL)."""
    store, receiver = setup.store, setup.receiver
    receiver.answer = lambda _id, n: 307 if n == 1 else 204
    receiver.headers = {"location": "/hook"}
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3 and store.hooks.all()[0].backlog == 0)
    assert sorted(receiver.attempts.values()) == [2, 2, 2]
    assert store.hooks.all()[0].last_failure is not None  # the 307s, failed and retried


def test_a_message_failing_every_retry_is_given_up(setup: Setup) -> None:
    store, receiver = setup.store, setup.receiver
    receiver.answer = lambda _id, _n: 500
    store.ingest(events_of(PRODUCT)[:6], now=system_clock())  # the first call's record
    wait_for(lambda: store.hooks.all()[0].given_up == 1)
    assert list(receiver.attempts.values()) == [4]  # the first try and three retries
    hook = store.hooks.all()[0]
    assert hook.active and hook.backlog == 0 and hook.failing_since is not None


def test_a_410_disables_and_replay_resumes(setup: Setup) -> None:
    store, receiver = setup.store, setup.receiver
    receiver.answer = lambda _id, _n: 410
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: not store.webhook(setup.hook_id).active)
    assert receiver.verified == []
    receiver.answer = lambda _id, _n: 200
    result = CliRunner().invoke(
        main, ["webhook", "replay", setup.hook_id, "--after", "0", "--db", setup.url]
    )
    assert result.exit_code == 0, result.output
    wait_for(lambda: len({m["data"]["seq"] for m in receiver.verified}) == 3)
    listed = CliRunner().invoke(main, ["webhook", "list", "acme", "--db", setup.url]).output
    assert f"{setup.hook_id}\tacme\t" in listed and "\tactive\t" in listed
    # Past the latest seq (3), a replay would skip every version up to it, unsaid; past the
    # database's numbers, it was a traceback.
    for after in ("4", "9" * 20):
        refused = CliRunner().invoke(
            main, ["webhook", "replay", setup.hook_id, "--after", after, "--db", setup.url]
        )
        assert refused.exit_code == 1, refused.output
        assert f"`--after` must be from 0 to 3, the latest seq of acme, not {after}" in (
            refused.output
        )


def test_a_slow_receiver_delays_nobody_else(setup: Setup) -> None:
    store, fast = setup.store, setup.receiver
    gate = threading.Event()
    slow = Receiver(answer=lambda _id, _n: 200 if gate.wait(30) else 500)
    with Server(slow.app()) as receiving:
        hook, slow.secret = store.add_webhook("acme", receiving.url + "/hook", now=system_clock())
        store.ingest(events_of(PRODUCT), now=system_clock())
        wait_for(lambda: len(fast.verified) == 3, timeout=10)  # while the slow one hangs
        assert slow.verified == []
        gate.set()
        wait_for(lambda: len(slow.verified) == 3)
    store.remove_webhook(hook.id)


def test_a_replay_reaches_a_running_subscription(setup: Setup) -> None:
    """A replay from the command line (another connection, no commit of records) is seen by
    the subscription's task, which has nothing to do and waits: the listing wakes it."""
    store, receiver = setup.store, setup.receiver
    store.ingest(events_of(PRODUCT), now=system_clock())
    wait_for(lambda: len(receiver.verified) == 3)
    wait_for(lambda: store.webhook(setup.hook_id).last_success is not None)
    time.sleep(1.5)  # its task waits, idle
    result = CliRunner().invoke(
        main, ["webhook", "replay", setup.hook_id, "--after", "0", "--db", setup.url]
    )
    assert result.exit_code == 0, result.output
    wait_for(lambda: len(receiver.verified) == 6, timeout=10)  # well before QUIET
    assert QUIET > 10


def test_idle_subscriptions_cost_no_reads(store_url: str) -> None:
    """Subscriptions with nothing to send wait for their organisation's commits: the only
    reads are the listing of them all, once every IDLE seconds. Each used to read three times
    a second, so that 1,000 of them took a quarter of a core."""
    store = open_store(store_url)
    now = system_clock()
    store.add_orgs([(f"quiet-{n}", "Europe/Stockholm") for n in range(20)], now=now)
    hooks = [store.add_webhook(f"quiet-{n}", "http://127.0.0.1:9/", now=now)[0] for n in range(20)]
    reads = 0
    listings: list[list[HookState]] = []

    class Counted(AsyncStore):
        async def read(self, work: Callable[[Store], T]) -> T:
            nonlocal reads
            reads += 1
            result = await super().read(work)
            if isinstance(result, list) and len(result) == len(hooks):
                listings.append(result)
            return result

    # One subscription was disabled before the deliverer starts, with a version waiting: it
    # is listed every round, without counting its backlog (which only grows), and has no
    # task to wake.
    store.hooks.outcome(hooks[0].id, DeliveryNote(now, success=False, disable=True))
    store.ingest(events_of(PRODUCT, "quiet-0"), now=now)
    assert store.hooks.all("quiet-0")[0].backlog > 0
    # Another is failing: a message waits for a retry due in an hour. It is not woken every
    # second to find nothing to do (three reads each time).
    later = Retry(hooks[1].id, 1, 1, now + 3600 * US_PER_SECOND, b"{}")
    store.hooks.advance([Advance(hooks[1].id, hooks[1].cursor, [later])])
    assert store.hooks.all("quiet-1")[0].backlog == 1
    handle = Counted(store)

    async def run() -> tuple[int, int, bool]:
        task = asyncio.create_task(Deliverer(handle, clock=system_clock, schedule=[1.0]).run())
        await asyncio.sleep(1.5)  # every task started and gone idle
        before = reads
        await asyncio.sleep(3 * IDLE)
        running = not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return before, reads - before, running

    try:
        reads_starting, reads_idle, running = asyncio.run(run())
        assert running  # the disabled subscription stopped nothing
        # With nothing to do, none reads as it starts either (19 x 3 reads before).
        assert reads_starting <= 2  # the listings
        assert reads_idle <= 4  # the listings; 20 x 3 x 3 before
        disabled = hooks[0].id
        assert listings and all(
            hook.backlog == 0 for listed in listings for hook in listed if hook.id == disabled
        )
    finally:
        handle.close()
        for hook in hooks:
            store.remove_webhook(hook.id)
        store.close()


def _counting_deliveries(
    store: Store, orgs: list[str], receiver: RawReceiver
) -> tuple[int, int, int]:
    """A deliverer for `orgs`' subscriptions (made by the caller), started with nothing to do;
    then one batch with a call of each organisation: how many posts, and how many reads and
    writes the subscriptions' tasks made for it (not the listings')."""
    reads: list[str] = []
    writes = 0

    class Counted(AsyncStore):
        async def read(self, work: Callable[[Store], T]) -> T:
            result = await super().read(work)
            listing = isinstance(result, list) and result and isinstance(result[0], HookState)
            reads.append("listing" if listing else "follower")
            return result

        async def write(self, work: Callable[[Store], T]) -> T:
            nonlocal writes
            writes += 1
            return await super().write(work)

    handle = Counted(store)
    single = len(events_of(PRODUCT))

    async def run() -> tuple[int, int]:
        handle.watch()
        task = asyncio.create_task(Deliverer(handle, clock=system_clock, schedule=[1.0]).run())
        await asyncio.sleep(1.5)  # started, with nothing to do
        before, written = reads.count("follower"), writes
        events = [event for org in orgs for event in events_of(PRODUCT, org)]
        assert len(events) == single * len(orgs)
        await asyncio.to_thread(store.ingest, events, now=system_clock())
        while any(hook.backlog for hook in store.hooks.all()) or receiver.posts < 3 * len(orgs):
            await asyncio.sleep(0.05)
        await asyncio.sleep(3 * IDLE)  # listings that must not wake it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return reads.count("follower") - before, writes - written

    try:
        follower_reads, follower_writes = asyncio.run(run())
    finally:
        handle.close()
    return receiver.posts, follower_reads, follower_writes


def test_a_delivery_reads_once_and_writes_once(store_url: str) -> None:
    """A subscription woken by its organisation's commit reads itself (and whether a retry is
    due) and the new versions in one go, posts them, and keeps its cursor and how the round
    went in one write; then it waits. It used to read its due retries apart, read all three
    again to find nothing, write twice, and be woken by the next listing because its cursor
    had moved: with 1,000 organisations' calls coming in, nine reads and writes a message."""
    store = open_store(store_url)
    now = system_clock()
    store.add_org("acme", "Europe/Stockholm", now=now)
    store.org("acme")  # the organisation cached: its read is not the subscription's
    with RawReceiver() as receiver:
        store.add_webhook("acme", receiver.url, now=now)
        assert _counting_deliveries(store, ["acme"], receiver) == (3, 1, 1)
    store.close()


def test_subscriptions_woken_together_read_and_write_together(store_url: str) -> None:
    """A commit of many organisations' calls wakes a subscription of each. What they read
    and what their rounds write goes in a few transactions, not two a subscription: on
    PostgreSQL each was round trips to the server and a flush of its log, and a batch of
    1,000 organisations' calls cost 2-6 times the CPU a message of one organisation's."""
    store = open_store(store_url)
    now = system_clock()
    orgs = [f"tenant-{n}" for n in range(30)]
    store.add_orgs([(org, "Europe/Stockholm") for org in orgs], now=now)
    for org in orgs:
        store.org(org)
    with RawReceiver() as receiver:
        for org in orgs:
            store.add_webhook(org, receiver.url, now=now)
        posts, reads, writes = _counting_deliveries(store, orgs, receiver)
    assert posts == 3 * len(orgs)
    # 30 each before (and with TOGETHER = 1); here 1 read, and 1-10 writes as the posts'
    # answers come back, 10 with the machine busy with other tests.
    assert reads <= 5, reads
    assert writes <= 2 * len(orgs) // 3, writes
    store.close()


def test_a_removed_subscription_leaves_nothing_behind(store_url: str) -> None:
    """The deliverer ends a removed subscription's task within a listing or two (it used to
    sleep up to QUIET seconds), and keeps nothing of it: over months of subscriptions added
    and removed, nothing piles up."""
    store = open_store(store_url)
    now = system_clock()
    store.add_orgs([("leaving", "Europe/Stockholm")], now=now)
    hook, _ = store.add_webhook("leaving", "http://127.0.0.1:9/", now=now)
    handle = AsyncStore(store)

    async def run() -> tuple[bool, bool]:
        task = asyncio.create_task(Deliverer(handle, clock=system_clock, schedule=[1.0]).run())
        await asyncio.sleep(0.5)  # its task started and gone idle
        (follower,) = [
            t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Deliverer._follow"
        ]
        followed = weakref.ref(follower)
        del follower
        await handle.write(lambda store: store.remove_webhook(hook.id))
        await asyncio.sleep(2.5 * IDLE)
        gc.collect()
        running = not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return running, followed() is None

    try:
        running, forgotten = asyncio.run(run())
        assert running
        assert forgotten
    finally:
        handle.close()
        store.close()


def test_the_webhook_commands(setup: Setup) -> None:
    runner, db = CliRunner(), ["--db", setup.url]
    added = runner.invoke(main, ["webhook", "add", "acme", "https://example.test/in", *db])
    assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and len(secret) >= 6 + 32
    assert runner.invoke(main, ["webhook", "add", "nope", "https://x.test", *db]).exit_code == 1
    assert runner.invoke(main, ["webhook", "add", "acme", "ftp://x.test", *db]).exit_code == 1
    for bad, said in (
        ("https://x.test:99999/in", "has no valid port"),
        ("https://x.test/" + "a" * 2100, "a webhook URL has at most 2,048"),
        # These were taken, to fail every delivery until given up.
        ("https://x.test:0/in", "has no valid port (a number from 1 to 65535)"),
        ("https://x test/in", "holds a space or control character (U+0020)"),
        ("https://x.test/in\n", "holds a space or control character (U+000A)"),
        # These were a traceback.
        ("https://[::1/in", "'https://[::1/in' is not a URL: Invalid IPv6 URL"),
        ("https://[zz]/in", "is not a URL: 'zz' does not appear to be an IPv4 or IPv6 address"),
    ):
        refused = runner.invoke(main, ["webhook", "add", "acme", bad, *db])
        assert refused.exit_code == 1 and said in refused.output, refused.output
    new_id = added.output.split()[1]
    assert new_id in runner.invoke(main, ["webhook", "list", *db]).output
    mistyped = runner.invoke(main, ["webhook", "list", "acmee", *db])  # listed nothing, rc 0
    assert mistyped.exit_code == 1 and "unknown organisation 'acmee'" in mistyped.output
    with_password = "https://bob:s3cret@example.test/in"
    keyed = runner.invoke(main, ["webhook", "add", "acme", with_password, *db])
    assert keyed.exit_code == 0, keyed.output
    listed = runner.invoke(main, ["webhook", "list", *db]).output
    assert "https://bob:***@example.test/in" in listed and "s3cret" not in listed
    runner.invoke(main, ["webhook", "remove", keyed.output.split()[1], *db])
    assert runner.invoke(main, ["webhook", "remove", new_id, *db]).exit_code == 0
    assert runner.invoke(main, ["webhook", "remove", new_id, *db]).exit_code == 1
    assert new_id not in runner.invoke(main, ["webhook", "list", *db]).output


def test_a_new_subscription_starts_at_the_latest_version(setup: Setup) -> None:
    store = setup.store
    store.ingest(events_of(PRODUCT, "acme"), now=system_clock())
    later, _ = store.add_webhook("acme", "https://example.test/in", now=system_clock())
    assert later.cursor == store.latest_change("acme") == 3
    store.remove_webhook(later.id)


@pytest.mark.parametrize(
    ("retry_after", "at_least", "at_most"),
    [
        ("inf", 0.0, 60.0),  # not a number of seconds: the schedule's own delay
        ("1e300", 0.0, 60.0),
        ("garbage", 0.0, 60.0),
        ("999999999999999999999", 86_000.0, 86_400.0 * 1.1),  # huge: a day at most
        ("Sun, 06 Nov 2094 08:49:37 GMT", 86_000.0, 86_400.0 * 1.1),
        ("120", 120.0, 130.0),
    ],
)
def test_any_retry_after_gets_a_sane_bounded_wait(
    setup: Setup, retry_after: str, at_least: float, at_most: float
) -> None:
    store, receiver = setup.store, setup.receiver
    receiver.answer = lambda _id, _n: 503
    receiver.headers = {"Retry-After": retry_after}
    sent = system_clock()
    store.ingest(events_of(PRODUCT)[:6], now=sent)  # the first call's record
    far = sent + 3 * 86_400 * 1_000_000
    found: list[Any] = []
    wait_for(lambda: bool(found.extend(store.hooks.due(setup.hook_id, far, 10)) or found))
    waited = (found[0].due - sent) / 1_000_000  # the first retry, as it was recorded
    assert at_least <= waited <= at_most, waited
    wait_for(lambda: store.webhook(setup.hook_id).last_failure is not None)  # and recorded


class RawReceiver:
    """A receiver on loopback below HTTP libraries, in a thread of its own: answers every POST
    200 with `body`, `trickle` seconds between its bytes, and counts the connections made and
    the POSTs answered."""

    def __init__(self, body: bytes = b"ok", trickle: float = 0.0) -> None:
        self.body, self.trickle = body, trickle
        self.connections = self.posts = 0
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while not self._stop.is_set():
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.posts += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(self.body))
                for byte in (self.body[n : n + 1] for n in range(len(self.body))):
                    writer.write(byte)
                    await writer.drain()
                    await asyncio.sleep(self.trickle)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:  # also when the loop ends with the connection still open
            writer.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, sock=self._listener)
        async with server:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

    def __enter__(self) -> RawReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _calls(copies: int) -> list[Any]:
    """The product description's three calls, `copies` times over (ids and calls made apart)."""
    events = [
        {**raw, "id": f"{raw['id']}-{k}", "call": f"{raw['call']}-{k}"}
        for k in range(copies)
        for raw in PRODUCT["events"]
    ]
    return events_of({**PRODUCT, "events": events})


def test_connections_are_kept_between_messages(store_url: str) -> None:
    """Each answer's short body is read, so its connection goes back to the pool: 30 messages
    take no more connections than there are attempts in flight (one each when the body was
    left unread, a tenth of a delivery's CPU)."""
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    settings = Settings(database_url=store_url, retention_days=0, duty_interval_seconds=0.2)
    with RawReceiver(body=b'{"ok":true}') as receiver:
        store.add_webhook("acme", receiver.url, now=system_clock())
        with Server(create_app(settings, store=store)):
            store.ingest(_calls(10), now=system_clock())
            wait_for(lambda: store.hooks.all()[0].backlog == 0 and receiver.posts >= 30)
    assert receiver.posts == 30
    assert receiver.connections <= PARALLEL, receiver.connections
    store.close()


def test_a_proxy_named_by_the_environment_carries_the_messages(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY, as httpx honoured it: the receiver's host does not resolve, and the
    messages go through the proxy (which answers them itself, here)."""
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    settings = Settings(database_url=store_url, retention_days=0, duty_interval_seconds=0.2)
    with RawReceiver() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/hook"))
        store.add_webhook("acme", "http://receiver.invalid/hook", now=system_clock())
        with Server(create_app(settings, store=store)):
            store.ingest(events_of(PRODUCT), now=system_clock())
            wait_for(lambda: store.hooks.all()[0].backlog == 0 and proxy.posts >= 3)
    assert proxy.posts == 3
    assert store.hooks.all()[0].last_failure is None
    store.close()


def test_a_trickling_answer_does_not_hold_the_delivery(store_url: str) -> None:
    """A receiver that answers 200 and then sends its body a byte at a time: the message counts
    as delivered once DRAIN_SECONDS have passed, not when the whole body has come (20 s)."""
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    settings = Settings(database_url=store_url, retention_days=0, duty_interval_seconds=0.2)
    with RawReceiver(body=b"x" * 100, trickle=0.2) as receiver:
        hook, _ = store.add_webhook("acme", receiver.url, now=system_clock())
        with Server(create_app(settings, store=store)):
            began = time.monotonic()
            store.ingest(events_of(PRODUCT), now=system_clock())
            wait_for(lambda: store.webhook(hook.id).last_success is not None, timeout=15)
            took = time.monotonic() - began
    assert store.hooks.all()[0].backlog == 0
    assert took < 5 * DRAIN_SECONDS + 2, took
    store.close()


def test_an_endless_answer_costs_no_memory(store_url: str) -> None:
    """A receiver that answers 200 and then streams its body forever: the delivery counts, and
    the body is never read (issue 13: the server grew from 64 MB to 3.6 GB in 30 s)."""
    import asyncio
    import resource
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    streamed = [0]
    stop = threading.Event()

    def endless() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
            try:
                while not stop.is_set():
                    writer.write(chunk)
                    await writer.drain()
                    streamed[0] += len(chunk)
            except (ConnectionError, OSError):
                pass
            writer.close()

        async def main() -> None:
            server = await asyncio.start_server(serve, sock=listener)
            async with server:
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    hook, _ = store.add_webhook("acme", f"http://127.0.0.1:{port}/hook", now=system_clock())
    settings = Settings(database_url=store_url, retention_days=0, duty_interval_seconds=0.2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
    try:
        with Server(create_app(settings, store=store)):
            store.ingest(events_of(PRODUCT), now=system_clock())
            wait_for(lambda: store.webhook(hook.id).last_success is not None, timeout=30)
            time.sleep(1)
    finally:
        stop.set()
        thread.join(10)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert store.hooks.all()[0].backlog == 0  # all three delivered
    assert grown_mb < 100, (grown_mb, streamed[0])
    store.close()


def test_rounds_kept_together_are_each_kept_as_alone(store_url: str) -> None:
    """`hooks.advance` keeps many subscriptions' rounds in one statement: each row gets its own
    cursor and outcome, as when each was kept alone. A success clears the failing streak; a
    failure starts one, and a second keeps when it started; a round with nothing sent moves
    only the cursor; a disable stops only its own subscription."""
    store = open_store(store_url)
    store.add_orgs([(f"org-{n}", "Europe/Stockholm") for n in range(5)], now=T0)
    ids = [store.add_webhook(f"org-{n}", "http://127.0.0.1:9/", now=T0)[0].id for n in range(5)]
    store.hooks.advance([Advance(ids[0], 0, (), DeliveryNote(T0 + 1, success=False))])
    retry = Retry(ids[1], 7, 1, T0 + 100, b"{}")
    store.hooks.advance(
        [
            Advance(ids[0], 5, (), DeliveryNote(T0 + 2, success=False, given_up=2)),
            Advance(ids[1], 7, [retry], DeliveryNote(T0 + 3, success=False)),
            Advance(ids[2], 9, (), DeliveryNote(T0 + 4, success=True)),
            Advance(ids[3], 11),
            Advance(ids[4], 13, (), DeliveryNote(T0 + 5, success=False, disable=True)),
        ]
    )
    store.hooks.advance([Advance(ids[1], 8, (), DeliveryNote(T0 + 6, success=True))])
    got = {
        hook.id: (hook.cursor, hook.last_success, hook.last_failure, hook.failing_since,
                  hook.given_up, hook.active, hook.backlog)
        for hook in store.hooks.all()
    }  # fmt: skip
    assert [got[hook_id] for hook_id in ids] == [
        (5, None, T0 + 2, T0 + 1, 2, True, 0),
        (8, T0 + 6, T0 + 3, None, 0, True, 1),  # the retry waits
        (9, T0 + 4, None, None, 0, True, 0),
        (11, None, None, None, 0, True, 0),
        (13, None, T0 + 5, T0 + 5, 0, False, 0),
    ]
    store.hooks.outcome(ids[3], DeliveryNote(T0 + 7, success=False))
    assert store.hooks.get(ids[3]).failing_since == T0 + 7  # type: ignore[union-attr]
    assert store.hooks.get(ids[3]).cursor == 11  # type: ignore[union-attr]
    store.close()
