"""The served OpenAPI document is the contract: schemathesis sends what it documents (and what
it rules out) to a real server, with every check it has.

Schemathesis is told one thing (issue 14): a well-formed `after` can be a 410 (a cursor never
given out, or lost to retention: the feed's state, which a JSON Schema cannot say), an answer
changes.md defines and the document lists. Besides, a period that matches the pattern of
`from`/`to` can still be a 400 when it is empty (`to` before `from`, or a `from` in the future
with no `to`); for /cdr/historik, the check that schema-valid requests succeed is narrowed to:
such a request succeeds, or gets exactly that problem. (The server keeps everything here, so
no valid period is before the retention window.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from samtal.api import create_app
from samtal.clock import system_clock
from samtal.settings import Settings
from samtal.store import open_store
from tests.helpers import PRODUCT
from tests.helpers.servers import Server

# Runs schemathesis over every operation.
pytestmark = pytest.mark.slow

#: The problems a schema-valid request may get, by operation, because of what the period says
#: as a whole (see above).
STATEFUL = {
    "/cdr/historik": (400, {"/problems/bad-period", "/problems/bad-filter"}),
    # And for the figures, choices a pattern cannot rule out: `hours` 25:00-26:00, `sl` 0,
    # a `days` range backwards, too many intervals.
    "/cdr/stats": (400, {"/problems/bad-period", "/problems/bad-filter"}),
    # An erasure's body: a number the switch could not send, both `calls` and `number`, a
    # period that does not parse.
    "/cdr/erasures": (400, {"/problems/bad-period", "/problems/bad-body"}),
}
#: What schemathesis is told: the statuses a valid request may get, the 410 added for the feed.
CONFIG = """
[[operations]]
include-path = "/cdr/changes"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx",
]
# An erasure's body past 64 kB is refused as too large, before it is read as an erasure.
[[operations]]
include-path = "/cdr/erasures"
checks.negative_data_rejection.expected-statuses = [
    "400", "401", "403", "404", "406", "413", "422", "428", "5xx",
]
"""


@dataclass(frozen=True)
class Served:
    url: str
    read: str
    ingest: str
    erase: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('schema')) / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    read = store.create_token("read", org="acme", now=system_clock())[1]
    ingest = store.create_token("ingest", org=None, now=system_clock())[1]
    erase = store.create_token("read", org="acme", now=system_clock(), scopes=("erase",))[1]
    with Server(
        create_app(
            Settings(
                database_url=url, rate_limit="off", auth_failure_limit="off", retention_days=0
            ),
            store=store,
        )
    ) as server:
        with server.client(ingest) as client:
            body = "".join(json.dumps({**e, "org": "acme"}) + "\n" for e in PRODUCT["events"])
            assert client.post("/events", content=body).status_code == 200
        yield Served(server.url, read, ingest, erase)
    store.close()


OPERATIONS = [
    ("GET", "/cdr/historik"),
    ("GET", "/cdr/changes"),
    ("GET", "/cdr/calls/{id}"),
    ("GET", "/cdr/stats"),
    ("POST", "/cdr/erasures"),
    ("GET", "/cdr/erasures"),
    ("POST", "/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


def test_every_operation_is_fuzzed(served: Served) -> None:
    loaded = schemathesis.openapi.from_url(served.url + "/openapi.json")
    found = [(op.ok().method.upper(), op.ok().path) for op in loaded.get_all_operations()]
    assert sorted(found) == sorted(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_the_api_keeps_its_documented_contract(served: Served, method: str, path: str) -> None:
    """Every operation, examples first, then generated requests, valid and not."""
    loaded = schemathesis.openapi.from_url(
        served.url + "/openapi.json", config=SchemathesisConfig.from_str(CONFIG)
    )
    operation = loaded[path][method]
    token = served.ingest if path in ("/events", "/metrics") else served.read
    if path == "/cdr/erasures":
        token = served.erase
    headers = {"Authorization": f"Bearer {token}"}

    @given(
        case=st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
    )
    @settings(
        max_examples=80,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: CI lands or not on the code alone
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: schemathesis.Case) -> None:
        # A feed request is held up to `wait` seconds when nothing is newer (tested in
        # test_feed): the fuzzer's waits are cut to none, to keep it fuzzing.
        if path == "/cdr/changes" and isinstance(case.query, dict):
            wait = case.query.get("wait")
            if isinstance(wait, int) and not isinstance(wait, bool) and wait > 0:
                case.query["wait"] = 0
        if path not in STATEFUL:
            case.call_and_validate(base_url=served.url, headers=headers)
            return
        response = case.call_and_validate(
            base_url=served.url, headers=headers, excluded_checks=[positive_data_acceptance]
        )
        status, problems = STATEFUL[path]
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and response.status_code == status:
            assert response.json()["type"] in problems, (response.text, case.as_curl_command())

    check()
