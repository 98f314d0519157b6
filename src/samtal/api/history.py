"""GET /cdr/historik: an organisation's call records for a period, streamed (spec/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from samtal.api._auth import read_org
from samtal.api._problems import responses
from samtal.api._state import AppState, state
from samtal.period import FORMS, parse_period
from samtal.records import FIELDS
from samtal.store import Org
from samtal.times import zone

router = APIRouter()

_RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "callerNo": {"type": ["string", "null"], "description": "Who called; null if withheld."},
        "start": {"type": "string", "description": "When the caller dialed."},
        "receivingNo": {
            "type": ["string", "null"],
            "description": "The response group that first received the call.",
        },
        "received": {"type": ["string", "null"], "description": "When it was received."},
        "calleeNo": {"type": ["string", "null"], "description": "The first real person."},
        "calleeAnswered": {"type": ["string", "null"], "description": "When they answered."},
        "stop": {"type": "string", "description": "When the call counts as finished."},
    },
    "required": list(FIELDS),
}


@router.get(
    "/cdr/historik",
    summary="Call records of a period",
    description=(
        "The aggregated call records of your organisation whose `start` lies in the period, "
        "ordered by start (then call), each with exactly seven fields in a fixed order. Both "
        "bounds are inclusive and name a whole unit (a day, a minute, a second, a fraction). "
        "Times without an offset are local time in the organisation's zone."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The records, as a JSON array (streamed).",
            "content": {"application/json": {"schema": {"type": "array", "items": _RECORD_SCHEMA}}},
        },
        **responses(400, 401, 403),
    },
)
async def historik(
    app: Annotated[AppState, Depends(state)],
    org: Annotated[Org, Depends(read_org)],
    from_: Annotated[
        str | None,
        Query(alias="from", description=f"Start. Forms: {FORMS}.", examples=["2017-01-04 08:00"]),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            description="End (inclusive); default now. Same forms.", examples=["2017-01-04 17:00"]
        ),
    ] = None,
) -> StreamingResponse:
    """Parse, fetch, stream: the period is checked before the first byte goes out."""
    period = parse_period(
        from_, to, zone=zone(org.tz), now=app.clock(), retention_days=app.settings.retention_days
    )
    chunks = app.store.records(org=org.name, start=period.start, end=period.end)
    return StreamingResponse(_json_array(app, chunks), media_type="application/json")


async def _json_array(app: AppState, chunks: Iterator[list[bytes]]) -> AsyncIterator[bytes]:
    """`[`, the records joined by commas, `]`. Each chunk is fetched on a reader thread (the
    store holds no snapshot between chunks) while the one before it is being sent."""
    yield b"["
    first = True
    pending = asyncio.ensure_future(app.read(next, chunks, None))
    try:
        while (rows := await pending) is not None:
            pending = asyncio.ensure_future(app.read(next, chunks, None))
            body = b",".join(rows)
            yield body if first else b"," + body
            first = False
    finally:
        # The client may have gone: let the fetch under way finish before closing the scan.
        with contextlib.suppress(Exception):
            await pending
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield b"]"
