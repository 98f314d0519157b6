"""Whatever a client sends, the API answers 2xx or a 4xx problem+json, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samtal.api import create_app
from samtal.settings import Settings
from samtal.store import open_store
from tests.helpers import AHEAD, Clock
from tests.helpers.servers import Server

# Fuzzes a real server with hypothesis.
pytestmark = pytest.mark.slow

_period_text = st.one_of(
    st.text(max_size=40),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T+][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,8})?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?)?",
        fullmatch=True,
    ),
)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, ...]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    store = open_store(f"sqlite:///{folder / 'fuzz.db'}")
    clock = Clock()
    store.add_org("acme", "Europe/Stockholm", now=clock())
    read = store.create_token("read", org="acme", now=clock())[1]
    ingest = store.create_token("ingest", org=None, now=clock())[1]
    config = Settings(
        database_url="unused", retention_days=92, max_body_bytes=64_000, max_future_seconds=AHEAD
    )
    with (
        Server(create_app(config, store=store, clock=clock)) as server,
        server.client(read) as reader,
        server.client(ingest) as writer,
    ):
        yield reader, writer
    store.close()


def _answered_well(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert set(response.json()) == {"type", "title", "status", "detail"}
    else:
        assert response.headers["content-type"] == "application/json"
        json.loads(response.content)


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.dictionaries(st.sampled_from(["from", "to", "x"]), _period_text, max_size=3))
def test_any_period(clients: tuple[httpx.Client, ...], params: dict[str, str]) -> None:
    reader, _ = clients
    _answered_well(reader.get("/cdr/historik", params=params))


_event = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=5),
        "org": st.sampled_from(["acme", "other", ""]),
        "call": st.text(max_size=3),
        "type": st.sampled_from(["started", "ended", "hangup", "x"]),
        "at": st.sampled_from(["2017-01-04T16:16:04.274+01:00", "2017-01-04", "nope"]),
        "seq": st.one_of(st.integers(-2, 3), st.floats(allow_nan=False, allow_infinity=False)),
        "party": st.sampled_from(["caller", "user", "function", None]),
        "number": st.one_of(st.none(), st.text(max_size=4), st.integers()),
    },
)


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(_event, max_size=5).map(lambda es: "\n".join(json.dumps(e) for e in es).encode()),
        st.lists(_event, max_size=5).map(lambda es: json.dumps(es).encode()),
    ),
    st.sampled_from([None, "application/json", "application/x-ndjson", "text/csv"]),
)
def test_any_body(clients: tuple[httpx.Client, ...], body: bytes, media: str | None) -> None:
    _, writer = clients
    headers = {"Content-Type": media} if media else {}
    _answered_well(writer.post("/events", content=body, headers=headers))
