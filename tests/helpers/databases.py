"""Real databases for tests: a fresh one per test on the machine's PostgreSQL and MariaDB
(dropped after), a temporary SQLite file otherwise.

Where a server does not answer, the test skips and says how to enable it; in CI (CI=true) it
fails instead: CI has every server, and a silent skip would hide a broken engine.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from samtal.store import Store

#: The PostgreSQL server tests make their databases on (and drop them after).
POSTGRES_URL = os.environ.get(
    "SAMTAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("SAMTAL_TEST_MARIADB_URL", "mariadb://root@127.0.0.1:3306/test")
#: Every storage engine the contract, API and fault tests run on.
ENGINES = ("sqlite", "postgres")


def _unreachable(what: str, url: str, variable: str, exc: Exception) -> None:
    if os.environ.get("CI") == "true":
        raise exc
    pytest.skip(
        f"{what} does not answer at {url} ({exc}): start one, or point {variable} at one, to "
        f"run the {what} tests"
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; its URL. Dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unreachable("PostgreSQL", POSTGRES_URL, "SAMTAL_TEST_POSTGRES_URL", exc)
        raise
    name = f"samtal_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A new MariaDB database for one test; its URL. Dropped afterwards."""
    import pymysql

    parts = urlsplit(MARIADB_URL)
    try:
        admin = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        _unreachable("MariaDB", MARIADB_URL, "SAMTAL_TEST_MARIADB_URL", exc)
        raise
    name = f"samtal_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def database_url(engine: str, folder: Path) -> Iterator[str]:
    """A fresh database of `engine` for one test (SQLite: a file in `folder`)."""
    if engine == "sqlite":
        yield f"sqlite:///{folder / f'samtal-{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_database() as url:
            yield url


def stored_events(url: str) -> int:
    """How many events the database holds, asked of the database itself."""
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


def assert_upgraded_for_privacy(store: Store) -> None:
    """privacy.md, after the upgrade of a database holding the organisations `acme` and
    `bolag`, a read token and an ingest token: each organisation has a secret of its own and
    the default retention; the read token keeps `records,stats`, all groups, real numbers; the
    ingest token reads nothing, and is listed so (the column's default gave it the read
    token's scopes)."""
    token, ingest = store.tokens()
    assert (token.scopes, token.groups, token.pseudonymize) == (("records", "stats"), None, False)
    assert (ingest.kind, ingest.scopes, ingest.groups) == ("ingest", (), None)
    acme, bolag = store.orgs()
    assert acme.retention_days is None and len(acme.secret) == len(bolag.secret) == 32
    assert acme.secret != bolag.secret
