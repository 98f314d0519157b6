"""GET /cdr/historik: an organisation's call records for a period, streamed (spec/api.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response, StreamingResponse

from samtal.api._auth import Reader, reading
from samtal.api._formats import CSV, body, choose
from samtal.api._params import COMPLETE_THROUGH, COMPLETE_THROUGH_HEADER, filter_params
from samtal.api._problems import only_params, responses
from samtal.api._schemas import DETAILED_RECORD, RECORD
from samtal.api._state import AppState, state
from samtal.filters import NAMES as FILTERS
from samtal.filters import parse_filters
from samtal.period import FORMS, PATTERN, parse_period
from samtal.records import DETAILED_FIELDS, FIELDS
from samtal.times import US_PER_SECOND, render, zone

router = APIRouter(
    dependencies=[
        Depends(only_params("from", "to", "view", "format", *FILTERS, repeatable=FILTERS))
    ]
)


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
            "description": (
                "The records, streamed: a JSON array, NDJSON (one record per line) or CSV (a "
                "header row, CRLF line ends, null as an empty field), as `format` or `Accept` "
                "choose."
            ),
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"anyOf": [RECORD, DETAILED_RECORD]}}
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
            "headers": {COMPLETE_THROUGH: COMPLETE_THROUGH_HEADER},
        },
        **responses(400, 401, 403, 406, 429),
    },
)
async def historik(
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("records"))],
    given: Annotated[dict[str, list[str]], Depends(filter_params)],
    from_: Annotated[
        str,
        Query(
            alias="from",
            description=f"Start. Forms: {FORMS}.",
            json_schema_extra={"pattern": PATTERN},
        ),
    ],
    to: Annotated[
        str | None,
        Query(
            description="End (inclusive); default now. Same forms.",
            json_schema_extra={"pattern": PATTERN},
        ),
    ] = None,
    view: Annotated[
        Literal["plain", "detailed"],
        Query(
            description=(
                "plain: the seven fields. detailed: `id`, the seven fields, `version` and `seq` "
                "(the record's identity, see GET /cdr/changes)."
            )
        ),
    ] = "plain",
    format_: Annotated[
        Literal["json", "ndjson", "csv"] | None,
        Query(
            alias="format",
            description="json, ndjson or csv; overrides `Accept`. Default: by `Accept`, else json.",
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Parse, fetch, stream: the period, filters and format are checked before the first
    byte goes out, and a short answer goes in one piece."""
    org = reader.org
    chosen = choose(format_, accept)
    # The filters as sent, and the response groups the token is limited to.
    filters = replace(parse_filters(given), groups=reader.groups)
    tz = zone(org.tz)
    now = app.clock()
    period = parse_period(
        from_, to, zone=tz, now=now, retention_days=org.retention(app.settings.retention_days)
    )
    settle = app.settings.settle_seconds * US_PER_SECOND
    mark = await app.store.complete_through(org.name, now=now, settle=settle)
    detailed = view == "detailed"
    pages = app.store.records(
        org=org.name,
        start=period.start,
        end=period.end,
        detailed=detailed,
        csv=chosen is CSV,
        filters=filters,
        pseudonymize=reader.pseudonymize,
    )
    headers = {COMPLETE_THROUGH: render(mark, tz)}
    try:
        answer = await body(chosen, pages, DETAILED_FIELDS if detailed else FIELDS)
    except BaseException:
        await pages.aclose()
        raise
    if isinstance(answer, bytes):
        return Response(answer, media_type=chosen.media_type, headers=headers)
    return StreamingResponse(_closing(answer, pages), media_type=chosen.media_type, headers=headers)


async def _closing(
    chunks: AsyncIterator[bytes], pages: AsyncGenerator[list[bytes], None]
) -> AsyncIterator[bytes]:
    """`chunks`, then the scan closed, however the answer ends (a client gone midway too)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await pages.aclose()
