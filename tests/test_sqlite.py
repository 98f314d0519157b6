"""What is SQLite's own: its schema's versions and upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from samtal.errors import StoreError
from samtal.store import Store
from samtal.store.sqlite import MIGRATIONS, SqliteEngine
from tests.conftest import T0
from tests.test_store import PRODUCT, events_of, period


def test_sqlite_schema_upgrades_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    old = Store(SqliteEngine(url))
    old.add_org("acme", "Europe/Stockholm", now=T0)
    old.ingest(events_of(PRODUCT), now=T0)
    old.close()
    upgrade = "ALTER TABLE orgs ADD COLUMN note TEXT; CREATE INDEX orgs_by_tz ON orgs (tz)"
    engine = SqliteEngine(url, migrations=(*MIGRATIONS, upgrade))
    new = Store(engine)
    assert engine.schema_version == len(MIGRATIONS) + 1
    assert period(new, "acme") == PRODUCT["expected"]
    new.close()


def test_sqlite_schema_is_versioned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    engine = SqliteEngine(url)
    assert engine.schema_version == 1
    engine.close()
    db = sqlite3.connect(tmp_path / "v.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this samtal knows"):
        SqliteEngine(url)
