"""NATS JetStream: the switch (or a bridge) publishes each event to a durable stream as it
happens; any number of workers consume it through the same ingestion path as POST /events.

Publishing: one message per event on `<subject>.<org>`, with `Nats-Msg-Id: <org>/<id>` so that
JetStream's duplicate window drops a re-publish; or, asked to, several events of an
organisation in a message, one a line. Consuming: a durable pull consumer shared by every
worker; a batch (of events, whatever the messages that hold them) is decoded, ingested in one
transaction and only then acknowledged. A line that is invalid or of an unknown organisation
is acknowledged too (never redelivered forever), logged, and published with its reason to a
dead-letter subject outside the stream (with `Samtal-Line`, its place in a message of several).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from samtal import metrics
from samtal.errors import NotReady, SamtalError, UsageError, without_password
from samtal.events import Event, Rejection, decode_one
from samtal.ingest import Bounds, Report
from samtal.ingest.apart import Apart
from samtal.settings import Settings
from samtal.streams import StreamNames
from samtal.types import ORG_NAME

log = logging.getLogger(__name__)

#: Publishes awaiting their acknowledgement at once.
WINDOW = 512
#: Bytes of events in one message at most, when several go in one (NATS takes 1 MiB at most
#: by default).
PACK_BYTES = 256 * 1024
#: Bytes of a message's size kept for its headers (`Nats-Msg-Id`: an organisation and an id,
#: at most 64 and 128 characters, or a hash).
HEADER_ROOM = 1024
#: Tries of one publish before it counts as failed; waits double from 0.1 s.
PUBLISH_TRIES = 5
#: Seconds a stopping worker gives the batch it is storing before it leaves it to another.
STOP_GRACE = 5.0


#: Seconds between two log lines of the same error from the NATS client.
SAID_EVERY = 30.0


class _Said:
    """What the NATS client reports (a server that does not answer, a lost connection), each
    on one line and the same one at most every SAID_EVERY seconds. Its own callback logged a
    traceback at every try to reach a server: 800 lines in 15 s of a worker started before
    NATS."""

    def __init__(self, url: str, client: NATS) -> None:
        self.url = without_password(url)
        self._client = client
        #: The last error reported.
        self.last = ""
        #: Each error logged lately (one a server, say): when, and how often since.
        self._logged: dict[str, tuple[float, int]] = {}

    async def error(self, exc: Exception) -> None:
        self.last = said = _why(exc)
        now = time.monotonic()
        at, again = self._logged.get(said, (-SAID_EVERY, 0))
        if now - at < SAID_EVERY:
            self._logged[said] = (at, again + 1)
            return
        if len(self._logged) > 100:  # errors that name something new each time
            self._logged.clear()
        self._logged[said] = (now, 0)
        since = f" ({again:,} times more since it was last logged)" if again else ""
        log.warning("NATS at %s: %s%s", self.url, said, since)

    async def disconnected(self) -> None:
        if not self._client.is_closed:  # (closing it calls this too)
            log.warning("lost the connection to NATS at %s; connecting again", self.url)

    async def reconnected(self) -> None:
        log.info("connected to NATS at %s again", self.url)


async def connect(url: str, *, tries: int, wait: float = 2.0) -> NATS:
    """A connection to the NATS servers of `url`, trying each up to `tries` times (-1: until
    one answers), `wait` seconds apart; NotReady, saying why, when none answered."""
    client = NATS()
    said = _Said(url, client)
    try:
        await client.connect(
            servers(url),
            connect_timeout=5,
            max_reconnect_attempts=tries,
            reconnect_time_wait=wait,  # type: ignore[arg-type]  # seconds, slept as a float
            error_cb=said.error,
            disconnected_cb=said.disconnected,
            reconnected_cb=said.reconnected,
        )
    except (TimeoutError, NoServersError, OSError) as exc:
        why = said.last or _why(exc)
        raise NotReady(f"no NATS server answers at {said.url} ({why})") from None
    return client


def _why(exc: BaseException) -> str:
    """An error as a log line says it: its kind, and its words where it has some (a timeout
    has none: what is not a NATS server, such as an HTTP port, never greets)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no greeting)"


