"""Sync: records/s of a first `samtal sync` of two months (one organisation, ~269k records) into
SQLite, PostgreSQL and MariaDB, next to the feed's own catch-up rate in the same run.

PostgreSQL and MariaDB are the servers at SAMTAL_BENCH_POSTGRES_URL and SAMTAL_BENCH_MARIADB_URL
(defaults: the loopback ones of the test suite); a database is made for the run and dropped.

    python bench/sync.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from _common import OUT, report
from _server import ServerProcess, samtal
from feed import catch_up
from query import build

POSTGRES = os.environ.get("SAMTAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB = os.environ.get("SAMTAL_BENCH_MARIADB_URL", "mariadb://root@127.0.0.1:3306/test")


@contextmanager
def postgres() -> Iterator[str]:
    import psycopg

    name = f"samtal_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(POSTGRES)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mariadb() -> Iterator[str]:
    import pymysql

    parts = urlsplit(MARIADB)
    name = f"samtal_bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@contextmanager
def sqlite() -> Iterator[str]:
    path = OUT / f"sync-{uuid.uuid4().hex[:8]}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        path.unlink(missing_ok=True)


def first_sync(base: str, token: str, target: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "samtal", "sync", "--from", base, "--into", target],
        env={**os.environ, "SAMTAL_TOKEN": token},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    db, _ = build()
    token = samtal("token", "create", "org-1", db=db).splitlines()[-1]
    rows = []
    with ServerProcess(db) as server:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client:
            seconds, records, _ = catch_up(client)
        rows.append(
            ("feed catch-up (the client parses, stores nothing)", records / seconds, "records/s")
        )
        for name, target in (("SQLite", sqlite), ("PostgreSQL", postgres), ("MariaDB", mariadb)):
            with target() as url:
                taken = first_sync(server.url, token, url)
            rows.append((f"first sync into {name}", records / taken, "records/s"))
            rows.append(("  ratio to the catch-up", seconds / taken, "x"))
    report(f"sync: org-1, {records:,} records, one run", rows)


if __name__ == "__main__":
    main()
