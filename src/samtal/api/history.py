"""GET /cdr/historik: an organisation's call records for a period, streamed (spec/api.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from samtal.api._auth import limited_read_org
from samtal.api._formats import CSV, Format, choose, stream
from samtal.api._problems import only_params, responses
from samtal.api._schemas import DETAILED_RECORD, RECORD
from samtal.api._state import AppState, state
from samtal.filters import NAMES as FILTERS
from samtal.filters import parse_filters
from samtal.period import FORMS, PATTERN, parse_period
from samtal.records import DETAILED_FIELDS, FIELDS, OUTCOMES
from samtal.store import Org
from samtal.times import US_PER_SECOND, render, zone

#: The header with the organisation's completeness watermark (query.md, "Completeness").
COMPLETE_THROUGH = "Samtal-Complete-Through"
COMPLETE_THROUGH_HEADER = {
    "description": (
        "Every call that started before this instant has its final record (unless events "
        "reached the server later than the settle time after they happened): poll next time "
        "from here, and nothing still in progress now is missed."
    ),
    "schema": {"type": "string", "examples": ["2017-01-04T16:05:00.000+01:00"]},
}

router = APIRouter(dependencies=[Depends(only_params("from", "to", "view", "format", *FILTERS))])
#: The number filters as documented: a number, a prefix and `*`, or empty for null.
_NUMBER_FILTER = {
    "type": "array",
    "items": {"type": "string", "maxLength": 65, "pattern": r"^[^*]*\*?$"},
}
_DURATION = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"


def _number(name: str, what: str, example: str) -> Any:
    return Query(
        alias=name,
        description=(
            f"Only records whose {what} equals the value; a value ending in `*` matches every "
            "value that starts with what comes before it; an empty value matches null. Given "
            "several times: any of them."
        ),
        json_schema_extra={**_NUMBER_FILTER, "examples": [[example]]},
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
    request: Request,
    app: Annotated[AppState, Depends(state)],
    org: Annotated[Org, Depends(limited_read_org)],
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
    caller_no: Annotated[list[str] | None, _number("callerNo", "`callerNo`", "+4672111111")] = None,
    receiving_no: Annotated[
        list[str] | None, _number("receivingNo", "`receivingNo`", "622")
    ] = None,
    callee_no: Annotated[list[str] | None, _number("calleeNo", "`calleeNo`", "+4672*")] = None,
    number: Annotated[
        list[str] | None,
        _number("number", "`callerNo`, `receivingNo` or `calleeNo`", "+4672555555"),
    ] = None,
    outcome: Annotated[
        list[str] | None,
        Query(
            description="Only records of this outcome (given several times: any of them).",
            json_schema_extra={
                "items": {"type": "string", "enum": list(OUTCOMES)},
                "examples": [["abandoned", "rejected"]],
            },
        ),
    ] = None,
    min_duration: Annotated[
        str | None,
        Query(
            alias="minDuration",
            description="Only records with `stop - start` of at least this many seconds.",
            json_schema_extra={"pattern": _DURATION, "examples": ["30"]},
        ),
    ] = None,
    max_duration: Annotated[
        str | None,
        Query(
            alias="maxDuration",
            description="Only records with `stop - start` of at most this many seconds.",
            json_schema_extra={"pattern": _DURATION, "examples": ["2.5"]},
        ),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Parse, fetch, stream: the period, filters and format are checked before the first
    byte goes out."""
    chosen = choose(format_, accept)
    # The filters as sent, each with all its values (the parameters above document them).
    filters = parse_filters({name: request.query_params.getlist(name) for name in FILTERS})
    tz = zone(org.tz)
    now = app.clock()
    period = parse_period(from_, to, zone=tz, now=now, retention_days=app.settings.retention_days)
    settle = app.settings.settle_seconds * US_PER_SECOND
    mark = await app.store.read(
        lambda store: store.complete_through(org.name, now=now, settle=settle)
    )
    detailed = view == "detailed"
    pages = app.store.records(
        org=org.name,
        start=period.start,
        end=period.end,
        detailed=detailed,
        csv=chosen is CSV,
        filters=filters,
    )
    fields = DETAILED_FIELDS if detailed else FIELDS
    return StreamingResponse(
        _body(pages, chosen, fields),
        media_type=chosen.media_type,
        headers={COMPLETE_THROUGH: render(mark, tz)},
    )


async def _body(
    pages: AsyncGenerator[list[bytes], None], chosen: Format, fields: tuple[str, ...]
) -> AsyncIterator[bytes]:
    """The pages in the chosen format; the scan is closed however the answer ends."""
    try:
        async for body in stream(chosen, pages, fields):
            yield body
    finally:
        await pages.aclose()
