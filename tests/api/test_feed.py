"""The change feed over real HTTP (spec/changes.md): its answers and errors, long polling, and a
client keeping a copy while events arrive out of order, twice and late. On both engines."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from samtal.aggregate import aggregate
from samtal.events import Event, decode_batch
from samtal.records import DETAILED_FIELDS, FIELDS
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from samtal.times import zone
from tests.helpers import PRODUCT, T0, disappearing, event_line
from tests.helpers.servers import Service, assert_problem, serving


def test_pages_next_more_and_link(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        first = client.get("/cdr/changes", params={"limit": 2})
        body = first.json()
        assert first.headers["content-type"] == "application/json"
        assert [list(r) for r in body["records"]] == [list(DETAILED_FIELDS)] * 2
        assert [r["seq"] for r in body["records"]] == [1, 2]
        assert (body["next"], body["more"]) == (2, True)
        assert first.headers["link"] == '</cdr/changes?after=2&limit=2>; rel="next"'
        # Whose feed it is: a copy keeps one organisation's calls (`samtal sync` checks it).
        assert first.headers["samtal-organisation"] == service.name("acme")
        last = client.get("/cdr/changes?after=2&limit=2")
        assert (last.json()["next"], last.json()["more"]) == (3, False)
        assert "link" not in last.headers
        empty_answer = client.get("/cdr/changes?after=3")
        assert empty_answer.headers["samtal-organisation"] == service.name("acme")
        empty = empty_answer.json()
        assert list(empty) == ["records", "next", "more", "completeThrough"]
        assert {k: empty[k] for k in ("records", "next", "more")} == {
            "records": [],
            "next": 3,
            "more": False,
        }
        everything = client.get("/cdr/changes").json()["records"]
        detailed = client.get("/cdr/historik?from=2017-01-04&view=detailed").json()
    assert sorted(everything, key=lambda r: r["id"]) == sorted(detailed, key=lambda r: r["id"])
    assert sorted([{f: r[f] for f in FIELDS} for r in everything], key=str) == sorted(
        PRODUCT["expected"], key=str
    )


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("wait=61", "wait"),
        ("wait=1.5", "wait"),
    ],
)
def test_bad_parameters_are_400s_naming_them(
    product: tuple[Service, str], query: str, name: str
) -> None:
    service, token = product
    with service.server.client(token) as client:
        assert_problem(client.get(f"/cdr/changes?{query}"), 400, f"`{name}`")


def test_unknown_cursors_are_410s(product: tuple[Service, str]) -> None:
    service, token = product
    with service.server.client(token) as client:
        body = assert_problem(client.get("/cdr/changes?after=4"), 410, "after=0")
        assert body["type"] == "/problems/cursor-expired"
        assert client.get("/cdr/changes?after=3").status_code == 200
    with service.server.client(service.ingest) as client:
        assert client.get("/cdr/changes").status_code == 403
    with service.server.client() as client:
        assert client.get("/cdr/changes").status_code == 401


@pytest.mark.slow
def test_a_waiting_request_answers_soon_after_another_writer_commits(service: Service) -> None:
    token = service.org("acme")
    # Another writer: its own connections, not the server's.
    other = open_store(service.settings.database_url)
    answered: dict[str, Any] = {}

    def wait() -> None:
        with service.server.client(token) as client:
            started = time.monotonic()
            answered["body"] = client.get("/cdr/changes?after=0&wait=30").json()
            answered["at"] = time.monotonic()
            answered["waited"] = answered["at"] - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    assert "body" not in answered  # nothing yet: it waits
    events, _ = disappearing(service.name("acme"))
    other.ingest(events, now=service.clock())
    committed = time.monotonic()
    waiter.join(30)
    other.close()
    assert [r["id"] for r in answered["body"]["records"]] == ["c-4"]
    assert answered["at"] - committed < 1.0, answered
    # With nothing new, it answers empty once `wait` has passed.
    with service.server.client(token) as client:
        started = time.monotonic()
        assert client.get("/cdr/changes?after=1&wait=1").json()["records"] == []
        assert 1.0 <= time.monotonic() - started < 3.0


# -- a copy kept by the feed, while events arrive in any order --------------------------------


def _copy_step(copy: dict[str, dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """What a client keeping a copy does with a page: upsert by id, keeping the greater seq;
    delete on a tombstone."""
    for record in records:
        held = copy.get(record["id"])
        if held is not None and held["seq"] >= record["seq"]:
            continue
        if record.get("deleted"):
            copy.pop(record["id"], None)
        else:
            copy[record["id"]] = record


@pytest.mark.slow
@pytest.mark.slow
def test_a_waiting_request_reads_when_woken_not_on_a_timer(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held request reads the feed when it starts and when its `wait` is over, and in
    between only when a commit of its organisation wakes it. It also read every 5 s: with
    1,000 organisations' clients waiting, 200 reads a second for nothing."""
    token = service.org("acme")
    org = service.name("acme")
    reads = 0
    feeds = service.store.engine.feeds

    def counted(wants: list[tuple[str, int, int]]) -> Any:
        nonlocal reads
        reads += sum(name == org for name, _, _ in wants)
        return feeds(wants)

    monkeypatch.setattr(service.store.engine, "feeds", counted)
    with service.server.client(token) as client:
        started = time.monotonic()
        assert client.get("/cdr/changes?after=0&wait=6").json()["records"] == []
        assert 6.0 <= time.monotonic() - started < 8.0
    assert reads == 2


