"""`recsys serve`: checks the configuration, then runs the app under uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes; state is shared through the database.", min=1, max=64)] = 1,
    model_uri: Annotated[
        str | None, typer.Option(help="MLflow model URI (default: models:/<name>@<alias> of the registered model).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recommendations over HTTP (FastAPI under uvicorn); OpenAPI docs at /docs."""
    import uvicorn
    from pydantic import ValidationError

    if model_uri:
        os.environ["RECSYS_MODEL_URI"] = model_uri
    try:
        from serving.config import Settings

        settings = Settings()
        settings.auth.check()  # a server that cannot authenticate users does not start
    except (ValidationError, ValueError) as exc:
        _fail(f"configuration: {_first_line(exc)}")
    _check_log_dir(settings.logs.dir)
    if workers > 1:
        # Prometheus counters of every worker, aggregated by /metrics.
        metrics_dir = settings.logs.dir.parent / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from serving.protocol import NoDelayH11Protocol

    options = {"log_level": log_level, "access_log": False, "http": NoDelayH11Protocol}
    if workers == 1:
        typer.echo(f"serving {settings.model_uri} on http://{host}:{port} (1 worker); docs at /docs")
        uvicorn.run("serving.asgi:app", host=host, port=port, **options)
        return
    from serving.workers import PortInUse, Supervisor, check_port_free

    try:
        check_port_free(host, port)
        supervisor = Supervisor("serving.asgi:app", host, port, workers, options)  # binds the workers' sockets
    except PortInUse as exc:
        _fail(str(exc))
    typer.echo(f"serving {settings.model_uri} on http://{host}:{port} ({workers} workers, one SO_REUSEPORT socket each); "
               "docs at /docs")
    raise typer.Exit(supervisor.run())


def _check_log_dir(directory: Path) -> None:
    """Refuse to start when the recommendation log cannot be written (Art. 28 (draft 24)): never serve unlogged."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        _fail(f"logs.dir: cannot write the recommendation log at {directory}: {exc.strerror}")
    free = shutil.disk_usage(directory).free
    if free < 64 * 1024 * 1024:
        _fail(f"logs.dir: only {free // (1024 * 1024)} MiB free at {directory}; refusing to serve unlogged lists")


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