def max_ack_pending(batch: int) -> int:
    """Messages a worker may hold unacknowledged: room for four batches."""
    return max(batch * 4, 1000)


async def ensure_stream(
    js: JetStreamContext, stream: str, subject: str, max_age_days: float, replicas: int = 1
) -> None:
    """Create the stream when missing (file storage, `<subject>.>`, `replicas` copies on a
    cluster); leave one that exists as it is, if it takes `<subject>.>` (UsageError if not:
    the events would go to another stream, or to none, and NATS said so in a traceback)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[f"{subject}.>"],
                storage=StorageType.FILE,
                max_age=max_age_days * 86_400,
                num_replicas=replicas,
            )
        )
        log.info("made the stream %s for %s.> (%d replica(s))", stream, subject, replicas)
        return
    taken = list(info.config.subjects or [])
    if not any(_covers(pattern, f"{subject}.>") for pattern in taken):
        raise UsageError(
            f"the stream {stream} takes {', '.join(taken) or 'no subject'}, not {subject}.>: "
            "give --subject the prefix it takes, or another --stream"
        )


def _covers(pattern: str, wanted: str) -> bool:
    """Whether every subject `wanted` (a filter such as `a.b.>`) matches stream subject
    `pattern` (NATS wildcards: `*` one token, `>` the rest)."""
    have, need = pattern.split("."), wanted.split(".")
    for index, token in enumerate(have):
        if token == ">":
            return True
        if index >= len(need) or need[index] == ">" or token not in ("*", need[index]):
            return False
    return len(have) == len(need)


def servers(url: str) -> list[str]:
    """The servers of a NATS URL, which may list several: `nats://a:4222,nats://b:4222`."""
    return [part.strip() for part in url.split(",") if part.strip()]


#: Rejected lines a publish keeps with their reasons, the first; the rest it counts.
PUBLISH_REJECTIONS_SHOWN = 100


@dataclass
class Published:
    """What a publish did: published (new to the stream), duplicates (dropped by the stream's
    duplicate window), the lines rejected before publishing (the first of them in `shown`, so
    that a file of many bad lines is summed up in memory that does not grow with it), and
    publishes that failed."""

    published: int = 0
    duplicates: int = 0
    rejected: int = 0
    shown: list[Rejection] = field(default_factory=list)
    failed: int = 0

    def reject(self, rejection: Rejection) -> None:
        """Count a rejected line, and keep it if it is among the first."""
        self.rejected += 1
        if len(self.shown) < PUBLISH_REJECTIONS_SHOWN:
            self.shown.append(rejection)


async def publish(
    lines: Iterable[bytes],
    *,
    url: str,
    names: StreamNames = StreamNames(),  # noqa: B008 (frozen)
    replicas: int = 1,
    pack: int = 1,
    progress: Callable[[int, Published], None] | None = None,
) -> Published:
    """Publish each valid event line; invalid lines are reported, not published. `pack` above
    1 puts up to that many events of one organisation in a message, one a line (a consumer
    then does the work of a message once for all of them)."""
    report = Published()
    subject = names.subject
    nc = await connect(url, tries=10)
    try:
        js = nc.jetstream()
        await ensure_stream(js, names.stream, subject, names.max_age_days, replicas)
        pending: list[asyncio.Task[tuple[int, bool | None]]] = []
        packs: dict[str, list[tuple[Event, bytes]]] = {}
        sizes: dict[str, int] = {}
        # The server's largest message, less room for the headers (they count in it): a valid
        # event may be larger (fields it does not know are ignored), and NATS then raised.
        largest = nc.max_payload - HEADER_ROOM

        def send(org: str) -> None:
            pending.append(asyncio.create_task(_publish_one(js, subject, org, packs.pop(org))))
            sizes.pop(org)

        position = 0
        for position, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                continue
            event = decode_one(line, position)
            if isinstance(event, Rejection):
                report.reject(event)
                continue
            if not ORG_NAME.fullmatch(event.org):
                report.reject(
                    Rejection(position, event.id, "`org` cannot name a NATS subject token")
                )
                continue
            if len(line) > largest:
                report.reject(
                    Rejection(
                        position,
                        event.id,
                        f"the event is {len(line):,} bytes: the NATS server takes messages of "
                        f"{largest:,} at most (its max_payload, less the headers)",
                    )
                )
                continue
            if event.org in packs and sizes[event.org] + len(line) > PACK_BYTES:
                send(event.org)
            packs.setdefault(event.org, []).append((event, line))
            sizes[event.org] = sizes.get(event.org, 0) + len(line) + 1
            if len(packs[event.org]) >= pack:
                send(event.org)
            if len(pending) >= WINDOW:
                for org in list(packs):  # no event waits in a pack beyond a window
                    send(org)
                _count(report, await asyncio.gather(*pending))
                pending.clear()
                if progress is not None:
                    progress(position, report)
        for org in list(packs):
            send(org)
        _count(report, await asyncio.gather(*pending))
        if progress is not None:
            progress(position, report)
    finally:
        await nc.close()
    return report


async def _publish_one(
    js: JetStreamContext, subject: str, org: str, events: list[tuple[Event, bytes]]
) -> tuple[int, bool | None]:
    """Publish one message of `events` (of `org`) and wait for its acknowledgement: their
    number, and whether the stream had the message already (None when every try failed).

    Its `Nats-Msg-Id`, which JetStream's duplicate window goes by: `<org>/<id>` for one event,
    and for several a hash of their ids, so that only the same events published again are
    dropped as duplicates."""
    if len(events) == 1:
        event, data = events[0]
        message_id = f"{org}/{event.id}"
    else:
        data = b"\n".join(line for _, line in events)
        ids = hashlib.blake2b(digest_size=16)
        for event, _ in events:
            ids.update(event.id.encode("utf-8", "surrogatepass") + b"\n")
        message_id = f"{org}/{len(events)}/{ids.hexdigest()}"
    for attempt in range(PUBLISH_TRIES):
        try:
            ack = await js.publish(
                f"{subject}.{org}", data, timeout=5, headers={"Nats-Msg-Id": message_id}
            )
            return len(events), bool(ack.duplicate)
        except (NatsTimeout, NoRespondersError, nats.errors.ConnectionClosedError) as exc:
            log.warning("publishing %s: %s (try %d)", message_id, exc, attempt + 1)
            await asyncio.sleep(0.1 * 2**attempt)
    return len(events), None


def _fitted(line: bytes, headers: dict[str, str], largest: int) -> tuple[bytes, dict[str, str]]:
    """A dead letter that the server takes: `line` cut where it and its headers would pass the
    server's largest message, with `Samtal-Truncated` (the line's full size) saying so. Else
    the server closed the connection for good, and the worker fetched nothing ever after; the
    message, never acknowledged, then did the same to the next worker."""
    room = largest - HEADER_ROOM - sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())
    if len(line) <= room:
        return line, headers
    return line[: max(room, 0)], {**headers, "Samtal-Truncated": str(len(line))}


class ConsumeError(SamtalError):
    """The consumer cannot go on in this process."""


def _count(report: Published, results: list[tuple[int, bool | None]]) -> None:
    for events, result in results:
        if result is None:
            report.failed += events
        elif result:
            report.duplicates += events
        else:
            report.published += events


@dataclass
class Consumed:
    """What a consumer did: events accepted, duplicates, lines rejected (dead-lettered)."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


