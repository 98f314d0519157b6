"""The HTTP/1.1 protocol samtal serves with: uvicorn's h11, with Nagle's algorithm off.

asyncio turns Nagle off only on sockets that say they are TCP. A listening socket bound by
hand, or shared by `--workers`, says protocol 0, and then a small write (the `[` that opens an
answer) waits for the client's delayed ACK: about 40 ms on every request. So every connection
gets TCP_NODELAY here, however its listening socket was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, sending each write at once."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
