"""GET /metrics (issue 11): operator-only, Prometheus text, the figures that move when things
happen, and several worker processes reporting as one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from samtal.api import create_app
from samtal.clock import system_clock
from samtal.settings import Settings
from samtal.store import open_store
from tests.helpers import PRODUCT, disappearing
from tests.helpers.servers import Server, metric, metric_values, serving


def test_metrics_move_with_what_happens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "Europe/Stockholm", now=system_clock())
    read = store.create_token("read", org="acme", now=system_clock())[1]
    ingest = store.create_token("ingest", org=None, now=system_clock())[1]
    settings = Settings(database_url=url, retention_days=0, rate_limit="2/minute")
    with Server(create_app(settings, store=store)) as server:
        with server.client(read) as reader:
            assert reader.get("/metrics").status_code == 403  # never to customers
        with server.client() as anonymous:
            assert anonymous.get("/metrics").status_code == 401
        with server.client(ingest) as operator:
            scrape = operator.get("/metrics")
            assert scrape.status_code == 200 and scrape.headers["content-type"].startswith(
                "text/plain"
            )
            before = metric_values(scrape.text)
            body = "".join(json.dumps({**e, "org": "acme"}) + "\n" for e in PRODUCT["events"])
            operator.post("/events", content=body + '{"bad": 1}\n')
            events, removal = disappearing()  # a record made, then deleted
            store.ingest(events, now=system_clock())
            store.ingest([removal], now=system_clock())
            with server.client(read) as reader:
                statuses = [reader.get("/cdr/changes").status_code for _ in range(3)]
                assert reader.get("/cdr/calls/a%2Fb").status_code == 429  # limited too
            assert statuses == [200, 200, 429]
            after = metric_values(operator.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("samtal_events_total", path="http", outcome="accepted") == 17
    assert delta("samtal_events_total", path="http", outcome="rejected") == 1
    assert delta("samtal_record_changes_total", kind="new") >= 3
    assert delta("samtal_rate_limited_total") == 2
    assert (
        delta("samtal_http_requests_total", method="GET", route="/cdr/changes", status="429") == 1
    )
    assert delta("samtal_http_requests_total", method="POST", route="/events", status="200") == 1
    assert delta("samtal_record_visible_lag_seconds_count") >= 3
    assert delta("samtal_ingest_batches_per_commit_bucket", le="1.0") == 1  # the one POST, alone
    assert delta("samtal_http_request_duration_seconds_count", route="/cdr/changes") == 3
    # A route by its template as the API describes it, whatever its parameters hold.
    assert delta("samtal_http_requests_total", method="GET", route="/cdr/calls/{id}",
                 status="429") == 1  # fmt: skip


@pytest.mark.slow
def test_workers_report_as_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "UTC", now=system_clock())
    read = store.create_token("read", org="acme", now=system_clock())[1]
    ingest = store.create_token("ingest", org=None, now=system_clock())[1]
    store.close()
    scratch = tmp_path / "tmp"  # the server's temporary files
    scratch.mkdir()
    with serving(url, tmp_path, SAMTAL_RATE_LIMIT="off", TMPDIR=str(scratch)) as (base, _):
        assert [p.name[:15] for p in scratch.iterdir()] == ["samtal-metrics-"]
        for _ in range(20):  # a new connection each: both workers answer some
            httpx.get(base + "/cdr/changes", headers={"Authorization": f"Bearer {read}"})
        scrapes = [
            metric_values(
                httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {ingest}"}).text
            )
            for _ in range(4)
        ]
    counts = {
        metric(s, "samtal_http_requests_total", method="GET", route="/cdr/changes", status="200")
        for s in scrapes
    }
    assert counts == {20.0}, counts
    assert list(scratch.iterdir()) == []  # the workers' files went with them (they stayed)


def test_a_server_process_collects_its_young_objects_rarely(tmp_path: Path) -> None:
    """`samtal serve` collects its garbage after 50,000 new objects, not Python's 700: a batch
    of a thousand calls, whose events live together for a moment, is decoded and stored with
    a young collection or two, where it took 64, each a step toward a full
    collection of the whole heap (75 ms with 10,000 webhook subscriptions held)."""
    url = f"sqlite:///{tmp_path / 'samtal.db'}"
    store = open_store(url)
    store.add_org("acme", "UTC", now=system_clock())
    ingest = store.create_token("ingest", org=None, now=system_clock())[1]
    store.close()
    calls = [
        {**event, "org": "acme", "call": f"{event['call']}-{n}", "id": f"{event['id']}-{n}"}
        for n in range(1000)
        for event in PRODUCT["events"]
    ]
    body = "".join(json.dumps(event) + "\n" for event in calls)
    headers = {"Authorization": f"Bearer {ingest}"}
    with serving(url, tmp_path, workers=1, SAMTAL_RATE_LIMIT="off") as (base, _):
        before = metric_values(httpx.get(base + "/metrics", headers=headers).text)
        posted = httpx.post(base + "/events", content=body, headers=headers, timeout=60)
        assert posted.json()["accepted"] == len(calls), posted.text[:300]
        after = metric_values(httpx.get(base + "/metrics", headers=headers).text)
    young = metric(after, "python_gc_collections_total", generation="0") - metric(
        before, "python_gc_collections_total", generation="0"
    )
    assert 0 <= young <= 5, young
