"""What the app's handlers share: settings, the store, the clock and the one writer thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from samtal.api._limits import Limits
from samtal.errors import Overloaded
from samtal.ingest import KnownOrgs
from samtal.settings import Settings
from samtal.store import Org, Store

T = TypeVar("T")
#: Reader threads: reads are short (a chunk of at most 500 rows), so a few serve many clients.
READERS = 4


@dataclass
class InFlight:
    """The bytes of request bodies held at once, kept under `limit` so that memory stays
    bounded whatever the number of clients. Used on the event loop only."""

    limit: int
    held: int = 0

    def take(self, size: int, *, mine: int) -> None:
        """Hold `size` more bytes for a request that holds `mine` already; Overloaded when
        that would pass the limit while other requests hold bytes too."""
        if self.held + size > self.limit and self.held > mine:
            raise Overloaded(
                "the server is taking in as much as it may at once: try again in a second"
            )
        self.held += size

    def give(self, size: int) -> None:
        """Let go of bytes taken."""
        self.held -= size


class Changed:
    """Wakes the requests waiting for an organisation's next version (`/cdr/changes?wait=`).
    Used on the event loop only; the store's watcher thread reaches it through
    `call_soon_threadsafe`."""

    def __init__(self) -> None:
        self._signals: dict[str, asyncio.Event] = {}

    def signal(self, org: str) -> asyncio.Event:
        """The event set at `org`'s next change (take it before reading, so that a change
        committed after the read is not missed)."""
        signal = self._signals.get(org)
        if signal is None:
            signal = self._signals[org] = asyncio.Event()
        return signal

    def changed(self, org: str | None) -> None:
        """`org` (None: any organisation) has new versions: wake whoever waits for them."""
        if org is None:
            signals, self._signals = list(self._signals.values()), {}
        else:
            found = self._signals.pop(org, None)
            signals = [] if found is None else [found]
        for signal in signals:
            signal.set()


@dataclass
class AppState:
    """Built once by create_app. Nothing touches the database on the event loop: reads run on
    `readers` (each thread with its own connection, each read its own snapshot), writes on the
    one `writer`."""

    settings: Settings
    store: Store
    clock: Callable[[], int]
    orgs: KnownOrgs
    writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="samtal-writer")
    )
    readers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(READERS, thread_name_prefix="samtal-reader")
    )
    inflight: InFlight = field(init=False)
    #: Organisations by name, once looked up (an organisation's zone never changes).
    known: dict[str, Org] = field(default_factory=dict)
    #: When each token's use was last written (see _auth.TOUCH_EVERY).
    touched: dict[int, int] = field(default_factory=dict)
    changed: Changed = field(default_factory=Changed)
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        self.inflight = InFlight(self.settings.max_inflight_bytes)
        self.limits = Limits(self.settings.redis_url, self.store.installation_id())

    async def write(self, work: Callable[[], T]) -> T:
        """Run `work` on the writer thread: SQLite takes one writer at a time anyway."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, work)

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(*args)` on a reader thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.readers, work, *args)

    def shutdown(self) -> None:
        """Finish the work handed to the threads, then stop them."""
        self.writer.shutdown(wait=True)
        self.readers.shutdown(wait=True)


def state(request: Request) -> AppState:
    """The app's shared state (a FastAPI dependency)."""
    found: AppState = request.app.state.samtal
    return found
