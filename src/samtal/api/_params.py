"""Query parameters and headers that several endpoints share, as the OpenAPI document says
them: the filters of query.md and the completeness watermark."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from samtal.filters import NAMES
from samtal.records import OUTCOMES

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

#: The number filters as documented: a number, a prefix and `*`, or empty for null.
NUMBER_FILTER = {
    "type": "array",
    "items": {"type": "string", "maxLength": 65, "pattern": r"^[^*]*\*?$"},
}
DURATION = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"


def number_filter(name: str, what: str, example: str) -> Any:
    return Query(
        alias=name,
        description=(
            f"Only records whose {what} equals the value; a value ending in `*` matches every "
            "value that starts with what comes before it; an empty value matches null. Given "
            "several times: any of them."
        ),
        json_schema_extra={**NUMBER_FILTER, "examples": [[example]]},
    )


def outcome_filter() -> Any:
    return Query(
        description="Only records of this outcome (given several times: any of them).",
        json_schema_extra={
            "items": {"type": "string", "enum": list(OUTCOMES)},
            "examples": [["abandoned", "rejected"]],
        },
    )


def duration_filter(name: str, bound: str, example: str) -> Any:
    return Query(
        alias=name,
        description=f"Only records with `stop - start` of {bound} this many seconds.",
        json_schema_extra={"pattern": DURATION, "examples": [example]},
    )


async def filter_params(
    request: Request,
    caller_no: Annotated[
        list[str] | None, number_filter("callerNo", "`callerNo`", "+4672111111")
    ] = None,
    receiving_no: Annotated[
        list[str] | None, number_filter("receivingNo", "`receivingNo`", "622")
    ] = None,
    callee_no: Annotated[
        list[str] | None, number_filter("calleeNo", "`calleeNo`", "+4672*")
    ] = None,
    number: Annotated[
        list[str] | None,
        number_filter("number", "`callerNo`, `receivingNo` or `calleeNo`", "+4672555555"),
    ] = None,
    outcome: Annotated[list[str] | None, outcome_filter()] = None,
    min_duration: Annotated[str | None, duration_filter("minDuration", "at least", "30")] = None,
    max_duration: Annotated[str | None, duration_filter("maxDuration", "at most", "2.5")] = None,
) -> dict[str, list[str]]:
    """A dependency: the filters of query.md as the request gives them, each name with all its
    values, unchecked (`parse_filters` checks them, in the endpoint's own order of checks).
    The parameters document them, once for every endpoint that takes them."""
    return {name: request.query_params.getlist(name) for name in NAMES}
