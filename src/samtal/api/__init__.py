"""The HTTP API: `create_app(settings)` builds it; nothing is made at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from samtal import __version__
from samtal.api import events, history
from samtal.api._problems import install
from samtal.api._state import AppState, state
from samtal.clock import system_clock
from samtal.duties import run_duties
from samtal.ingest import KnownOrgs
from samtal.settings import Settings
from samtal.store import Store, open_store

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Callable[[], int] = system_clock
) -> FastAPI:
    """The API over `store` (default: the one settings name), with `clock` for "now"."""
    store = store if store is not None else open_store(settings.database_url)
    shared = AppState(settings, store, clock, KnownOrgs(store))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        duties = asyncio.create_task(_duty_loop(shared))
        try:
            yield
        finally:
            duties.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await duties
            shared.shutdown()

    # The docs' scripts and styles come from the package: /docs works without internet.
    app = FastAPIOffline(
        title="samtal",
        version=__version__,
        summary="Call history of your whole organisation, as aggregated call records.",
        lifespan=lifespan,
    )
    app.state.samtal = shared
    install(app)
    app.include_router(history.router)
    app.include_router(events.router)

    @app.get("/healthz", summary="Liveness and database check")
    async def healthz(app_state: Annotated[AppState, Depends(state)]) -> dict[str, str]:
        await app_state.read(app_state.store.orgs)
        return {"status": "ok"}

    return app


async def _duty_loop(app: AppState) -> None:
    """Close idle calls and purge expired ones every `duty_interval_seconds`, on the writer."""
    while True:
        await asyncio.sleep(app.settings.duty_interval_seconds)
        try:
            await app.write(lambda: run_duties(app.store, app.settings, now=app.clock()))
        except Exception:
            log.exception("background duties failed; trying again next round")
