"""A real `recsys serve` process for a benchmark: 127.0.0.1, a free port, its own state database and
log directory, stopped (with all its workers) when the benchmark is done."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.machine import tree_peak_rss_mb

BENCH_ADMIN_TOKEN = "benchmark-admin-token"


class ServerError(RuntimeError):
    """The server did not start or become ready; the message carries the tail of its output."""


class _EarlyExit(Exception):
    def __init__(self, output: str):
        super().__init__("server exited during startup")
        self.output = output


def recsys_executable() -> str:
    """The `recsys` script next to the running Python (the project's venv)."""
    candidate = Path(sys.executable).with_name("recsys")
    if not candidate.exists():
        raise ServerError(f"cannot find the recsys command at {candidate}; install the project (make install)")
    return str(candidate)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`recsys serve --workers N` on 127.0.0.1 with `env` (model store) plus a private state db
    (or `database_url`) and log dir under `workdir` (a temporary directory when None). Use as a
    context manager."""

    def __init__(self, env: dict[str, str] | None = None, workers: int = 2, workdir: Path | None = None,
                 ready_timeout_s: float = 600.0, database_url: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.ready_timeout_s = ready_timeout_s
        self._tmp = None if workdir is not None else tempfile.mkdtemp(prefix="recsys-bench-server-")
        self.workdir = Path(workdir or self._tmp)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **(env or {}),
            "RECSYS_DATABASE_URL": database_url or f"sqlite:///{self.workdir / 'state.db'}",
            "RECSYS_LOG_DIR": str(self.workdir / "logs"),
            "RECSYS_ADMIN_TOKEN": BENCH_ADMIN_TOKEN,
            # the load generator speaks for many users; token verification is not what is measured
            "RECSYS_AUTH__MODE": "development",
        }
        self.admin_token = BENCH_ADMIN_TOKEN
        self.process: subprocess.Popen | None = None
        self.failed_starts: list[str] = []  # output of starts that exited early (see `start`)
        self._output = self.workdir / "server.out"

    def start(self, attempts: int = 2) -> ServerProcess:
        """Start and wait until every worker is ready. A server that exits during startup is started
        once more (recorded in `failed_starts`): two workers seeding a fresh state database at the
        same moment can collide, and a benchmark should report that, not die of it."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except _EarlyExit as exc:
                self.failed_starts.append(exc.output[-2000:])
                if attempt == attempts:
                    raise ServerError(f"recsys serve exited during startup {attempts} times; last output: "
                                      f"{exc.output[-1500:]}") from None
        return self

    def _start_once(self) -> ServerProcess:
        command = [recsys_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(self.workers), "--log-level", "info"]
        with open(self._output, "wb") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise _EarlyExit(self.output_tail(1 << 16))
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200 and self._all_workers_ready():
                    return self
                error = response.json().get("error") if response.status_code == 503 else None
                if error:  # the worker is up but could not load the model: waiting will not help
                    self.stop()
                    raise ServerError(f"recsys serve cannot serve: {error}")
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"recsys serve was not ready after {self.ready_timeout_s:.0f}s: {self.output_tail(1500)}")

    def _all_workers_ready(self) -> bool:
        """Every worker (not just the first) has finished loading the model: uvicorn logs one
        "Application startup complete" per worker at log level info."""
        return self.output_tail(1 << 20).count("Application startup complete") >= self.workers

    def peak_rss(self) -> dict:
        """Peak RSS of the server's process tree (the uvicorn supervisor and its workers)."""
        if self.process is None:
            return {"total_mb": 0.0, "largest_process_mb": 0.0, "processes": 0}
        return tree_peak_rss_mb(self.process.pid)

    def output_tail(self, chars: int = 3000) -> str:
        try:
            return self._output.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