async def consume(
    database: str,
    *,
    writers: int,
    url: str,
    now: Callable[[], int],
    stop: asyncio.Event,
    names: StreamNames = StreamNames(),  # noqa: B008 (frozen)
    settings: Settings | None = None,
    log_every: float = 5.0,
) -> Consumed:
    """Consume until `stop` is set into the store at URL `database`, which takes `writers`
    at once: fetch, ingest in one transaction, then acknowledge. The batches are decoded and
    stored in processes of their own (`Apart`), beside the event loop that speaks to NATS.

    A message that can never be stored (invalid, of an unknown organisation, or refused by the
    database) is acknowledged and dead-lettered with its reason: it never holds up the others.
    While the database is away, the batch is kept (not acknowledged) and tried again with
    backoff. Several batches are stored at once where the store takes several writers. When
    `stop` is set, the batches under way are given STOP_GRACE seconds to be stored and
    acknowledged; whatever is not is left to another worker.
    """
    done = Consumed()
    nc = await _until_stopped(connect(url, tries=-1, wait=0.5), stop)  # however long it takes
    if nc is None:  # stopped before NATS answered
        return done
    try:
        js = nc.jetstream()
        await ensure_stream(js, names.stream, names.subject, names.max_age_days)
        sub = await Puller.start(js, nc, names)
        last_log, last_count = time.monotonic(), 0
        # Batches stored at once: as many as the store has writers (several on PostgreSQL, so
        # that Python's work on one overlaps the database's on another), within what the
        # consumer may hold unacknowledged besides the batch fetched ahead.
        at_once = max(1, min(writers, max_ack_pending(names.batch) // names.batch - 1))
        storing: set[asyncio.Task[None]] = set()
        apart = Apart(
            database, at_once, log_format=None if settings is None else settings.log_format
        )

        async def fetch() -> list[Msg]:
            try:
                return await sub.fetch(timeout=1.0)
            except Exception as exc:  # NATS away: the client reconnects; fetch again later
                if nc.is_closed:  # it will not (the server ended the connection for good)
                    raise ConsumeError(
                        f"the connection to NATS was closed for good ({exc}): stopping, so "
                        "that a supervisor starts this worker again"
                    ) from exc
                log.warning("fetching from %s failed (%s); trying again", names.stream, exc)
                await _pause(stop, 1.0)
                return []

        async def store_and_ack(messages: list[Msg]) -> None:
            nonlocal last_log, last_count
            lines = _Lines(messages)
            report = await _store_until_stopped(apart, lines.lines, now, settings, messages, stop)
            if report is None:  # stopping, the batch not stored: another worker will
                for message in messages:
                    await message.nak()
                return
            for rejection in report.rejected:
                message, line, headers = lines.of(rejection.line)
                log.warning("rejected %s: %s", message.subject, rejection.reason)
                letter, said = _fitted(
                    line,
                    {
                        "Samtal-Reason": rejection.reason,
                        "Samtal-Subject": message.subject,
                        **headers,
                    },
                    nc.max_payload,
                )
                await nc.publish(names.dead_letter, letter, headers=said)
            for message in messages:
                await message.ack()
            done.batches += 1
            done.accepted += report.accepted
            done.duplicates += report.duplicates
            done.rejected += len(report.rejected)
            if time.monotonic() - last_log >= log_every:
                events = done.accepted + done.duplicates + done.rejected
                rate = (events - last_count) / (time.monotonic() - last_log)
                log.info(
                    "consumed %d events (%.0f/s), %s pending", events, rate, await _pending(sub)
                )
                last_log, last_count = time.monotonic(), events

        async def settle(until: int) -> None:
            """Wait until at most `until` batches are being stored; a failure stops the worker."""
            while len(storing) > until:
                finished, _ = await asyncio.wait(storing, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    storing.discard(task)
                    task.result()

        # The next batch is fetched while the ones before it are stored.
        ahead = asyncio.ensure_future(fetch())
        try:
            while True:
                messages = await ahead
                if stop.is_set():
                    for message in messages:  # fetched, not stored: to the next worker at once
                        await message.nak()
                    break
                ahead = asyncio.ensure_future(fetch())
                if messages:
                    storing.add(asyncio.ensure_future(store_and_ack(messages)))
                    await settle(at_once - 1)
        finally:
            ahead.cancel()
            try:
                await settle(0)  # each batch under way is stored, or handed back, in STOP_GRACE
            finally:
                apart.close()
    finally:
        if nc.is_connected:
            try:
                await nc.flush(timeout=5)  # the last acknowledgements reach the server
            except Exception as exc:  # unacknowledged batches come back to another worker
                log.warning("could not flush the last acknowledgements: %s", exc)
        await nc.close()
    return done


def _events_in(data: bytes) -> int:
    """The events of a message: its lines (a final newline ends the last one)."""
    return data.count(b"\n", 0, len(data.rstrip(b"\r\n"))) + 1


class _Lines:
    """The event lines of a batch of messages, in order. A message holds one event, or
    several, one a line (NDJSON, events.md), as a switch or a bridge that batches sends them."""

    def __init__(self, messages: list[Msg]) -> None:
        self.messages = messages
        #: Per line, when a message holds several: its message, its place there (from 1),
        #: and how many lines that message has. None while every message is one event.
        self._owners: list[tuple[int, int, int]] | None = None
        if not any(b"\n" in message.data.rstrip(b"\r\n") for message in messages):
            self.lines = [message.data for message in messages]
            return
        self.lines, self._owners = [], []
        for n, message in enumerate(messages):
            parts = message.data.split(b"\n")
            if len(parts) > 1 and not parts[-1].strip():
                parts.pop()  # what follows the last newline, when blank, is no line
            self.lines += parts
            self._owners += [(n, k, len(parts)) for k in range(1, len(parts) + 1)]

    def of(self, line: int) -> tuple[Msg, bytes, dict[str, str]]:
        """Line `line` of the batch (from 1): its message, its text, and for a message of
        several lines the header that says which one it is."""
        if self._owners is None:
            message = self.messages[line - 1]
            return message, message.data, {}
        n, place, lines = self._owners[line - 1]
        where = {"Samtal-Line": str(place)} if lines > 1 else {}
        return self.messages[n], self.lines[line - 1].removesuffix(b"\r"), where


class Puller:
    """Batches of the shared durable consumer, pulled to an inbox of this worker's own.

    nats-py's `PullSubscription.fetch` waits for each message of a batch in turn (a task and
    a timer a message), which capped a worker at 25k messages/s here, fetching and
    acknowledging alone. This asks for a batch with one pull request and collects what
    arrives on a plain subscription: 55k/s. Status messages (no messages, request timeout,
    leadership change, ...) end a pull; a message that arrives after its pull returned waits
    for the next one.
    """

    def __init__(self, js: JetStreamContext, nc: NATS, names: StreamNames) -> None:
        self.js, self.nc, self.names = js, nc, names
        self._inbox = nc.new_inbox()
        self._request = f"$JS.API.CONSUMER.MSG.NEXT.{names.stream}.{names.durable}"
        self._got: list[Msg] = []
        self._counts: list[int] = []  # the events of each message in `_got`
        self._events = 0  # their sum
        # Events a message has held so far (a message may hold several): what a pull asks for.
        self._seen_messages, self._seen_events = 0, 0
        self._asked = 0  # messages the pull under way has yet to send
        self._ended = asyncio.Event()

    @classmethod
    async def start(cls, js: JetStreamContext, nc: NATS, names: StreamNames) -> Puller:
        """The durable consumer of `names` (made if it does not exist) and this worker's
        inbox for its batches."""
        try:
            await js.consumer_info(names.stream, names.durable)
        except NotFoundError:
            events = f"{names.subject}.>"
            stream = await js.stream_info(names.stream)
            # A stream of events alone (as `ensure_stream` makes it) needs no filter, and a
            # filter costs: nats-server 2.9 matches it message by message at the stream's tail,
            # where a worker that keeps up always reads (215k events took a filtered consumer
            # 13.5 s and one without 8.5 s, medians of 5, the server burning both cores).
            only_events = stream.config.subjects == [events]
            await js.add_consumer(
                names.stream,
                ConsumerConfig(
                    durable_name=names.durable,
                    filter_subject=None if only_events else events,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=names.ack_wait,
                    max_ack_pending=max_ack_pending(names.batch),
                ),
            )
        puller = cls(js, nc, names)
        await nc.subscribe(
            puller._inbox,
            cb=puller._arrived,
            pending_msgs_limit=max_ack_pending(names.batch),
            pending_bytes_limit=-1,
        )
        return puller

    async def _arrived(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status"):
            self._ended.set()  # the pull is over (or a heartbeat, which we never ask for)
        else:
            count = _events_in(msg.data)
            self._got.append(msg)
            self._counts.append(count)
            self._events += count
            self._asked -= 1
            # A pull that got the messages it asked for is over: the server says nothing more.
            if self._events >= self.names.batch or self._asked <= 0:
                self._ended.set()

    async def fetch(self, timeout: float) -> list[Msg]:
        """Messages of at most a batch of events (or one message, should it alone hold more):
        what the stream has at once, or else what arrives within `timeout` seconds.

        The first pull asks for what is there now (`no_wait`: the server ends it as soon as it
        has sent what it has), so a part batch (the last of a burst, or a quiet stream's
        trickle) is stored at once rather than when a waiting pull expires. Only when nothing
        is there does a second pull wait for messages to come.
        """
        if self._events < self.names.batch:
            await self._pull({"no_wait": True}, timeout)
        if not self._got:
            await self._pull({"expires": int(timeout * 1e9)}, timeout)
        taken, events = 0, 0
        for count in self._counts:
            if taken and events + count > self.names.batch:
                break
            taken, events = taken + 1, events + count
        batch, self._got = self._got[:taken], self._got[taken:]
        del self._counts[:taken]
        self._events -= events
        self._seen_messages += taken
        self._seen_events += events
        return batch

    async def _pull(self, how: dict[str, object], timeout: float) -> None:
        """One pull request for the rest of a batch, waited for until it ends or fills: as
        many messages as the events missing, at the events a message has held so far."""
        self._ended.clear()
        per_message = max(1.0, self._seen_events / max(1, self._seen_messages))
        self._asked = max(1, round((self.names.batch - self._events) / per_message))
        request = {"batch": self._asked, **how}
        await self.nc.publish(self._request, orjson.dumps(request), reply=self._inbox)
        # The server ends a pull with a status (no messages, expired); the margin covers a
        # status lost to a reconnection.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout + 1.0)

    async def consumer_info(self) -> ConsumerInfo:
        """What NATS knows of the consumer (pending and unacknowledged messages)."""
        info: ConsumerInfo = await self.js.consumer_info(self.names.stream, self.names.durable)
        return info


async def _pending(sub: Puller) -> str:
    """How many messages wait for the consumer, for the progress line and the metrics ("?" when
    NATS does not say in time: a progress line never stops a worker)."""
    try:
        info = await sub.consumer_info()
    except Exception:
        return "?"
    metrics.JETSTREAM_PENDING.set(info.num_pending or 0)
    metrics.JETSTREAM_ACK_PENDING.set(info.num_ack_pending or 0)
    return str(info.num_pending)


async def _store_until_stopped(
    apart: Apart,
    lines: list[bytes],
    now: Callable[[], int],
    settings: Settings | None,
    messages: list[Msg],
    stop: asyncio.Event,
) -> Report | None:
    """Ingest one batch, trying again with backoff while the database is away (the messages
    kept from redelivery meanwhile); None when `stop` came first. Nothing is acknowledged
    before it is stored."""
    wait = 0.2
    while not stop.is_set():
        at = now()
        bounds = None if settings is None else Bounds.of(settings, at)
        storing = asyncio.ensure_future(apart.ingest(lines, now=at, bounds=bounds, path="nats"))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({storing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not storing.done():
            # Stopping while the batch is being stored: a little time to finish it.
            await asyncio.wait({storing}, timeout=STOP_GRACE)
            if not storing.done():
                storing.add_done_callback(_ignore)
                return None
        try:
            return storing.result()
        except Exception as exc:
            log.warning("storing a batch failed (%s); trying again in %.1f s", exc, wait)
            for message in messages:
                await message.in_progress()
            await _pause(stop, wait)
            wait = min(wait * 2, 10.0)
    return None


async def _until_stopped(connecting: Awaitable[NATS], stop: asyncio.Event) -> NATS | None:
    """The connection `connecting` makes, or None when `stop` is set first (then it is given
    up): a worker waiting for NATS stops on SIGTERM like one that is working."""
    made = asyncio.ensure_future(connecting)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((made, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if made.done():
        return made.result()
    made.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await made
    return None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _ignore(task: asyncio.Future[Report]) -> None:
    """Collect the outcome of a batch left behind when the worker stopped (it is redelivered)."""
    if not task.cancelled():
        task.exception()
