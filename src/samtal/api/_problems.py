"""Every error as `application/problem+json` (RFC 9457), from one place."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from samtal.errors import SamtalError, UsageError, named, shorten

log = logging.getLogger(__name__)
#: Problem types are relative references (RFC 9457 allows them): no domain is implied.
TYPE_BASE = "/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error (RFC 9457): what went wrong and what to change."""

    type: str = Field(examples=[TYPE_BASE + "bad-period"])
    title: str = Field(examples=["Bad period"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["`to` (2017-01-03) is before `from` (2017-01-04)"])


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """A problem+json response."""
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` entries for these error statuses."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {}},
        }
        for status in statuses
    }


def only_params(
    *names: str, repeatable: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[None]]:
    """A dependency that makes a query parameter the endpoint does not know a 400 naming it,
    rather than ignored: `?form=2017-01-04` or `?limt=10` is a typo the client wants to hear
    about. So is one of `names` given twice, unless it is `repeatable` (a filter, whose values
    hold together): `?from=...&from=...` has no one meaning, and taking either value would
    answer a question the client may not have asked."""
    known = set(names)
    once = known - set(repeatable)

    async def check(request: Request) -> None:
        params = request.query_params
        unknown = sorted(set(params) - known)
        if unknown:
            listed = ", ".join(f"`{named(name)}`" for name in unknown[:5])
            allowed = ", ".join(f"`{name}`" for name in names) or "none"
            what = "parameter" if len(unknown) == 1 else "parameters"
            raise UsageError(f"unknown query {what} {listed}: this endpoint takes {allowed}")
        for name in sorted(once & set(params)):
            given = len(params.getlist(name))
            if given > 1:
                raise UsageError(f"`{name}` is given {given} times: give it once")

    return check


def _in_our_words(error: Any) -> str:
    """One of FastAPI's validation errors (pydantic's) as our messages say things: the
    parameter, what it must be, and what was sent."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "header"))
    name = f"`{where}`" if where else "the request"
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    sent = error.get("input")
    shown = shorten(sent) if isinstance(sent, str) else "it"
    if kind == "missing":
        return f"{name} is required"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{name} must be {expected}, not {shown}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{name} must be a whole number, not {shown}"
    if kind in ("float_parsing", "float_type"):
        return f"{name} must be a number, not {shown}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx.get('ge')}, not {shown}"
    if kind == "less_than_equal":
        return f"{name} must be at most {ctx.get('le')}, not {shown}"
    if kind == "greater_than":
        return f"{name} must be more than {ctx.get('gt')}, not {shown}"
    if kind == "less_than":
        return f"{name} must be less than {ctx.get('lt')}, not {shown}"
    if kind == "string_pattern_mismatch":
        return f"{name} is not in a form this parameter takes: {shown}"
    return f"{name} is not valid: {error.get('msg', 'see /docs')}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(SamtalError)
    async def domain(_: Request, exc: SamtalError) -> Response:
        if exc.status >= 500:
            log.error("%s", exc)
        return problem(exc.status, exc.slug, exc.title, str(exc), exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(_in_our_words(error) for error in exc.errors())
        return problem(400, "bad-request", "Bad request", detail)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> Response:
        phrase = HTTPStatus(exc.status_code).phrase
        headers = getattr(exc, "headers", None)
        allowed = (headers or {}).get("Allow")
        detail = (
            exc.detail
            if isinstance(exc.detail, str) and exc.detail != phrase
            else {
                404: "no such resource: see /docs for the endpoints",
                405: f"this endpoint takes {allowed}, not {named(request.method)}: see /docs"
                if allowed
                else "this method is not allowed here: see /docs",
            }.get(exc.status_code, phrase)
        )
        return problem(
            exc.status_code,
            phrase.lower().replace(" ", "-"),
            phrase,
            detail,
            headers,
        )

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, _: ClientDisconnect) -> Response:
        # Nothing of the request was stored, and nobody is there to read an answer.
        log.info(
            "%s %s: the client went away before its request was read",
            request.method,
            request.url.path,
        )
        return problem(400, "client-disconnected", "Client disconnected", "the request ended early")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        # Starlette raises the error again once this is sent, and uvicorn then closes the
        # connection: said here, a client keeping it alive asks its next request on a new
        # one, where it was reset.
        return problem(
            500,
            "internal-error",
            "Internal error",
            "the server failed to answer; the error is logged",
            {"Connection": "close"},
        )