def test_a_copy_kept_by_the_feed_equals_the_records(store_url: str, tmp_path: Path) -> None:
    """Two writers post shuffled, duplicated events of the same calls to two server processes,
    holding some back to send late (one of them removes a record), while a client follows the
    feed with random page sizes and waits; its copy ends equal to `view=detailed`, and the
    seven fields to the aggregation of every event."""
    store = open_store(store_url)
    store.add_org("org-1", "Europe/Stockholm", now=0)
    ingest = store.create_token("ingest", org=None, now=0)[1]
    read = store.create_token("read", org="org-1", now=0)[1]
    store.close()
    traffic = TrafficSettings(orgs=1, days=1, seed=3, start=date(2017, 1, 4), calls_per_day=400)
    lines = list(event_lines(traffic))
    rng = random.Random(5)
    held = {n for n in range(len(lines)) if rng.random() < 0.05}  # sent late
    late = [line for n, line in enumerate(lines) if n in held]
    early = [line for n, line in enumerate(lines) if n not in held]
    calls_of_c4, late_removal = disappearing("org-1")  # its record is made, then goes
    early += [event_line(e) for e in calls_of_c4]
    lines += [event_line(e) for e in calls_of_c4]
    early += rng.sample(early, len(early) // 10)  # duplicates
    rng.shuffle(early)
    rng.shuffle(late)

    copy: dict[str, dict[str, Any]] = {}
    done = threading.Event()
    seen_c4 = threading.Event()
    polls = 0

    def follow(base: str) -> None:
        nonlocal polls
        after, more = 0, True
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {read}"}) as client:
            finishing = False
            while not finishing or more:
                # Set before the request: the last page was asked for after the last commit. (A
                # page asked for before it, and answered after, ended the loop now and then,
                # without the last tombstone.)
                finishing = done.is_set()
                limit, wait = rng.randint(1, 300), rng.choice([0, 0, 1])
                page = client.get(
                    "/cdr/changes", params={"after": after, "limit": limit, "wait": wait}
                )
                assert page.status_code == 200, page.text
                body = page.json()
                _copy_step(copy, body["records"])
                after, more = body["next"], body["more"]
                polls += 1
                if "c-4" in copy:
                    seen_c4.set()

    def post(base: str, batches: list[list[bytes]]) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ingest}"}) as c:
            for batch in batches:
                report = c.post("/events", content=b"\n".join(batch)).json()
                assert report["rejected"] == [], report

    with serving(store_url, tmp_path, SAMTAL_RATE_LIMIT="off") as (base, _):
        follower = threading.Thread(target=follow, args=(base,))
        follower.start()
        for phase in (early, late):
            halves = [phase[0::2], phase[1::2]]
            writers = [
                threading.Thread(
                    target=post, args=(base, [half[i : i + 20] for i in range(0, len(half), 20)])
                )
                for half in halves
            ]
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join(300)
            if phase is early:
                assert seen_c4.wait(30), "the follower never saw the record that will go"
        post(base, [[event_line(late_removal)]])
        done.set()
        follower.join(120)
        assert not follower.is_alive()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {read}"}) as client:
            answer = client.get(
                "/cdr/historik",
                params={"from": "2017-01-01", "to": "2017-01-31", "view": "detailed"},
            )
            assert answer.status_code == 200, answer.text
            detailed = answer.json()
    assert polls > 10
    assert "c-4" not in copy
    assert sorted(copy.values(), key=lambda r: r["id"]) == sorted(detailed, key=lambda r: r["id"])
    events: list[Event] = decode_batch([*lines, event_line(late_removal)]).events
    stockholm = zone("Europe/Stockholm")
    expected = sorted((r.call, r.render(stockholm)) for r in aggregate(events))
    assert sorted((r["id"], {f: r[f] for f in FIELDS}) for r in copy.values()) == expected
    assert len(expected) > 300


@pytest.mark.slow
def test_a_stopping_server_answers_its_held_requests_at_once(
    store_url: str, tmp_path: Path
) -> None:
    """`samtal serve` asked to stop (SIGTERM, as a rolling restart does) answers the feed
    requests it holds with what it has, and stops: it waited for each to end its `wait`, up to
    60 s. The client asks again after `next`, of whichever process answers."""
    store = open_store(store_url)
    store.add_org("acme", "Europe/Stockholm", now=T0)
    token = store.create_token("read", org="acme", now=T0)[1]
    store.close()
    answered: list[tuple[int, Any, float]] = []

    def hold(base: str) -> None:
        with httpx.Client(base_url=base, timeout=90) as client:
            got = client.get(
                "/cdr/changes?after=0&wait=60", headers={"Authorization": f"Bearer {token}"}
            )
            answered.append((got.status_code, got.json(), time.monotonic()))

    with serving(store_url, tmp_path) as (base, server):
        holders = [threading.Thread(target=hold, args=(base,)) for _ in range(4)]
        for holder in holders:
            holder.start()
        time.sleep(2.0)  # every request held, in either worker
        assert not answered
        stopped = time.monotonic()
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
        exited = time.monotonic()
        for holder in holders:
            holder.join(30)
    assert [(status, body["records"], body["next"]) for status, body, _ in answered] == [
        (200, [], 0)
    ] * 4
    assert max(at for _, _, at in answered) - stopped < 5.0, answered
    assert exited - stopped < 10.0
