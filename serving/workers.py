"""`recsys serve --workers N`: N uvicorn processes, each accepting from its own SO_REUSEPORT socket.

Why not uvicorn's own `workers=N`: there every worker accepts from one inherited socket, and the
first worker to wake accepts every pending connection (asyncio accepts up to 100 per wake-up). A
client's keep-alive connections then pile onto one worker while the other idles: 8 connections
opened together landed 8/0 or 7/1 in a measurement here, which halved throughput at concurrency 8.
With one SO_REUSEPORT socket per worker the kernel spreads connections across workers by hash.

The supervisor owns those sockets, one per worker slot, and keeps them open for its whole life: a
worker inherits its slot's socket, and when it dies its replacement inherits the same one. So the
kernel's SO_REUSEPORT group never changes while serving. A listening socket stays open as long as
any process holds it, so the connections queued in a dead worker's accept backlog, and the new ones
the kernel keeps hashing to that socket, wait there and are accepted by the replacement instead of
being reset (measured: with the socket closed by the worker's death, every queued connection got a
RST; held by the supervisor, all were served by the next process to accept). Only connections the
dead worker had already accepted are lost: requests in flight on it, as with any crash.

Those connections wait for the replacement's start-up (its model load: seconds). The supervisor
binds but does not listen: the worker's `create_server` calls listen() once its app has started, so
at start-up no connection waits on a worker still loading; from then on the socket stays listening.
A replacement that dies before it is serving means the slot may not come back (a crash loop):
restarts pause, and the slot's socket is swapped for a fresh, unlistened one, so that connections
stop queuing where no worker may ever accept them (the ones already queued there are reset).
SIGINT or SIGTERM stops every worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger("recsys.serving")

RESTART_PAUSE_S = 1.0  # before restarting a worker that died starting up or soon after (a crash loop)
CRASH_LOOP_UPTIME_S = 10.0  # a worker that dies younger than this counts as crash-looping
STOP_TIMEOUT_S = 15.0
POLL_S = 0.2


class PortInUse(OSError):
    """Something already listens on the address; the message names it."""


def check_port_free(host: str, port: int) -> None:
    """Fail before starting workers when anything (even another SO_REUSEPORT server of this user,
    which the workers' sockets would silently share connections with) holds the address."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        probe.bind((host, port))
    except OSError as exc:
        raise PortInUse(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def reuseport_socket(host: str, port: int) -> socket.socket:
    """Bound, not yet listening: a worker's server listens on it once its app has started."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _received(connection: Connection) -> bool:
    """Whether the other end sent something (True) before closing."""
    try:
        return connection.poll() and connection.recv()
    except EOFError:
        return False


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def _worker(app: str, sock: socket.socket, options: dict[str, Any], serving: Connection) -> None:
    """One worker process: one uvicorn server on the slot's socket, inherited from the supervisor
    (multiprocessing passes the descriptor to the spawned process). Tells the supervisor through
    `serving` once it accepts connections."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)  # the app's lifespan, then listen() and accept
            if self.started:
                serving.send(True)
                serving.close()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops workers with SIGTERM
    host, port = sock.getsockname()[:2]
    Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])


class _Slot:
    """One worker slot: its socket, kept across restarts, and its current process."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.process: multiprocessing.process.BaseProcess | None = None
        self.serving: Connection | None = None  # the current process sends True once it accepts
        self.started_at = 0.0
        self.restart_at: float | None = None


class Supervisor:
    """Binds one socket per worker, starts `workers` processes on them, restarts any that die on
    the same socket, stops them all on SIGINT or SIGTERM. Binding raises PortInUse."""

    def __init__(self, app: str, host: str, port: int, workers: int, options: dict[str, Any]):
        self.app, self.host, self.port, self.options = app, host, port, options
        self.context = multiprocessing.get_context("spawn")  # no inherited threads or torch state
        self.slots: list[_Slot] = []
        try:
            for _ in range(workers):
                self.slots.append(_Slot(reuseport_socket(host, port)))
        except OSError:
            self.close()
            raise
        self.stopping = False

    @property
    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        return [slot.process for slot in self.slots if slot.process is not None]

    def _start(self, slot: _Slot) -> None:
        slot.serving, serving = self.context.Pipe(duplex=False)
        slot.process = self.context.Process(target=_worker, args=(self.app, slot.sock, self.options, serving),
                                            daemon=False)
        slot.process.start()
        serving.close()
        slot.started_at = time.monotonic()
        slot.restart_at = None

    def _died(self, slot: _Slot) -> None:
        process, now = slot.process, time.monotonic()
        was_serving = _received(slot.serving)
        slot.serving.close()
        crash_loop = not was_serving or now - slot.started_at < CRASH_LOOP_UPTIME_S
        log.warning("worker %s exited with code %s%s; restarting it", process.pid, process.exitcode,
                    "" if was_serving else " before serving")
        process.join()
        process.close()
        if not was_serving and _listening(slot.sock):
            # Its predecessor had listened; with no worker able to start, stop the kernel from
            # queuing connections on this slot (resets those queued) until a replacement listens.
            slot.sock.close()
            slot.sock = reuseport_socket(self.host, self.port)
        slot.process = None
        slot.restart_at = now + (RESTART_PAUSE_S if crash_loop else 0.0)

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for slot in self.slots:
                self._start(slot)
            while not self.stopping:
                sentinels = [slot.process.sentinel for slot in self.slots if slot.process is not None]
                wait(sentinels, timeout=POLL_S)  # wakes up as soon as a worker dies
                for slot in self.slots:
                    if self.stopping:
                        break
                    if slot.process is not None and not slot.process.is_alive():
                        self._died(slot)
                    if slot.process is None and time.monotonic() >= slot.restart_at:
                        self._start(slot)
        finally:
            self._terminate()
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

    def close(self) -> None:
        for slot in self.slots:
            slot.sock.close()
