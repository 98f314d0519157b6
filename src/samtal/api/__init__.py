"""The HTTP API: `create_app(settings)` builds it; nothing is made at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Response
from fastapi_offline import FastAPIOffline

from samtal import __version__, metrics
from samtal.api import changes, events, history
from samtal.api._auth import ingest_token
from samtal.api._logs import TEXT_FORMAT
from samtal.api._logs import configure as configure_logging
from samtal.api._middleware import RequestLog
from samtal.api._openapi import with_current_examples
from samtal.api._problems import install, responses
from samtal.api._state import AppState, state
from samtal.clock import system_clock
from samtal.duties import run_duties
from samtal.errors import NotReady
from samtal.ingest import KnownOrgs
from samtal.settings import Settings
from samtal.store import Store, Token, open_store
from samtal.webhooks import Deliverer

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
        stop_watching = _watch_changes(shared, asyncio.get_running_loop())
        try:
            yield
        finally:
            stop_watching()
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
    app.add_middleware(RequestLog)
    with_current_examples(app, clock)
    app.include_router(history.router)
    app.include_router(changes.router)
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
            **responses(401, 403),
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
            await asyncio.wait_for(app_state.read(app_state.store.orgs), READY_TIMEOUT)
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
    return create_app(settings)


#: Seconds /readyz waits for the database.
READY_TIMEOUT = 2.0
#: How samtal's own log lines look beside uvicorn's (text).
LOG_FORMAT = TEXT_FORMAT


def _watch_changes(app: AppState, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Start the thread that hears of every commit of new versions (by any process) and wakes
    the waiting feed requests; what stops it."""
    stop = threading.Event()

    def changed(org: str | None) -> None:
        loop.call_soon_threadsafe(app.changed.changed, org)

    def watch() -> None:
        try:
            app.store.watch(stop, changed)
        except Exception:
            log.exception("the change watcher stopped: waiting feed requests answer at timeout")

    thread = threading.Thread(target=watch, name="samtal-changes", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(5)

    return halt


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
                now_leading = await app.write(app.store.lead_duties)
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
                    report = await app.write(
                        lambda: run_duties(app.store, app.settings, now=app.clock())
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
    return Deliverer(
        app.store,
        clock=app.clock,
        read=app.read,
        write=app.write,
        woken=app.changed.signal,
        schedule=app.settings.webhook_retry_delays,
    )


__all__ = ["LOG_FORMAT", "app_from_env", "configure_logging", "create_app"]
