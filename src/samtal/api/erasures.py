"""POST and GET /cdr/erasures: erase calls for good, and the audit trail (privacy.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from samtal.api._auth import Reader, reading
from samtal.api._problems import only_params, responses
from samtal.api._state import AppState, state
from samtal.errors import BadBody, TooLarge, UnsupportedMediaType, shorten
from samtal.events import why_not
from samtal.period import parse_selection
from samtal.store import Erasure
from samtal.times import render, zone

router = APIRouter(dependencies=[Depends(only_params())])

#: The largest body POST /cdr/erasures takes (privacy.md).
MAX_BODY = 64 * 1024
#: The most calls one erasure by call names.
MAX_CALLS = 1000

_ERASURE = {
    "type": "object",
    "required": ["id", "at", "by", "selector", "calls"],
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "examples": ["2026-11-29T10:15:02.118+01:00"]},
        "by": {"type": "string", "examples": ["token 12", "cli"]},
        "selector": {
            "type": "object",
            "description": "`calls` (the ids), or `number` as `hash:` and its keyed hash, "
            "`from` and `to` as given.",
        },
        "calls": {"type": "integer", "description": "Calls erased (in progress included)."},
    },
}
_REQUEST = {
    "type": "object",
    "description": "Either `calls`, or `number` with optional `from`/`to` (the forms of "
    "/cdr/historik, no retention limit).",
    "properties": {
        "calls": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 128},
            "minItems": 1,
            "maxItems": MAX_CALLS,
        },
        "number": {"type": "string", "examples": ["+4672111111"]},
        "from": {"type": "string"},
        "to": {"type": "string"},
    },
    "additionalProperties": False,
}


@router.post(
    "/cdr/erasures",
    summary="Erase calls for good",
    description=(
        "Erases every event and record of the calls named (`calls`), or of every call in which "
        "`number` appears in any event (optionally only those that started from `from` to "
        "`to`), in one transaction. Each erased record leaves a tombstone in the feed with "
        '`"reason": "erased"`; late events of an erased call are dropped. Takes a token with '
        "the scope `erase`. Answers the erasure as the audit trail keeps it."
    ),
    status_code=201,
    response_class=Response,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}}
    },
    responses={
        201: {"description": "Erased.", "content": {"application/json": {"schema": _ERASURE}}},
        **responses(400, 401, 403, 413, 415, 429),
    },
)
async def post_erasure(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("erase"))],
) -> Response:
    """Read and check the whole request before anything is erased."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", ""):
        raise UnsupportedMediaType(f"send the erasure as application/json, not {shorten(media)}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise TooLarge(f"an erasure's body is at most {MAX_BODY // 1024} kB")
    org = reader.org
    asked = _asked(bytes(body))
    period = None
    if "number" in asked and (asked.get("from") is not None or asked.get("to") is not None):
        chosen = parse_selection(asked.get("from"), asked.get("to"), zone=zone(org.tz))
        period = (chosen.start, chosen.end)
    by = f"token {reader.token.id}"
    number = asked.get("number")
    calls = asked.get("calls")
    if number is not None:  # the scan on a reader; the writer only erases
        calls = await app.store.read(
            lambda store: store.calls_with_number(org.name, number, period)
        )
    now = app.clock()
    done = await app.store.write(
        lambda store: store.erase(
            org.name, by=by, now=now, calls=calls, number=number, period=period,
            shown=(asked.get("from"), asked.get("to")),
        )
    )  # fmt: skip
    return Response(
        orjson.dumps(_shown(done, org.tz)), status_code=201, media_type="application/json"
    )


@router.get(
    "/cdr/erasures",
    summary="The audit trail of erasures",
    description=(
        "Your organisation's erasures, newest first: who asked, when, what they selected (a "
        "number only as its keyed hash) and how many calls went. Takes the scope `erase`."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The erasures.",
            "content": {"application/json": {"schema": {"type": "array", "items": _ERASURE}}},
        },
        **responses(400, 401, 403, 429),
    },
)
async def erasures(
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("erase"))],
) -> Response:
    org = reader.org
    found = await app.store.read(lambda store: store.erasures(org.name))
    return Response(
        orjson.dumps([_shown(erasure, org.tz) for erasure in found]), media_type="application/json"
    )


def _shown(erasure: Erasure, tz: str) -> dict[str, Any]:
    return {
        "id": erasure.id,
        "at": render(erasure.at, zone(tz)),
        "by": erasure.by,
        "selector": erasure.selector,
        "calls": erasure.calls,
    }


def _once(members: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body whose members each come once; BadBody naming one that does not.
    (orjson, like most parsers, would keep the last of two: an erasure of the wrong calls.)"""
    names = [name for name, _ in members]
    if len(set(names)) < len(names):
        twice = next(name for n, name in enumerate(names) if name in names[:n])
        raise BadBody(f"member {shorten(twice)} is given more than once: give it once")
    return dict(members)


def _asked(body: bytes) -> dict[str, Any]:
    """The erasure a body asks for, checked: `calls`, or `number` with optional `from`/`to`;
    BadBody naming what is wrong."""
    if not body.strip():
        raise BadBody('the body is empty: send {"calls": [...]} or {"number": "..."}')
    try:
        asked = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None
    if not isinstance(asked, dict):
        raise BadBody('the body is not a JSON object: send {"calls": [...]} or {"number": "..."}')
    json.loads(body, object_pairs_hook=_once)  # a member twice: which one was meant?
    unknown = sorted(set(asked) - {"calls", "number", "from", "to"})
    if unknown:
        raise BadBody(
            f"unknown member {shorten(unknown[0])}: an erasure takes `calls`, or `number` with "
            "`from` and `to`"
        )
    if ("calls" in asked) == ("number" in asked):
        raise BadBody("give either `calls` or `number`, not both and not neither")
    if "calls" in asked:
        if "from" in asked or "to" in asked:
            raise BadBody("`from` and `to` choose the calls of a `number`, not of `calls`")
        calls = asked["calls"]
        if not isinstance(calls, list) or not calls or len(calls) > MAX_CALLS:
            raise BadBody(f"`calls` is a list of 1 to {MAX_CALLS:,} call ids")
        for n, call in enumerate(calls, 1):
            why = why_not("id", "call", call)
            if why is not None:
                raise BadBody(f"`calls` item {n}: {why}")
        return asked
    why = why_not("number", "number", asked["number"])
    if why is not None:
        raise BadBody(why)
    for name in ("from", "to"):
        if asked.get(name) is not None and not isinstance(asked[name], str):
            raise BadBody(f"`{name}` is a date or a time, as /cdr/historik takes it")
    return asked
