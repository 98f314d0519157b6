"""What the app's handlers share: settings, the store's async face, the clock, the limits."""

from __future__ import annotations

import asyncio
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from fastapi import Request

from samtal.api._limits import Limits
from samtal.errors import Overloaded
from samtal.settings import Settings
from samtal.store import AsyncStore


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


@dataclass
class AppState:
    """Built once by create_app. The handlers never touch the database themselves: they await
    the store, which decides where its work runs."""

    settings: Settings
    store: AsyncStore
    clock: Callable[[], int]
    limits: Limits
    inflight: InFlight = field(init=False)
    #: When each token's use was last written (see _auth.TOUCH_EVERY).
    touched: dict[int, int] = field(default_factory=dict)
    #: The hashes of the tokens not revoked as last read, and when (`time.monotonic`; see
    #: _auth.known_token).
    live_tokens: frozenset[bytes] = frozenset()
    live_tokens_read: float = -math.inf
    #: Set when the process is asked to stop (see `notice_stop`): held requests answer now.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.inflight = InFlight(self.settings.max_inflight_bytes)


async def state(request: Request) -> AppState:
    """The app's shared state (a FastAPI dependency). Every dependency of the app is `async`:
    FastAPI runs a plain function's on a worker thread, at every request (three hops a feed
    request, 8% of the event loop's samples with 1,000 organisations' followers)."""
    found: AppState = request.app.state.samtal
    return found


def notice_stop(stopping: asyncio.Event) -> Callable[[], None]:
    """Set `stopping` as soon as the process is asked to stop (SIGTERM, SIGINT), then let the
    server's own handler (uvicorn's) do what it does; what undoes it. uvicorn stops taking
    connections at once but waits for every request under way, and a held feed request is
    one for up to 60 s: a rolling restart of a process that 1,000 organisations' clients
    follow waited that long. Signals are the main thread's: elsewhere (a server in a test's
    thread) nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def noticed(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stopping.set)
        handler = before[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in before:
        signal.signal(sig, noticed)

    def undo() -> None:
        for sig, handler in before.items():
            if signal.getsignal(sig) is noticed:
                signal.signal(sig, handler)

    return undo
