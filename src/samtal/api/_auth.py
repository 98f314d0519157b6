"""Bearer-token authentication: the one place that turns a token into an organisation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from samtal.api._state import AppState, state
from samtal.errors import Forbidden, TooManyRequests, Unauthenticated, UsageError, shorten
from samtal.store import Org, Token
from samtal.times import US_PER_SECOND
from samtal.tokens import digest

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")
#: `last used` is written at most this often per token, to keep reads free of writes.
TOUCH_EVERY = 60 * US_PER_SECOND
#: Seconds between two reads of the valid tokens while an address is held back (known_token).
KNOWN_EVERY = 10.0


async def _token(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    given = len(request.headers.getlist("authorization"))
    if given > 1:  # which one would be meant? (a proxy may have checked the other)
        raise UsageError(f"the `Authorization` header is given {given} times: send one token")
    # A client that keeps failing is refused before its token costs a database lookup; one
    # with a token known to be valid is not held back by others at its address (a NAT, a
    # proxy) that keep failing.
    address = request.client.host if request.client is not None else "unknown"
    limit = app.settings.auth_failure_limit
    await app.limits.refuse_failing(
        limit,
        address,
        unless=lambda: known_token(app, credentials.credentials if credentials else None),
    )
    if credentials is None:
        await app.limits.failed(limit, address)
        raise Unauthenticated(_missing(request.headers.get("authorization")))
    secret = credentials.credentials
    token = await app.store.token_for(secret)
    if token is None or token.revoked is not None:
        await app.limits.failed(limit, address)
    if token is None:
        raise Unauthenticated("unknown token: ask your operator for a valid one")
    if token.revoked is not None:
        raise Unauthenticated("this token was revoked: ask your operator for a new one")
    now = app.clock()
    if now - app.touched.get(token.id, -TOUCH_EVERY) >= TOUCH_EVERY:
        app.touched[token.id] = now
        app.store.note_use(token.id, now)
    return token


async def known_token(app: AppState, secret: str | None) -> bool:
    """Whether `secret` is a token that was not revoked when the tokens were last read. They
    are read again (one statement for all) only when it is not among them and the last read
    is over KNOWN_EVERY seconds old: a flood of made-up tokens from a held-back address costs
    a read every so often, and a token made meanwhile gets in within that time. The request
    still looks its token up after this, so a revocation holds at once."""
    if secret is None:
        return False
    hashed = digest(secret)
    if hashed in app.live_tokens:
        return True
    now = time.monotonic()
    if now - app.live_tokens_read < KNOWN_EVERY:
        return False
    app.live_tokens_read = now  # before the read: requests meanwhile do not read again
    app.live_tokens = await app.store.live_token_hashes()
    return hashed in app.live_tokens


def _missing(header: str | None) -> str:
    """What is wrong with a request that brought no bearer token, in the client's terms."""
    if header is None or not header.strip():
        return "send an API token: `Authorization: Bearer <token>`"
    scheme = header.strip().split(" ", 1)[0]
    if " " not in header.strip():
        return (
            "the `Authorization` header holds no `Bearer ` before the token: send "
            "`Authorization: Bearer <token>`"
        )
    return (
        f"the `Authorization` header uses the {shorten(scheme, 20)} scheme: send the token as "
        "`Authorization: Bearer <token>`"
    )


async def read_org(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    token: Annotated[Token, Depends(_token)],
) -> Org:
    """The organisation whose call history the request may read, with its zone."""
    if token.kind != "read" or token.org is None:
        raise Forbidden("this is an ingest token: reading call history takes a read token")
    org = await app.store.org(token.org)  # NotFound when it no longer exists
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


@dataclass(frozen=True)
class Reader:
    """Who reads, as an endpoint sees it: the organisation and what its token may see
    (privacy.md: its response groups, pseudonyms for numbers)."""

    org: Org
    token: Token

    @property
    def groups(self) -> tuple[str, ...] | None:
        """The response groups whose records it sees (None: all)."""
        return self.token.groups

    @property
    def pseudonymize(self) -> bool:
        """Whether the numbers of people reach it as pseudonyms."""
        return self.token.pseudonymize


#: What each scope opens, as a 403 tells it.
_SCOPE_OPENS = {
    "records": "reading call records (/cdr/historik, /cdr/changes, /cdr/calls)",
    "stats": "reading statistics (/cdr/stats)",
    "erase": "erasing calls (/cdr/erasures)",
}


def reading(scope: str) -> Callable[..., Awaitable[Reader]]:
    """A dependency: the reader, when its token holds `scope` (privacy.md), counted against
    its rate limit. Credentials (401) first, then the scope (403), then the parameters."""
    if scope not in _SCOPE_OPENS:
        raise ValueError(f"unknown scope {scope!r}")

    async def scoped(
        request: Request,
        app: Annotated[AppState, Depends(state)],
        org: Annotated[Org, Depends(limited_read_org)],
        token: Annotated[Token, Depends(_token)],
    ) -> Reader:
        if scope not in token.scopes:
            held = ", ".join(token.scopes) or "none"
            raise Forbidden(
                f"{_SCOPE_OPENS[scope]} takes the scope `{scope}`; this token's scopes: {held}"
            )
        return Reader(org, token)

    return scoped


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
