"""uvicorn's HTTP protocol with TCP_NODELAY on every accepted connection.

With `--workers N` uvicorn's workers inherit the listening socket and asyncio then leaves Nagle's
algorithm on: each small response waited ~40 ms on a delayed ACK (measured by the latency benchmark).
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
