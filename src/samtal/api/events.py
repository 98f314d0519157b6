"""POST /events: the switch's events over HTTP, with an operator's ingest token (spec/api.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from samtal.api._auth import limited_ingest_token
from samtal.api._problems import only_params, responses
from samtal.api._state import AppState, state
from samtal.errors import TooSlow
from samtal.ingest import Bounds, ingest_async
from samtal.ingest.body import Body
from samtal.store import Token

router = APIRouter(dependencies=[Depends(only_params())])

#: Seconds a body may go without a byte before the request is answered 408 and its connection
#: closed. A stalled upload (a switch cut off mid-batch, a half-open connection) held what it
#: had sent of the in-flight budget (SAMTAL_MAX_INFLIGHT_BYTES) for as long as its connection
#: lived: four stalled 16 MB batches turned every other batch away with 503.
BODY_IDLE_SECONDS = 30.0

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An event v1 (see spec/events.md); unknown fields are ignored.",
    "required": ["id", "org", "call", "at", "type"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 128},
        "org": {"type": "string"},
        "call": {"type": "string", "minLength": 1, "maxLength": 128},
        "at": {"type": "string", "examples": ["2017-01-04T16:16:04.274+01:00"]},
        "type": {
            "enum": ["started", "entered", "ringing", "answered", "transferred", "hangup", "ended"]
        },
        "seq": {"type": "integer", "minimum": 0},
        "party": {"enum": ["caller", "user", "external", "function"]},
        "number": {"type": ["string", "null"]},
        "kind": {"enum": ["ATTENDANT", "ACD", "ACD_LIGHT", "HUNT_GROUP", "IVR", "VOICEMAIL"]},
        "dialed": {"type": "string"},
        "target": {"type": "string"},
    },
}
_REPORT_SCHEMA = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "description": "New events stored."},
        "duplicates": {"type": "integer", "description": "Events already stored (ignored)."},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer"},
                    "id": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


@router.post(
    "/events",
    summary="Deliver events",
    description=(
        "Events v1 as NDJSON (`application/x-ndjson`, also assumed without a type) or a JSON "
        "array (`application/json`), as is or gzip-compressed (`Content-Encoding: gzip`). "
        "Answers 200 once every accepted event is durably stored; "
        "invalid lines are rejected one by one with their line and reason while the rest is "
        "accepted. Re-sending an event is harmless: it counts as a duplicate."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One event per line."}
                },
                "application/json": {
                    "schema": {
                        "type": "array",
                        "description": (
                            "Events. Each item is checked alone: one that is not a valid event "
                            "is rejected in the answer with its position and reason, and the "
                            "others are stored (200), so any JSON value is taken as an item."
                        ),
                        "items": {"anyOf": [_EVENT_SCHEMA, {"description": "Rejected alone."}]},
                    }
                },
            },
        }
    },
    responses={
        200: {
            "description": "What the delivery did.",
            "content": {"application/json": {"schema": _REPORT_SCHEMA}},
        },
        **responses(400, 401, 403, 408, 413, 415, 429, 503),
    },
)
async def post_events(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    _token: Annotated[Token, Depends(limited_ingest_token)],
) -> Response:
    """Receive the body within the limits, decode it (off the event loop, and off the store's
    writers: they only write), then store it."""
    headers = request.headers
    body = Body(
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
        limit=app.settings.max_body_bytes,
    )
    body.expect(headers.get("content-length"))
    held = 0
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), BODY_IDLE_SECONDS)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise TooSlow(
                    f"no byte of the body came for {BODY_IDLE_SECONDS:g} s, after {held:,} "
                    "bytes: send it again"
                ) from None
            size = body.feed(chunk)
            app.inflight.take(size, mine=held)
            held += size
        decoded = await run_in_threadpool(body.decoded)
        now = app.clock()
        bounds = Bounds.of(app.settings, now)
        report = await ingest_async(app.store, decoded, now=now, bounds=bounds)
    finally:
        app.inflight.give(held)
    return Response(orjson.dumps(report.to_json()), media_type="application/json")
