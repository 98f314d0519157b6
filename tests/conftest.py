"""Fixtures every folder of tests may use: real stores on every engine. Helpers are in
`tests/helpers`; fixtures of one layer live in that folder's conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from samtal.store import Store, open_store
from tests.helpers.databases import ENGINES, database_url


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each engine."""
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on a fresh database of each engine."""
    opened = open_store(store_url)
    yield opened
    opened.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PostgreSQL runs of the engine-parametrized tests count as slow: each makes (and
    drops) a database on the server. The fast lane runs their SQLite twins; the whole suite
    runs both."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values():
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _history_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' calls lie in 2017, and every command they start would reject them as before
    the retention window (events.md, "Time bounds"): commands keep everything unless a test
    says otherwise."""
    monkeypatch.setenv("SAMTAL_RETENTION_DAYS", "0")
