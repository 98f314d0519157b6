"""Webhooks for many tenants: how fast `samtal serve` delivers the new records of batches that
mix 1,000 organisations, each with a subscription, against batches of one organisation, on
both engines, in one run.

An operator whose customers each subscribe gets a message per record version (webhooks.md),
as the single organisation's subscriber does; what differs is how the versions fall: a mixed
batch of 1,000 calls wakes 1,000 subscriptions with a version each, a single one wakes one
with 1,000. What the deliverer pays per wake, beside the POST, is the difference.

Each round posts `--batches` batches of 1,000 calls of one kind (tenants.py's batches) and
waits until a receiver on loopback (a process of its own that answers 200 at once) has had
every message, and the deliverer has kept every subscription's cursor past it; the round's
figures are the messages a second from the first POST to then, and the server's CPU time per
message. Rounds alternate the kinds, medians of
`--rounds`. `--against DIR` measures another checkout the same way. PostgreSQL at
SAMTAL_BENCH_POSTGRES_URL, as bench/postgres.py.

    python bench/deliveries.py [--rounds N] [--batches B] [--against DIR] [--only ENGINE]
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from functools import partial

import httpx
import psycopg

from _server import ServerProcess, counted, counting, samtal
from tenants import RETENTION, compare_kinds, provisioned, timed_rounds

#: The receiver: answers every request 200 with an empty body, keeps the connection, and
#: counts the POSTs; `GET /count` answers the count.
_RECEIVER = textwrap.dedent(
    """
    import asyncio, sys
    count = 0
    async def serve(reader, writer):
        global count
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /count"):
                    body = str(count).encode()
                else:
                    count += 1
                    body = b""
                answer = b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(body)
                writer.write(answer + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await server.serve_forever()
    asyncio.run(main())
    """
)

#: Run in a process of the checkout measured: a subscription for each organisation.
_SUBSCRIBE = textwrap.dedent(
    """
    import sys
    from samtal.clock import system_clock
    from samtal.store import open_store
    store = open_store(sys.argv[1])
    for org in store.orgs():
        store.add_webhook(org.name, sys.argv[2], now=system_clock())
    store.close()
    """
)


#: Subscriptions whose cursor is behind their organisation's latest change number.
_BEHIND = (
    "SELECT count(*) FROM webhooks w JOIN orgs o ON o.name = w.org WHERE w.cursor < o.change_seq"
)


def behind(db: str) -> int:
    """How many subscriptions have not yet kept their cursor past every version: a message
    is delivered once the receiver has it and the deliverer has written so. (Timing the
    receiver's count alone let a round's last writes run into the next round's figures.)"""
    if db.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute(_BEHIND).fetchone()[0])
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(_BEHIND).fetchone()
        assert row is not None
        return int(row[0])


def measure(db: str, rounds: int, batches: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Each round's messages a second and the server's CPU ms per message, by kind."""
    with counting(_RECEIVER, timeout=10) as hooks:
        provisioned(db)
        subprocess.run(
            [sys.executable, "-c", _SUBSCRIBE, db, hooks + "/hook"],
            check=True,
            env={**os.environ, **env},
        )
        token = samtal("token", "create", "--ingest", db=db, env=env).splitlines()[-1]
        with (
            ServerProcess(db, SAMTAL_RETENTION_DAYS=RETENTION, **env) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
            ) as client,
        ):
            time.sleep(5)  # every subscription's task started, with nothing to do
            return timed_rounds(
                client, server.process.pid, rounds, batches, partial(counted, hooks),
                lambda: not behind(db),
            )  # fmt: skip


def main() -> None:
    compare_kinds(__doc__, measure, label="deliveries", what="message", title="webhooks", batches=5)


if __name__ == "__main__":
    main()
