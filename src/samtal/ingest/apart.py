"""Batches decoded and stored in processes of their own, each with its own store.

A JetStream worker's event loop does Python work for every message (the NATS client parses
it, the worker acknowledges it: about 30 us a message here), and the store's writers do
theirs for every event; in one process they take turns on one interpreter lock, so the
worker ran at about the sum of the two. Here the writers' half runs in other processes,
beside the loop, as many as the store takes writers at once: the batch goes over as its raw
lines, and comes back as its report and summary, which the metrics of the worker (the ones
served) then count.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait

from samtal.events import decode_batch
from samtal.ingest import Bounds, Report, Stored, counted, store_decoded
from samtal.logs import configure
from samtal.store import Store, open_store

#: The store of this process, when it is one of an `Apart`'s (see `_open`).
_store: Store | None = None


class Failed(Exception):
    """Storing a batch failed in its process: the message says how (the exception itself may
    not cross back between processes)."""


class Apart:
    """`processes` processes that each open the store at `url` and store the batches given,
    logging in `log_format` (text or json; None: as Python does by default)."""

    def __init__(self, url: str, processes: int, *, log_format: str | None = None) -> None:
        self.url = url
        self.processes = processes
        self.log_format = log_format
        self._closed = False
        self._pool = self._started()

    def _started(self) -> ProcessPoolExecutor:
        # `spawn`: a fork would copy this process's threads' locks in whatever state they are.
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_open,
            initargs=(self.url, self.log_format),
        )
        # The pool starts a process when a task finds none idle: one task each starts them
        # all now (a process takes about a second to start and open its store), rather than
        # one by one under the first batches.
        for _ in range(self.processes):
            pool.submit(_ready)
        return pool

    async def ingest(
        self, lines: list[bytes], *, now: int, bounds: Bounds | None, path: str
    ) -> Report:
        """Decode and store a batch's lines (as `ingest` does, at `now` within `bounds`) in
        one of the processes; what it did, counted in this process's metrics under `path`.
        Raises Failed when storing failed, and when a process died (it is started again)."""
        try:
            stored = await asyncio.wrap_future(self._pool.submit(_stored, lines, now, bounds))
        except BrokenProcessPool as exc:
            # A process died (killed, or its store would not open): the next batch gets new
            # ones, unless the processes were stopped on purpose.
            if not self._closed:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._started()
            raise Failed(f"a storing process died ({exc})") from None
        return counted(stored, path)

    def close(self) -> None:
        """Stop the processes, a batch under way included (it is stored again from its
        messages, which were not acknowledged). Every process this one started through
        `multiprocessing` is stopped: an `Apart` is for a process of its own (a worker)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()


def _open(url: str, log_format: str | None) -> None:
    """In a new process of an `Apart`: open its store, and leave when the parent does."""
    global _store
    # Ctrl-C reaches the terminal's whole process group: the parent decides when its batches
    # stop (it gives a batch under way a few seconds, then `close`s).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_format is not None:
        configure(log_format)
    _store = open_store(url, reads=False)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_orphaned, args=(parent.sentinel,), daemon=True).start()


def _orphaned(sentinel: int) -> None:
    # A parent killed outright leaves its workers waiting for work forever, holding their
    # connections: once it is gone, so is this process (whatever it was storing is not
    # acknowledged, and comes again).
    wait([sentinel])
    os._exit(1)


def _ready() -> None:
    """Nothing: a task that makes the pool start a process (see `Apart._started`)."""


def _stored(lines: list[bytes], now: int, bounds: Bounds | None) -> Stored:
    """In a process of an `Apart`: decode and store one batch."""
    if _store is None:
        raise Failed("this process has no store")
    try:
        return store_decoded(_store, decode_batch(lines), now=now, bounds=bounds)
    except Exception as exc:
        raise Failed(f"{type(exc).__name__}: {exc}") from None
