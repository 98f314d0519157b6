"""GET /cdr/stats (stats.md, "Over the API"): every figure against an independent computation
over the records /cdr/historik returns, for each definition alone and together and with the
filters of query.md, over a week with a clock change; CSV equals JSON; errors are 400s naming
the parameter. Over real HTTP, on each engine."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from samtal.simulate import TrafficSettings, event_lines
from tests.helpers.figures import expected
from tests.helpers.servers import Service, assert_problem

STOCKHOLM = ZoneInfo("Europe/Stockholm")
# The week of 2016-10-24, whose Sunday has 25 hours (the clock goes back at 03:00); the
# servers' clock stands at 2017-03-01.
WEEK = {"from": "2016-10-24", "to": "2016-10-30"}
FIRST = datetime(2016, 10, 24, tzinfo=STOCKHOLM)
AFTER = datetime(2016, 10, 31, tzinfo=STOCKHOLM)


@pytest.fixture
def week(service: Service) -> tuple[Service, str, list[dict[str, Any]]]:
    """A simulated week of one organisation; its read token; every record /cdr/historik gives."""
    token = service.org("week")
    traffic = TrafficSettings(orgs=1, days=7, seed=8, start=date(2016, 10, 24), calls_per_day=400)
    lines = service.events([orjson.loads(line) for line in event_lines(traffic)], "week")
    for start in range(0, len(lines), 4000):
        assert service.post(lines[start : start + 4000]).status_code == 200
    records = service.get(token, **WEEK).json()
    assert len(records) > 1500
    return service, token, records


def _stats(service: Service, token: str, **params: str) -> Any:
    with service.server.client(token) as client:
        return client.get("/cdr/stats", params={**WEEK, **params})


def approx(value: Any) -> Any:
    if isinstance(value, float):
        return pytest.approx(value, abs=0.0011)
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx(v) for v in value]
    return value


CASES: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({}, {}),
    ({"sl": "10"}, {"sl": 10}),
    ({"slBase": "answered"}, {"base": "answered"}),
    ({"shortAbandon": "6.5"}, {"short": 6.5}),
    ({"days": "1-5"}, {"days": [1, 2, 3, 4, 5]}),
    ({"hours": "08:00-12:00"}, {"hours": ("08:00", "12:00")}),
    ({"interval": "hour"}, {"interval": "hour"}),
    ({"interval": "day"}, {"interval": "day"}),
    # Minutes, not hours, are the granule the store sums by here.
    ({"hours": "09:05-16:55", "interval": "15min"},
     {"hours": ("09:05", "16:55"), "interval": "15min"}),
    (
        {"sl": "30", "slBase": "answered", "shortAbandon": "5", "days": "6-7",
         "hours": "00:00-24:00", "interval": "30min"},
        {"sl": 30, "base": "answered", "short": 5, "days": [6, 7],
         "hours": ("00:00", "24:00"), "interval": "30min"},
    ),
]  # fmt: skip


def test_every_figure_against_the_records_served(
    week: tuple[Service, str, list[dict[str, Any]]],
) -> None:
    service, token, records = week
    for params, own in CASES:
        answer = _stats(service, token, **params)
        assert answer.status_code == 200, (params, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert "Samtal-Complete-Through" in answer.headers
        found = answer.json()
        assert list(found)[:2] == ["period", "definitions"], params
        assert found.pop("period") == {
            "from": "2016-10-24T00:00:00.000+02:00",
            "to": "2016-10-31T00:00:00.000+01:00",
        }
        definitions = found.pop("definitions")
        assert definitions["interval"] == params.get("interval"), params
        want = expected(records, start=FIRST, end=AFTER, tz=STOCKHOLM, **own)
        assert found == approx(want), params
        if "intervals" in found:
            assert list(found)[-1] == "intervals"


def test_filters_select_the_records_first(
    week: tuple[Service, str, list[dict[str, Any]]],
) -> None:
    service, token, records = week
    group = max({r["receivingNo"] for r in records if r["receivingNo"]})
    answer = _stats(service, token, receivingNo=group, interval="day")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    del found["period"], found["definitions"]
    chosen = [r for r in records if r["receivingNo"] == group]
    want = expected(chosen, start=FIRST, end=AFTER, tz=STOCKHOLM, interval="day")
    assert found == approx(want)
    assert list(found["groups"]) == [group]
    with service.server.client(token) as client:
        answered = client.get("/cdr/stats", params=[*WEEK.items(), ("outcome", "answered")])
    assert answered.json()["calls"]["missed"] == 0


def test_csv_equals_json(week: tuple[Service, str, list[dict[str, Any]]]) -> None:
    service, token, _ = week
    params = {"interval": "day", "shortAbandon": "3"}
    as_json = _stats(service, token, **params).json()
    as_csv = _stats(service, token, **params, format="csv")
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert "Samtal-Complete-Through" in as_csv.headers
    table = list(csv.reader(io.StringIO(as_csv.text, newline="")))
    assert table[0][:3] == ["interval", "group", "offered"]
    want = [
        [part["start"], name, *("" if v is None else str(v) for k, v in g.items() if k != "waits")]
        for part in as_json["intervals"]
        for name, g in [*part["groups"].items(), ("*", part["allGroups"])]
    ]
    assert table[1:] == want
    assert len(as_json["intervals"]) == 7 and sum(row[1] == "*" for row in table) == 7


def test_an_empty_period_and_its_empty_intervals(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        found = client.get(
            "/cdr/stats", params={"from": "2017-01-01", "to": "2017-01-02", "interval": "day"}
        ).json()
    assert found["calls"]["calls"] == 0 and found["allGroups"]["answerRate"] is None
    assert [p["calls"]["calls"] for p in found["intervals"]] == [0, 0]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("sl=0", "`sl` '0' must be more than 0"),
        ("sl=abc", "sl"),
        ("slBase=everything", "slBase"),
        ("shortAbandon=-2", "shortAbandon"),
        ("days=8", "days"),
        ("days=5-1", "`days` '5-1': the range 5-1 runs backwards"),
        ("hours=17:00-08:00", "`hours` '17:00-08:00': the end must be after the start"),
        ("hours=25:00-26:00", "hours"),
        ("interval=minute", "interval"),
        ("format=xml", "format"),
        ("outcome=lost", "`outcome` 'lost' is not an outcome"),
        ("view=detailed", "view"),
        ("to=2017-03-01&interval=15min", "`interval` 15min makes more than 10,000 intervals"),
    ],
)
def test_bad_choices_are_400s_naming_them(
    product: tuple[Service, str], query: str, said: str
) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"/cdr/stats?from=2016-01-01&{query}"), 400, said)


def test_only_a_reader_of_the_organisation(product: tuple[Service, str]) -> None:
    service, _ = product
    with service.server.client(None) as client:
        assert client.get("/cdr/stats?from=2017-01-04").status_code == 401
    with service.server.client(service.ingest) as client:
        assert client.get("/cdr/stats?from=2017-01-04").status_code == 403
