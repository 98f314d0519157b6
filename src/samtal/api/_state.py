"""What the app's handlers share: settings, the store, the clock and the one writer thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request

from samtal.ingest import KnownOrgs
from samtal.settings import Settings
from samtal.store import Store

T = TypeVar("T")


@dataclass
class AppState:
    """Built once by create_app; reads run on the event loop, every write on `writer`."""

    settings: Settings
    store: Store
    clock: Callable[[], int]
    orgs: KnownOrgs
    writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="samtal-writer")
    )
    zones: dict[str, str] = field(default_factory=dict)
    #: When each token's use was last written (see _auth.TOUCH_EVERY).
    touched: dict[int, int] = field(default_factory=dict)

    async def write(self, work: Callable[[], T]) -> T:
        """Run `work` on the writer thread: SQLite takes one writer at a time anyway."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, work)


def state(request: Request) -> AppState:
    """The app's shared state (a FastAPI dependency)."""
    found: AppState = request.app.state.samtal
    return found
