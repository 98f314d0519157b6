"""GET /cdr/calls/{id}: one call, its detailed record and the path it took (query.md)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from samtal.api._auth import Reader, reading
from samtal.api._problems import only_params, responses
from samtal.api._schemas import CALL
from samtal.api._state import AppState, state
from samtal.errors import NotFound, shorten

router = APIRouter(dependencies=[Depends(only_params())])


@router.get(
    "/cdr/calls/{id:path}",
    summary="One call: its record and its path",
    description=(
        "The detailed record of one call of your organisation, with `path`: its events (each "
        "once) in their order, from `started` to the last received, `stops` on the one that "
        "stops the record. A call with no record (in progress, never started, purged, or "
        "another organisation's) is a 404."
    ),
    response_class=Response,
    responses={
        200: {"description": "The call.", "content": {"application/json": {"schema": CALL}}},
        **responses(400, 401, 403, 404, 429),
    },
)
async def call(
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("records"))],
    call_id: Annotated[
        str,
        Path(
            alias="id",
            min_length=1,
            max_length=128,
            description=(
                "The call's id (`id` of its record), percent-encoded: a `/` in it as `%2F`."
            ),
            examples=["c-1009"],
        ),
    ],
) -> Response:
    org = reader.org
    masked = reader.pseudonymize
    found = await app.store.read(
        lambda store: store.call(org=org.name, call=call_id, pseudonymize=masked)
    )
    groups = reader.groups
    if (
        found is not None
        and groups is not None
        and orjson.loads(found)["receivingNo"] not in groups
    ):
        found = None  # outside the token's groups: as if it did not exist (privacy.md)
    if found is None:
        raise NotFound(
            f"no call {shorten(call_id)} with a record in your organisation (a call in "
            "progress has none yet)"
        )
    return Response(found, media_type="application/json")
