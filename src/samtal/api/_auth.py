"""Bearer-token authentication: the one place that turns a token into an organisation."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from samtal.api._state import AppState, state
from samtal.errors import Forbidden, NotFound, TooManyRequests, Unauthenticated
from samtal.store import Org, Token
from samtal.times import US_PER_SECOND
from samtal.tokens import digest

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")
#: `last used` is written at most this often per token, to keep reads free of writes.
TOUCH_EVERY = 60 * US_PER_SECOND


async def _token(
    app: Annotated[AppState, Depends(state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    if credentials is None:
        raise Unauthenticated("send an API token: `Authorization: Bearer <token>`")
    token = await app.read(app.store.token_for, credentials.credentials)
    if token is None:
        raise Unauthenticated("unknown token: ask your operator for a valid one")
    if token.revoked is not None:
        raise Unauthenticated("this token was revoked: ask your operator for a new one")
    now = app.clock()
    if now - app.touched.get(token.id, -TOUCH_EVERY) >= TOUCH_EVERY:
        app.touched[token.id] = now
        future = app.writer.submit(app.store.touch_token, token.id, now=now)
        future.add_done_callback(_log_failure)
    return token


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not note a token's use: %s", exc)


async def read_org(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    token: Annotated[Token, Depends(_token)],
) -> Org:
    """The organisation whose call history the request may read, with its zone."""
    if token.kind != "read" or token.org is None:
        raise Forbidden("this is an ingest token: reading call history takes a read token")
    org = app.known.get(token.org)
    if org is None:
        org = await app.read(app.store.org, token.org)
        if org is None:
            raise NotFound(f"organisation {token.org!r} no longer exists")
        app.known[token.org] = org
    request.state.org = org.name  # for the request's log line
    return org


async def limited_read_org(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    org: Annotated[Org, Depends(read_org)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Org:
    """`read_org`, counted against the token's rate limit: the RateLimit headers go on every
    answer (an error's too), and a request over the limit is a 429."""
    assert credentials is not None  # read_org let it through
    await _count(request, app, app.settings.rate_limit, credentials, "read")
    return org


async def limited_ingest_token(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    token: Annotated[Token, Depends(ingest_token)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    """`ingest_token`, counted against SAMTAL_INGEST_RATE_LIMIT (off by default)."""
    assert credentials is not None
    await _count(request, app, app.settings.ingest_rate_limit, credentials, "ingest")
    return token


async def _count(
    request: Request,
    app: AppState,
    setting: str,
    credentials: HTTPAuthorizationCredentials,
    scope: str,
) -> None:
    # Keyed by the token's hash (never its row id, never the secret).
    key = digest(credentials.credentials).hex()[:32]
    try:
        verdict = await app.limits.check(setting, key, scope)
    except TooManyRequests as exc:
        request.state.headers = exc.headers
        raise
    request.state.headers = verdict.headers  # every answer carries them (see _middleware)


async def ingest_token(token: Annotated[Token, Depends(_token)]) -> Token:
    """An operator's ingest token, which may post events for any organisation."""
    if token.kind != "ingest":
        raise Forbidden("this is a read token: posting events takes an ingest token")
    return token
