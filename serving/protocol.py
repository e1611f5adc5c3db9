"""uvicorn's HTTP protocol with TCP_NODELAY on every accepted connection.

Measured with uvicorn's own `--workers N` (workers inheriting the listening socket): asyncio left
Nagle's algorithm on and each small response waited ~40 ms on a delayed ACK. Setting it on every
accepted connection keeps that true whatever hands the socket to the worker.
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
