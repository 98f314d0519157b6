"""The API suite shares one server per module and engine; each test has organisations of its
own (tenancy keeps them apart), so a test costs requests, not a server start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import PRODUCT, Clock
from tests.helpers.databases import ENGINES, database_url
from tests.helpers.servers import Service, start_app


@pytest.fixture(scope="module", params=ENGINES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """A server on a fresh database of each engine, for the whole module."""
    for url in database_url(request.param, tmp_path_factory.mktemp("api")):
        clock = Clock()
        server, store, config = start_app(url, clock)
        with server:
            ingest = store.create_token("ingest", org=None, now=clock())[1]
            yield Service(server, store, clock, config, ingest)
        store.close()


@pytest.fixture
def service(served: Service) -> Service:
    """The module's server, with organisations that are this test's alone."""
    return served.tenant()


@pytest.fixture
def product(service: Service) -> tuple[Service, str]:
    """This test's `acme` holding the product description's three calls; its read token."""
    token = service.org("acme")
    assert service.post(service.events(PRODUCT["events"], "acme")).status_code == 200
    return service, token
