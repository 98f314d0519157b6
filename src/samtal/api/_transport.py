"""How samtal serves HTTP/1.1: uvicorn's h11 protocol, with Nagle's algorithm off, on asyncio's
own event loop.

asyncio turns Nagle off only on sockets that say they are TCP. A listening socket bound by
hand, or shared by `--workers`, says protocol 0, and then a small write (the `[` that opens an
answer) waits for the client's delayed ACK: about 40 ms on every request. So every connection
gets TCP_NODELAY here, however its listening socket was made.

h11 refuses a request whose head passes 16 kB. uvicorn's httptools protocol (its parser in C)
took 1.01-1.31x less of the server's CPU for small requests, but kept a header of any size:
one client's 50 MB header took 47 MB of the server's memory (bench/README.md, "Twenty-ninth
session"). The loop is asyncio's even where uvloop is installed, which uvicorn would otherwise
take: under uvloop, the tests' servers that share rate limits through Redis took 60 s to stop
and left connections open. What is tested is what runs.

A server process also collects its garbage less often than Python would (`collect_rarely`),
and a worker of `--workers N` stops when its supervisor is gone (`stop_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: uvicorn's `loop` setting for every server samtal runs.
LOOP = "asyncio"

#: Objects allocated (net of those freed) before Python collects its youngest generation: 700
#: by default.
YOUNG_OBJECTS = 50_000


def collect_rarely() -> None:
    """Have this process collect its youngest generation after YOUNG_OBJECTS allocations.

    A server holds a large heap for long (a task for each webhook subscription, with its
    coroutine and its wake), and a request or a listing builds many objects that live a
    moment. At Python's 700, the deliverer's listing of 10,000 subscriptions each second
    lived through several young collections, was promoted to the oldest generation, and
    brought on a full collection every 3-5 s that walked the whole heap: 75 ms each with the
    GIL held, a third of `samtal serve`'s CPU while idle, and a pause for every request
    then. At 50,000 such objects are freed before a collection looks at them (bench/README.md,
    "Thirtieth session")."""
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


#: Seconds a connection may take to send a request's head, from its first byte (or from the
#: connection, or the end of the last answer, when keep-alive's 5 s are over). uvicorn sets
#: none: a client that connected and sent nothing, or half a head, kept its connection (and a
#: file descriptor) for ever, and a thousand such clients kept the server from every other.
HEAD_TIMEOUT_SECONDS = 20.0


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, sending each write at once, and closing a connection whose
    request head does not arrive within HEAD_TIMEOUT_SECONDS."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a head arrived whole: its request is under way
            self._stop_head_timer()
        elif self._head_timer is None and self.conn.their_state is h11.IDLE:
            # The first bytes of the next head (keep-alive's timer stopped on them).
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def stop_with_parent() -> None:
    """Have this worker of `samtal serve --workers N` stop, as on SIGTERM, once the process
    that started it is gone. uvicorn's supervisor stops its workers when it is told to stop;
    killed (SIGKILL, the OOM killer), it leaves them serving on: an old version answering
    after a restart, and the port held, so that the new `samtal serve` cannot bind it.

    The supervisor is watched through the pipe multiprocessing keeps to it, which ends with
    it: a worker still starting when it was killed knows of it all the same (watching for a
    new parent id did not: that worker took init for its parent, and served on)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by a supervisor
        return

    def watch() -> None:
        parent.join()
        log.warning("the supervising process (%d) is gone: this worker stops", parent.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="samtal-parent-watch", daemon=True).start()
