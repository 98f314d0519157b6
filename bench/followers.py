"""The change feed for many tenants: how fast `samtal serve` answers 1,000 organisations'
clients that each follow their feed with `wait` (long polling), when batches mix the
organisations, against batches of one organisation, on both engines, in one run.

An operator whose customers keep a copy by the feed (`samtal sync --follow`, or their own
loop on `/cdr/changes?after=...&wait=...`) holds a request of each while nothing is new. A
mixed batch of 1,000 calls wakes all of them at once, each to read a version; a single
organisation's batch wakes one, to read 1,000. What the server pays per woken request,
beside the versions, is the difference.

Each round posts `--batches` batches of 1,000 calls of one kind (tenants.py's batches) and
waits until the followers (one an organisation, in a process of their own, each with its own
read token, `wait=60` as `samtal sync --follow`) have had every version. The round's figures
are the versions a second from the first POST to then, and the server's CPU time per version
(the idle followers' renewals included). Rounds alternate the kinds, medians of `--rounds`.
`--against DIR` measures another checkout the same way. Rate limits are off. PostgreSQL at
SAMTAL_BENCH_POSTGRES_URL, as bench/postgres.py.

    python bench/followers.py [--rounds N] [--batches B] [--against DIR] [--only ENGINE]
"""

from __future__ import annotations

import tempfile
import textwrap
import time
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

import httpx

from _server import ServerProcess, counted, counting, samtal
from tenants import ORGS, RETENTION, compare_kinds, provisioned, timed_rounds

#: The followers: a long poll of each token's feed (`wait` seconds), pages of 1,000, each asking
#: again at once with `after=next`; `GET /count` on their own port answers the versions had.
_FOLLOWERS = textwrap.dedent(
    """
    import asyncio, sys
    import aiohttp, orjson
    port, server, tokens, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    had = 0
    async def follow(session, token):
        global had
        after, headers = 0, {"Authorization": "Bearer " + token}
        while True:
            url = f"{server}/cdr/changes?after={after}&wait={wait}&limit=1000"
            async with session.get(url, headers=headers) as answer:
                body = orjson.loads(await answer.read())
                if answer.status != 200:
                    raise SystemExit(f"{answer.status}: {body}")
            had += len(body["records"])
            after = body["next"]
    async def count(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        text = str(had).encode()
        writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n%b" % (len(text), text))
        await writer.drain()
        writer.close()
    async def main():
        lines = [line.split("\\t") for line in open(tokens).read().splitlines()]
        counter = await asyncio.start_server(count, "127.0.0.1", port)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with counter, aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            await asyncio.gather(*(follow(s, token) for _, _, token in lines))
    asyncio.run(main())
    """
)


def followers(url: str, tokens: str, wait: int = 60) -> AbstractContextManager[str]:
    """The followers of every token in `tokens` (`token create --from`'s lines), holding their
    requests `wait` seconds (`samtal sync --follow`'s, at most 60); the URL that counts the
    versions they had."""
    return counting(_FOLLOWERS, url, tokens, str(wait))


def measure(db: str, rounds: int, batches: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Each round's versions a second and the server's CPU ms per version, by kind."""
    provisioned(db)
    with tempfile.TemporaryDirectory() as folder:
        names, tokens = Path(folder, "orgs.txt"), Path(folder, "tokens.tsv")
        names.write_text("\n".join(f"org-{n}" for n in range(ORGS)) + "\n")
        tokens.write_text(samtal("token", "create", "--from", str(names), db=db, env=env))
        ingest = samtal("token", "create", "--ingest", db=db, env=env).splitlines()[-1]
        with (
            ServerProcess(
                db, SAMTAL_RETENTION_DAYS=RETENTION, SAMTAL_RATE_LIMIT="off", **env
            ) as server,
            followers(server.url, str(tokens)) as counter,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {ingest}"}, timeout=300
            ) as client,
        ):
            time.sleep(5)  # every follower waiting, with nothing new
            figures = timed_rounds(
                client, server.process.pid, rounds, batches, partial(counted, counter)
            )
            # `samtal serve` stops once the requests it holds are answered: up to `wait`.
            server.process.kill()
    return figures


def main() -> None:
    compare_kinds(
        __doc__, measure, label="followers", what="version", title="the feed followed", batches=3
    )


if __name__ == "__main__":
    main()
