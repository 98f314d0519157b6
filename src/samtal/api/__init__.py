"""The HTTP API: `create_app(settings)` builds it; nothing is made at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated

from fastapi import Depends, FastAPI, Response
from fastapi_offline import FastAPIOffline

from samtal import __version__, metrics
from samtal.api import calls, changes, erasures, events, history, stats
from samtal.api._auth import ingest_token
from samtal.api._limits import Limits
from samtal.api._middleware import HeadAsGet, RequestLog
from samtal.api._openapi import with_current_examples
from samtal.api._problems import install, responses
from samtal.api._state import AppState, notice_stop, state
from samtal.api._transport import collect_rarely, stop_with_parent
from samtal.clock import system_clock
from samtal.errors import NotReady
from samtal.logs import configure as configure_logging
from samtal.outbound.duties import run_duties
from samtal.outbound.webhooks import Deliverer
from samtal.settings import Settings
from samtal.store import AsyncStore, Store, Token, open_store

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Callable[[], int] = system_clock
) -> FastAPI:
    """The API over `store` (default: the one settings name), with `clock` for "now"."""
    store = store if store is not None else open_store(settings.database_url)
    limits = Limits(settings.redis_url, store.installation_id())
    shared = AppState(settings, AsyncStore(store), clock, limits)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        shared.store.watch()
        undo = notice_stop(shared.stopping)
        duties = asyncio.create_task(_duty_loop(shared))
        try:
            yield
        finally:
            undo()
            duties.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await duties
            shared.store.close()

    # The docs' scripts and styles come from the package: /docs works without internet.
    app = FastAPIOffline(
        title="samtal",
        version=__version__,
        summary="Call history of your whole organisation, as aggregated call records.",
        lifespan=lifespan,
    )
    app.state.samtal = shared
    install(app)
    app.add_middleware(HeadAsGet, routes=app.router.routes)
    app.add_middleware(RequestLog)  # the outer one: it logs a HEAD as a HEAD
    with_current_examples(app, clock)
    app.include_router(history.router)
    app.include_router(changes.router)
    app.include_router(calls.router)
    app.include_router(stats.router)
    app.include_router(erasures.router)
    app.include_router(events.router)

    @app.get(
        "/healthz",
        summary="Liveness: the process answers",
        description="Touches nothing else: a database outage does not make the process unwell.",
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        summary="Metrics in the Prometheus text format (an operator's ingest token)",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **responses(401, 403, 429),
        },
    )
    async def metrics_page(_token: Annotated[Token, Depends(ingest_token)]) -> Response:
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.get(
        "/readyz",
        summary="Readiness: the database, and Redis when configured, can be reached",
        responses=responses(503),
    )
    async def readyz(app_state: Annotated[AppState, Depends(state)]) -> dict[str, str]:
        missing = []
        try:
            await asyncio.wait_for(app_state.store.read(_ready), READY_TIMEOUT)
        except Exception as exc:
            missing.append(f"the database cannot be reached ({type(exc).__name__})")
        if not await app_state.limits.ready():
            missing.append("Redis (the shared rate limits) cannot be reached")
        if missing:
            raise NotReady("; ".join(missing))
        return {"status": "ready"}

    return app


def app_from_env() -> FastAPI:
    """The API as settings from the environment describe it: what each of `samtal serve
    --workers N`'s processes runs."""
    settings = Settings.from_env()
    configure_logging(settings.log_format)
    collect_rarely()
    stop_with_parent()
    return create_app(settings)


#: Seconds /readyz waits for the database.
READY_TIMEOUT = 2.0


def _ready(store: Store) -> None:
    store.ping()


async def _duty_loop(app: AppState) -> None:
    """In the one process of the installation that leads the duties (the others stand by to
    take over): deliver webhooks all along, and every `duty_interval_seconds` close idle calls
    and purge expired ones."""
    leading, first = False, True
    deliveries: asyncio.Task[None] | None = None
    try:
        while True:
            if not first:
                await asyncio.sleep(app.settings.duty_interval_seconds)
            try:
                now_leading = await app.store.write(lambda store: store.lead_duties())
                if now_leading != leading:
                    leading = now_leading
                    log.info(
                        "this process %s the background duties", "leads" if leading else "left"
                    )
                if leading and deliveries is None:
                    deliveries = asyncio.create_task(_deliverer(app).run())
                elif not leading and deliveries is not None:
                    deliveries.cancel()
                    deliveries = None
                if leading and not first:
                    report = await app.store.write(
                        partial(
                            run_duties,
                            settings=app.settings,
                            now=app.clock(),
                            between=app.store.store_waiting,
                        )
                    )
                    metrics.DUTY_RUNS.inc()
                    metrics.DUTY_FAILURES.inc(report.failed)
            except Exception:
                metrics.DUTY_FAILURES.inc()
                log.exception("background duties failed; trying again next round")
            first = False
    finally:
        if deliveries is not None:
            deliveries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliveries


def _deliverer(app: AppState) -> Deliverer:
    return Deliverer(app.store, clock=app.clock, schedule=app.settings.webhook_retry_delays)


__all__ = ["app_from_env", "create_app"]
