"""POST /events: the switch's events over HTTP, with an operator's ingest token (spec/api.md)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from samtal.api._auth import ingest_token
from samtal.api._problems import responses
from samtal.api._state import AppState, state
from samtal.errors import BadBody, TooLarge, UnsupportedMediaType
from samtal.events import Decoded, decode_array, decode_batch
from samtal.ingest import Report, ingest
from samtal.store import Token

router = APIRouter()

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
        "array (`application/json`). Answers 200 once every accepted event is durably stored; "
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
                "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
            },
        }
    },
    responses={
        200: {
            "description": "What the delivery did.",
            "content": {"application/json": {"schema": _REPORT_SCHEMA}},
        },
        **responses(400, 401, 403, 413, 415),
    },
)
async def post_events(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    _token: Annotated[Token, Depends(ingest_token)],
) -> Response:
    """Read the body within the limit, then decode and store it on the writer thread."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("", "application/x-ndjson", "application/json"):
        raise UnsupportedMediaType(
            f"content type {media!r} is not taken here: send application/x-ndjson (one event "
            "per line) or application/json (an array of events)"
        )
    body = await _read_body(request, app.settings.max_body_bytes)
    report = await app.write(lambda: _store(app, body, is_array=media == "application/json"))
    return Response(orjson.dumps(report.to_json()), media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = TooLarge(f"the body is over the limit of {limit:,} bytes: send smaller batches")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large
        parts.append(part)
    return b"".join(parts)


def _store(app: AppState, body: bytes, *, is_array: bool) -> Report:
    try:
        body.decode()
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text: send NDJSON or a JSON array of events") from None
    if is_array:
        try:
            results = decode_array(body)
        except ValueError as exc:
            raise BadBody(str(exc)) from None
        decoded = Decoded.of(results, range(1, len(results) + 1))
    else:
        decoded = decode_batch(body.split(b"\n"))
        if (
            not decoded.events
            and decoded.rejections
            and all(r.reason.startswith("not valid JSON") for r in decoded.rejections)
        ):
            raise BadBody(
                "the body is not NDJSON: no line of it is JSON (send one event, a "
                "JSON object, per line)"
            )
    return ingest(app.store, decoded, orgs=app.orgs, now=app.clock())
