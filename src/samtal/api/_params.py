"""Query parameters and headers that several endpoints share, as the OpenAPI document says
them: the filters of query.md and the completeness watermark."""

from __future__ import annotations

from typing import Any

from fastapi import Query

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
