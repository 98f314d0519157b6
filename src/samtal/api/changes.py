"""GET /cdr/changes: the feed of an organisation's record versions (spec/changes.md)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from samtal.api._auth import Reader, reading
from samtal.api._params import COMPLETE_THROUGH_HEADER
from samtal.api._problems import only_params, responses
from samtal.api._schemas import DETAILED_RECORD, TOMBSTONE
from samtal.api._state import AppState, state
from samtal.errors import Forbidden, UsageError
from samtal.filters import NAMES as FILTERS
from samtal.privacy import Pseudonyms
from samtal.store import FeedPage, Store
from samtal.times import US_PER_SECOND, render, zone
from samtal.waits import first_of


async def _no_filters(request: Request) -> None:
    """The feed takes no filters: a copy is always whole (query.md)."""
    given = [name for name in FILTERS if name in request.query_params]
    if given:
        raise UsageError(
            f"`{given[0]}`: the change feed takes no filters (a copy kept by it is always "
            "whole); filter /cdr/historik, or your copy"
        )


#: Whose feed an answer is: a copy keeps one organisation's calls, and `samtal sync` refuses
#: to mix a second one's into it (their ids and `seq`s are each their own).
ORGANISATION = "Samtal-Organisation"

router = APIRouter(
    dependencies=[Depends(_no_filters), Depends(only_params("after", "limit", "wait"))]
)


@router.get(
    "/cdr/changes",
    summary="The change feed: every new version of your records",
    description=(
        "Record versions in ascending `seq`, each call at most once at its latest version; a "
        "record that disappeared is a tombstone (`deleted: true`). Keep a copy by asking again "
        "with `after=next` while `more` is true, upserting by `id` and deleting tombstones; "
        "with `wait`, the request is held until something new is visible. A cursor lost to "
        "retention (or never given out) is a 410: start again from `after=0`."
    ),
    response_class=Response,
    responses={
        200: {
            "description": (
                'Versions after `after`. While `more` is true, a `Link: <...>; rel="next"` '
                "header points at the next page."
            ),
            "headers": {
                ORGANISATION: {
                    "description": (
                        "The organisation whose feed this is. Its `id`s and `seq`s are its "
                        "own: keep each organisation's copy apart."
                    ),
                    "schema": {"type": "string", "examples": ["org-1"]},
                }
            },
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "records": {
                                "type": "array",
                                "items": {"anyOf": [DETAILED_RECORD, TOMBSTONE]},
                            },
                            "next": {"type": "integer", "minimum": 0},
                            "more": {"type": "boolean"},
                            "completeThrough": {
                                "type": "string",
                                "description": COMPLETE_THROUGH_HEADER["description"],
                                "examples": ["2017-01-04T16:05:00.000+01:00"],
                            },
                        },
                        "required": ["records", "next", "more", "completeThrough"],
                    }
                }
            },
        },
        **responses(400, 401, 403, 410, 429),
    },
)
async def changes(
    app: Annotated[AppState, Depends(state)],
    reader: Annotated[Reader, Depends(reading("records"))],
    after: Annotated[
        int,
        Query(
            ge=0,
            le=2**63 - 1,
            description="Versions with a greater `seq`; 0 (the default) from the beginning.",
        ),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many.")] = 1000,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=60,
            description="Seconds to hold the request while nothing is newer than `after`.",
        ),
    ] = 0,
) -> Response:
    """Read the page; when it is empty and the client will wait, sleep until the watcher says
    the organisation changed (or `wait` has passed, or the process is asked to stop), and
    read again. (A held request also read again every 5 s: 1,000 organisations' clients
    waiting took 200 reads a second, with nothing new. The watcher hears every commit, by
    any process, and a lost connection to PostgreSQL wakes every waiter when it is back.)"""
    if reader.groups is not None:
        raise Forbidden(
            "a token limited to response groups cannot follow the feed (a copy is always "
            "whole): read /cdr/historik, or use a token without groups"
        )
    org = reader.org
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    settle = app.settings.settle_seconds * US_PER_SECOND
    while True:
        woken = app.store.changed(org.name)  # before the read: a commit after it wakes us
        page = await app.store.changes(org=org.name, after=after, limit=limit)
        # A process asked to stop answers what it has: its clients ask again, of another
        # process or of this one started again, rather than hold its stop for up to 60 s.
        left = 0.0 if app.stopping.is_set() else deadline - loop.time()
        if page.changes or left <= 0:
            mark = await app.store.complete_through(org.name, now=app.clock(), settle=settle)
            if reader.pseudonymize:  # on a reader thread: a page is up to 10,000 records
                records = await app.store.read(partial(_masked, page, Pseudonyms(org.secret)))
            else:
                records = [change.json() for change in page.changes]
            return _answer(page, records, limit, render(mark, zone(org.tz)), org.name)
        await first_of(woken, app.stopping, timeout=left)


def _masked(page: FeedPage, masks: Pseudonyms, _store: Store) -> list[bytes]:
    return masks.records([change.json() for change in page.changes])


def _answer(
    page: FeedPage, records: list[bytes], limit: int, complete_through: str, org: str
) -> Response:
    body = b'{"records":[%b],"next":%d,"more":%b,"completeThrough":"%b"}' % (
        b",".join(records),
        page.next,
        b"true" if page.more else b"false",
        complete_through.encode(),
    )
    headers = {ORGANISATION: org}
    if page.more:
        headers["Link"] = f'</cdr/changes?after={page.next}&limit={limit}>; rel="next"'
    return Response(body, media_type="application/json", headers=headers)
