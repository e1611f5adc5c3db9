"""`recsys serve --workers N`: N uvicorn processes, each listening on its own SO_REUSEPORT socket.

Why not uvicorn's own `workers=N`: there every worker accepts from one inherited socket, and the
first worker to wake accepts every pending connection (asyncio accepts up to 100 per wake-up). A
client's keep-alive connections then pile onto one worker while the other idles: 8 connections
opened together landed 8/0 or 7/1 in a measurement here, which halved throughput at concurrency 8.
With one SO_REUSEPORT socket per worker the kernel spreads connections across workers by hash.

The supervisor restarts a worker that dies and stops all of them on SIGINT or SIGTERM. The price
of one socket per worker: connections already queued on a worker that crashes are reset (with a
shared socket the other workers would pick them up); requests in flight on it are lost either way.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from typing import Any

log = logging.getLogger("recsys.serving")

RESTART_PAUSE_S = 1.0  # between restarts of a crashing worker
STOP_TIMEOUT_S = 15.0


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
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own listening socket, one uvicorn server."""
    import uvicorn

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops workers with SIGTERM
    sock = reuseport_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Starts `workers` processes, restarts any that die, stops them all on a signal."""

    def __init__(self, app: str, host: str, port: int, workers: int, options: dict[str, Any]):
        self.args = (app, host, port, options)
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")  # no inherited threads or torch state
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.stopping = False

    def _start(self) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(target=_worker, args=self.args, daemon=False)
        process.start()
        return process

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.processes = [self._start() for _ in range(self.workers)]
            while not self.stopping:
                for slot, process in enumerate(self.processes):
                    if not process.is_alive() and not self.stopping:
                        log.warning("worker %s exited with code %s; restarting it", process.pid, process.exitcode)
                        time.sleep(RESTART_PAUSE_S)
                        self.processes[slot] = self._start()
                time.sleep(0.2)
        finally:
            self._terminate()
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
