"""GET /cdr/stats: the figures of stats.md for a period, with stated definitions."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from samtal.api._auth import Reader, reading
from samtal.api._params import COMPLETE_THROUGH, COMPLETE_THROUGH_HEADER, filter_params
from samtal.api._problems import only_params, responses
from samtal.api._state import AppState, state
from samtal.filters import NAMES as FILTERS
from samtal.filters import parse_filters
from samtal.period import FORMS, PATTERN, parse_period
from samtal.stats.figures import (
    Definitions,
    Tally,
    counting,
    csv_text,
    parse_definitions,
    summarize,
)
from samtal.store import Store
from samtal.times import US_PER_SECOND, render, zone

CHOICES = ("sl", "slBase", "shortAbandon", "days", "hours", "interval")
router = APIRouter(
    dependencies=[
        Depends(only_params("from", "to", "format", *CHOICES, *FILTERS, repeatable=FILTERS))
    ]
)
_SECONDS = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"


@router.get(
    "/cdr/stats",
    summary="Statistics of a period, with stated definitions",
    description=(
        "The figures of stats.md for your organisation's records whose `start` lies in the "
        "period (read as /cdr/historik reads it), after the filters of /cdr/historik: per "
        "response group and for all, offered, answered, abandoned, short abandons, answer "
        "rate, service level, average speed of answer and time to abandon, the wait "
        "distribution; calls, reached a person, missed, talk time, by day and by hour and "
        "weekday; per interval with `interval`. Every choice a figure depends on is a "
        "parameter, and `definitions` echoes the ones in force."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The figures, as JSON (stats.md) or CSV (a row per interval and group).",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            },
            "headers": {COMPLETE_THROUGH: COMPLETE_THROUGH_HEADER},
        },
        **responses(400, 401, 403, 429),
    },
)
async def stats(
    request: Request,
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("stats"))],
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
        Query(description="End (inclusive); default now.", json_schema_extra={"pattern": PATTERN}),
    ] = None,
    sl: Annotated[
        str | None,
        Query(
            description="The service level threshold, seconds (more than 0, at most 3600; 20).",
            json_schema_extra={"pattern": _SECONDS, "examples": ["20"]},
        ),
    ] = None,
    sl_base: Annotated[
        Literal["offered", "answered"] | None,
        Query(
            alias="slBase",
            description="The service level's denominator: offered (abandoned calls count "
            "against it; the default) or answered.",
        ),
    ] = None,
    short_abandon: Annotated[
        str | None,
        Query(
            alias="shortAbandon",
            description="Seconds: an offered call nobody answered that lasted less is a short "
            "abandon, left out of the group figures but counted (0: none).",
            json_schema_extra={"pattern": _SECONDS, "examples": ["5"]},
        ),
    ] = None,
    days: Annotated[
        str | None,
        Query(
            description="ISO weekdays of the local start to keep: 1-5, or 1,3,6-7 (Monday 1).",
            json_schema_extra={
                "pattern": r"^[1-7](-[1-7])?(,[1-7](-[1-7])?)*$",
                "examples": ["1-5"],
            },
        ),
    ] = None,
    hours: Annotated[
        str | None,
        Query(
            description="Local time of day of the start to keep, HH:MM-HH:MM (end excluded).",
            json_schema_extra={
                "pattern": r"^[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}$",
                "examples": ["08:00-17:00"],
            },
        ),
    ] = None,
    interval: Annotated[
        Literal["15min", "30min", "hour", "day", "week"] | None,
        Query(description="Also give the figures per interval, aligned to the local clock."),
    ] = None,
    format_: Annotated[
        Literal["json", "csv"] | None,
        Query(alias="format", description="json (the default) or csv."),
    ] = None,
) -> Response:
    """Parse every choice and filter, sum the records where they are stored, then work the
    figures out on a reader thread."""
    params = request.query_params
    definitions = parse_definitions(
        sl=params.get("sl"),
        sl_base=params.get("slBase"),
        short_abandon=params.get("shortAbandon"),
        days=params.get("days"),
        hours=params.get("hours"),
        interval=params.get("interval"),
    )
    filters = replace(parse_filters(given), groups=reader.groups)
    org = reader.org
    tz = zone(org.tz)
    now = app.clock()
    period = parse_period(
        from_, to, zone=tz, now=now, retention_days=org.retention(app.settings.retention_days)
    )
    settle = app.settings.settle_seconds * US_PER_SECOND
    # The watermark first: every call it says has settled is then in the figures.
    mark = await app.store.complete_through(org.name, now=now, settle=settle)
    chosen = counting(definitions, tz, period.start, period.end)
    tallies = await app.store.tallies(
        org=org.name, start=period.start, end=period.end, counting=chosen, filters=filters,
        pseudonymize=reader.pseudonymize,
    )  # fmt: skip
    # Thousands of intervals' figures are work for a thread, not for the event loop.
    found = await app.store.read(
        partial(_summarize, tallies, period=(period.start, period.end), tz=tz,
                definitions=definitions)
    )  # fmt: skip
    headers = {COMPLETE_THROUGH: render(mark, tz)}
    if format_ == "csv":
        return Response(
            csv_text(found).encode(), media_type="text/csv; charset=utf-8", headers=headers
        )
    return Response(orjson.dumps(found), media_type="application/json", headers=headers)


def _summarize(
    tallies: list[Tally],
    _store: Store,
    *,
    period: tuple[int, int],
    tz: ZoneInfo,
    definitions: Definitions,
) -> dict[str, Any]:
    start, end = period
    return summarize(tallies, start=start, end=end, tz=tz, definitions=definitions)
