"""Fixtures of the customer-side tests: a live server to sync from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from samtal.api import create_app
from samtal.clock import system_clock
from samtal.events import decode_batch
from samtal.settings import Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import open_store
from tests.helpers import disappearing, event_line
from tests.helpers.servers import Live, Server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    store = open_store(db)
    store.add_org("org-1", "Europe/Stockholm", now=system_clock())
    read = store.create_token("read", org="org-1", now=system_clock())[1]
    traffic = TrafficSettings(orgs=1, days=1, seed=9, start=date(2017, 1, 4), calls_per_day=800)
    events, _ = disappearing("org-1")
    lines = [*event_lines(traffic), *(event_line(e) for e in events)]
    store.ingest(decode_batch(lines).events, now=system_clock())
    with Server(
        create_app(Settings(database_url=db, retention_days=0, rate_limit="off"), store=store)
    ) as server:
        yield Live(server.url, store, read, db)
    store.close()
