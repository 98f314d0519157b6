"""What the app's handlers share: settings, the store's async face, the clock, the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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

    def __post_init__(self) -> None:
        self.inflight = InFlight(self.settings.max_inflight_bytes)


async def state(request: Request) -> AppState:
    """The app's shared state (a FastAPI dependency). Every dependency of the app is `async`:
    FastAPI runs a plain function's on a worker thread, at every request (three hops a feed
    request, 8% of the event loop's samples with 1,000 organisations' followers)."""
    found: AppState = request.app.state.samtal
    return found
