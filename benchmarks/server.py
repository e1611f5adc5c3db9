"""A real `recsys serve` process for a benchmark: 127.0.0.1, a free port, its own state database and
log directory, stopped (with all its workers) when the benchmark is done.

Also the transport floor of the latency benchmark's real-path section: a bare FastAPI app
(`floor_app`) that returns a fixed body on POST /v1/recommendations, served exactly as
`recsys serve` serves the real app (uvicorn with the project's NoDelayH11Protocol, access log off,
one worker in process or N workers under the project's SO_REUSEPORT supervisor):
`python -m benchmarks.server floor --port P --workers N --body FILE`.
"""

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
FLOOR_BODY_ENV = "RECSYS_BENCH_FLOOR_BODY"  # the file whose bytes the floor app returns


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
                 ready_timeout_s: float = 600.0, database_url: str | None = None,
                 command: list[str] | None = None):
        """`command`: what to start instead of `recsys serve` (it gets the same --host, --port,
        --workers and --log-level options, and must log uvicorn's "Application startup complete"
        once per worker), e.g. `floor_command(body_file)`."""
        self.command = command
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
        command = [*(self.command or [recsys_executable(), "serve"]), "--host", "127.0.0.1", "--port", str(self.port),
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

    def worker_pids(self) -> list[int]:
        """The worker processes (the supervisor's spawned children; the server itself with one worker)."""
        from benchmarks.machine import process_tree

        if self.process is None:
            return []
        children = []
        for pid in process_tree(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                children.append(pid)
        return children or [self.process.pid]

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


# ---------------------------------------------------------------------------------------------------
# The floor: a bare FastAPI app returning a fixed body, served like `recsys serve`
# ---------------------------------------------------------------------------------------------------
def floor_command() -> list[str]:
    """The argv prefix that starts the floor server (ServerProcess adds --host/--port/--workers)."""
    return [sys.executable, "-m", "benchmarks.server", "floor"]


def floor_app():
    """uvicorn factory: POST /v1/recommendations returns the bytes of $RECSYS_BENCH_FLOOR_BODY as
    JSON (no validation, no work); GET /readyz answers 200. What any response of that size costs."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = Path(os.environ[FLOOR_BODY_ENV]).read_bytes()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/recommendations")
    async def recommendations() -> Response:
        return Response(body, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def serve_floor(argv: list[str]) -> int:
    """`python -m benchmarks.server floor --host H --port P --workers N --log-level L`: the uvicorn
    options and worker model of `serving.cli.serve_command`, with `floor_app` as the app."""
    import argparse

    import uvicorn

    from serving.protocol import NoDelayH11Protocol

    parser = argparse.ArgumentParser(prog="python -m benchmarks.server floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if not Path(os.environ.get(FLOOR_BODY_ENV, "")).is_file():
        print(f"error: {FLOOR_BODY_ENV} must name the file of the body to return", file=sys.stderr)
        return 2
    options = {"log_level": args.log_level, "access_log": False, "http": NoDelayH11Protocol, "factory": True}
    app = "benchmarks.server:floor_app"
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, **options)
        return 0
    from serving.workers import Supervisor

    return Supervisor(app, args.host, args.port, args.workers, options).run()


if __name__ == "__main__":
    if sys.argv[1:2] != ["floor"]:
        print("usage: python -m benchmarks.server floor --port P [--workers N] [--host H] [--log-level L]", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve_floor(sys.argv[2:]))
