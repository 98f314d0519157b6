"""Several processes on one database: writers of the same calls at the same moment, and the
order in which changes become visible (changes.md, "Visibility order")."""

from __future__ import annotations

import multiprocessing
import random
from datetime import date

import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import Event, decode_batch
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Change, open_store
from samtal.times import zone
from tests.helpers import T0

# Runs writer processes at once.
pytestmark = pytest.mark.slow

ORGS = ("org-1", "org-2")
WRITERS = 3


def _write(url: str, batches: list[list[bytes]]) -> None:
    """A writer process: its batches, one transaction each."""
    store = open_store(url)
    try:
        for batch in batches:
            store.ingest(decode_batch(batch).events, now=T0)
    finally:
        store.close()


def _watch(url: str, stop: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """A reader process: polls the whole change feed of every organisation and reports any
    change that turned up at or below a number it had already seen (a skipped change); and
    follows the feed as a client keeping a copy would, by cursor, with random page sizes."""
    store = open_store(url)
    seen: dict[str, set[tuple[str, int]]] = {org: set() for org in ORGS}
    highest = dict.fromkeys(ORGS, 0)
    copies: dict[str, dict[str, bytes]] = {org: {} for org in ORGS}
    cursors = dict.fromkeys(ORGS, 0)
    rng = random.Random(11)
    skipped, polls = [], 0
    try:
        while not stop.is_set() or polls < 3:
            polls += 1
            for org in ORGS:
                changes = store.changes(org=org, after=0, limit=1_000_000).changes
                for change in changes:
                    key = (change.call, change.seq)
                    if key not in seen[org] and change.seq <= highest[org]:
                        skipped.append((org, change.seq, highest[org]))
                    seen[org].add(key)
                highest[org] = max([highest[org], *(c.seq for c in changes)])
                page = store.changes(org=org, after=cursors[org], limit=rng.randint(1, 50))
                _keep(copies[org], page.changes)
                cursors[org] = page.next
        for org in ORGS:  # the rest, once the writers are done
            more = True
            while more:
                page = store.changes(org=org, after=cursors[org], limit=rng.randint(1, 500))
                _keep(copies[org], page.changes)
                cursors[org], more = page.next, page.more
    finally:
        store.close()
        out.put((skipped, polls, copies))


def _keep(copy: dict[str, bytes], changes: list[Change]) -> None:
    """What a client keeping a copy does with a page of the feed."""
    for change in changes:
        if change.record is None:
            copy.pop(change.call, None)
        else:
            copy[change.call] = change.json()


def test_writers_of_the_same_calls_at_once(store_url: str) -> None:
    store = open_store(store_url)
    for org in ORGS:
        store.add_org(org, "Europe/Stockholm", now=T0)
    traffic = TrafficSettings(orgs=2, days=1, seed=7, start=date(2017, 1, 4), calls_per_day=600)
    lines = list(event_lines(traffic))
    # Each call's events are dealt out between the writers, then shuffled and batched small:
    # they write parts of the same calls at the same moments.
    rng = random.Random(7)
    halves: list[list[bytes]] = [[] for _ in range(WRITERS)]
    for n, line in enumerate(lines):
        halves[n % WRITERS].append(line)
    work = []
    for half in halves:
        rng.shuffle(half)
        work.append([half[i : i + 8] for i in range(0, len(half), 8)])
    spawn = multiprocessing.get_context("spawn")
    stop, results = spawn.Event(), spawn.Queue()
    watcher = spawn.Process(target=_watch, args=(store_url, stop, results))
    writers = [spawn.Process(target=_write, args=(store_url, batches)) for batches in work]
    watcher.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    stop.set()
    skipped, polls, copies = results.get(timeout=60)
    watcher.join(30)
    assert skipped == [], f"the reader skipped changes: {skipped[:5]}"
    assert polls >= 3

    # The records are exactly those of all the events.
    events: list[Event] = decode_batch(lines).events
    expected = {org: [] for org in ORGS}  # type: dict[str, list[bytes]]
    for record in aggregate(events):
        expected[record.org].append(orjson.dumps(record.render(zone("Europe/Stockholm"))))
    for org in ORGS:
        stored = [r for page in store.records(org=org, start=0, end=2**62) for r in page]
        assert stored == expected[org]
        assert len(stored) > 200
        # The copy the feed's follower kept is exactly the detailed view.
        detailed = [
            r for page in store.records(org=org, start=0, end=2**62, detailed=True) for r in page
        ]
        assert sorted(copies[org].values()) == sorted(detailed)
    store.close()


def _write_copies(
    url: str,
    writer: int,
    go: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """A writer process: the shared ids, each under a call of its own, in small batches."""
    store = open_store(url)
    accepted = duplicates = 0
    try:
        go.wait(60)
        for first in range(0, COPIED, 10):
            batch = [_copy(k, f"w{writer}-{k}") for k in range(first, first + 10)]
            summary = store.ingest(batch, now=T0)
            accepted += summary.accepted
            duplicates += summary.duplicates
    finally:
        store.close()
        out.put((accepted, duplicates))


def _copy(k: int, call: str) -> Event:
    """Event `e<k>` under `call`."""
    return Event("acme", f"e{k}", call, "2017-03-01T10:00:00Z", "ended", instant=T0 + k)


#: Event ids that every writer of `_write_copies` sends.
COPIED = 300


def test_writers_of_one_id_under_calls_of_their_own_at_once(store_url: str) -> None:
    """events.md: the key is (org, id), whatever call a copy names, also when the copies come
    at the same moment from writers that no lock of a call orders (PostgreSQL copies a new
    call's events straight into the table, and the copy that loses waits and is left out)."""
    store = open_store(store_url)
    store.add_org("acme", "UTC", now=T0)
    spawn = multiprocessing.get_context("spawn")
    go, results = spawn.Event(), spawn.Queue()
    writers = [
        spawn.Process(target=_write_copies, args=(store_url, n, go, results))
        for n in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    counts = [results.get(timeout=10) for _ in writers]
    assert sum(accepted for accepted, _ in counts) == COPIED
    assert sum(duplicates for _, duplicates in counts) == (WRITERS - 1) * COPIED
    again = [_copy(k, "again") for k in range(COPIED)]
    assert store.ingest(again, now=T0).accepted == 0
    store.close()
