"""Waiting on the event loop, shared by the layers that hold work until something happens (the
feed's held requests, the webhook deliverer's subscriptions) or gather it (`Together`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K")
R = TypeVar("R")


async def first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of `events` is set, or after `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


class Together(Generic[K, R]):
    """Requests that many tasks make at about the same time, served by one call of `serve`
    with all of them (one turn of a thread, one transaction): those made while a call is under
    way wait for it and go together in the next, as a group commit does, at most `most` in
    one. A commit of 1,000 organisations' calls wakes 1,000 webhook subscriptions, or 1,000
    held feed requests, and each read (and wrote) in transactions of its own: on PostgreSQL,
    round trips to a server on the same cores, and a flush of the log for each write. Should
    a call for many fail, each is served alone, so that each caller hears of its own."""

    def __init__(self, serve: Callable[[list[K]], Awaitable[list[R]]], most: int) -> None:
        self._serve = serve
        self._most = most
        self._waiting: list[tuple[K, asyncio.Future[R]]] = []
        self._serving: asyncio.Task[None] | None = None

    async def __call__(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._serving is None:
            self._serving = asyncio.create_task(self._serve_waiting())
        return await future

    async def close(self) -> None:
        """Stop serving; whoever still waits is cancelled."""
        if self._serving is not None:
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        for _, future in self._waiting:
            future.cancel()
        self._waiting.clear()

    async def _serve_waiting(self) -> None:
        taken: list[tuple[K, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                taken = [(key, f) for key, f in self._waiting[: self._most] if not f.done()]
                del self._waiting[: self._most]
                if len(taken) > 1:
                    try:
                        results = await self._serve([key for key, _ in taken])
                    except Exception as exc:
                        log.info("%d requests together failed (%s); each alone", len(taken), exc)
                    else:
                        for (_, future), result in zip(taken, results, strict=True):
                            if not future.done():
                                future.set_result(result)
                        continue
                for key, future in taken:
                    try:
                        result = (await self._serve([key]))[0]
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
        except BaseException:  # cancelled (the loop is ending): nobody is left waiting
            for _, future in [*taken, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._serving = None
