"""SQLite's write-ahead log, switched on for a file however many open it at once: the store's
database and the customer's SQLite copy both keep it (readers never hold up a commit)."""

from __future__ import annotations

import sqlite3
import time

#: The first pause before switching again; each doubles, up to `MOST_PAUSE`.
FIRST_PAUSE = 0.005
MOST_PAUSE = 0.1


def write_ahead(db: sqlite3.Connection, *, within: float) -> None:
    """Put the file of `db` in WAL mode, which it keeps for every connection after.

    Switching a file not yet in it is a write that begins as a read, so two connections
    switching a new file at the same moment (two `samtal import` runs, or two syncs, started
    together) each hold the read that the other's write waits for. SQLite answers one of them
    "database is locked" at once, its busy timeout aside (waiting could not end): that one
    tries again after a pause, and finds the switch made. Any other error, or a file still
    locked after `within` seconds, is raised."""
    deadline = time.monotonic() + within
    pause = FIRST_PAUSE
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, MOST_PAUSE)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY, whatever its extended code (SQLITE_BUSY_SNAPSHOT, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
