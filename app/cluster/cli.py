"""`recsys cluster up|down|status`: start, stop and inspect the one-machine deployment (app/cluster/).

`up` starts the supervisor in the background and returns once nginx answers (or fails, quoting the
log of the service that did not come up, with everything already stopped); `up --foreground` runs
the supervisor in this process until Ctrl-C (`make cluster`). `down` asks the supervisor to stop
everything and waits until it has; `status` says what runs and whether each part answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from app.cluster.supervisor import STOP_TIMEOUT_S, group_members, process_start_time, tail
from app.cluster.topology import ClusterSpec, python_command

app = typer.Typer(help="The deployment topology on one machine: PostgreSQL, MLflow, replicas, nginx.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def default_state_dir() -> Path:
    from recsys.config import core_settings

    return core_settings().var_dir / "cluster"


StateDirOption = Annotated[Path | None, typer.Option("--state-dir", help="Where the cluster keeps everything (default var/cluster).")]


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "cluster.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        fail(f"--state-dir: cannot read {state_dir / 'cluster.json'}: {exc}")


def supervisor_alive(state: dict[str, Any]) -> bool:
    """True when the recorded supervisor still runs (same pid and start time: not a reused pid)."""
    supervisor = state.get("supervisor") or {}
    pid = supervisor.get("pid")
    return isinstance(pid, int) and process_start_time(pid) is not None and process_start_time(pid) == supervisor.get("started")


@app.command("up")
def up(
    state_dir: StateDirOption = None,
    port: Annotated[int, typer.Option(help="nginx: the address clients use.", min=1, max=65535)] = 8080,
    replica_port: Annotated[list[int] | None, typer.Option("--replica-port", help="One per replica (repeat it; default 8101 8102).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes per replica.", min=1, max=64)] = 2,
    mlflow_port: Annotated[int, typer.Option(help="The MLflow tracking server.", min=1, max=65535)] = 5050,
    postgres_port: Annotated[int, typer.Option(help="PostgreSQL.", min=1, max=65535)] = 55432,
    dataset: Annotated[str, typer.Option(help="What `up` trains the model on (a dataset name or folder).")] = "movielens-100k",
    train_config: Annotated[Path | None, typer.Option(help="Training config file (recsys train --config).")] = None,
    train: Annotated[bool, typer.Option(help="Train (or reuse: same data and config) the model in the cluster's MLflow server.")] = True,
    model_uri: Annotated[str | None, typer.Option(help="What the replicas serve (default: the registered model's alias).")] = None,
    foreground: Annotated[bool, typer.Option(help="Run the supervisor here until Ctrl-C instead of in the background.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for everything to answer.", min=1)] = 900.0,
) -> None:
    """Start PostgreSQL, an MLflow server, the replicas and nginx on 127.0.0.1; print their addresses."""
    from pydantic import ValidationError

    state_dir = (state_dir or default_state_dir()).resolve()
    try:
        spec = ClusterSpec(state_dir=state_dir, port=port, replica_ports=tuple(replica_port or (8101, 8102)),
                           workers=workers, mlflow_port=mlflow_port, postgres_port=postgres_port, dataset=dataset,
                           train_config=train_config.resolve() if train_config else None, train=train, model_uri=model_uri)
    except ValidationError as exc:
        fail("; ".join((f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: " if e["loc"] else "")
                       + e["msg"].removeprefix("Value error, ") for e in exc.errors()))
    if train_config is not None and not train_config.is_file():
        fail(f"--train-config: no such file: {train_config}")
    if supervisor_alive(read_state(state_dir)):
        fail(f"--state-dir: a cluster already runs from {state_dir} (`recsys cluster down` stops it)")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "spec.json").write_text(spec.model_dump_json(indent=1))
    if foreground:
        from app.cluster.supervisor import Supervisor

        raise typer.Exit(Supervisor(spec, timeout_s=timeout).run())
    (state_dir / "cluster.json").unlink(missing_ok=True)
    with open(state_dir / "supervisor.log", "ab") as out:
        process = subprocess.Popen(python_command("cluster", "supervise", "--state-dir", str(state_dir), "--timeout", str(timeout)),
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout + 60
    while True:
        state = read_state(state_dir)
        status = state.get("status")
        if status == "ready":
            break
        if status == "failed" or process.poll() is not None:
            _wait_quietly(process)  # the supervisor stops what it started before it exits
            fail(f"the cluster did not start: {read_state(state_dir).get('error') or tail(state_dir / 'supervisor.log')}", 1)
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGTERM)
            _wait_quietly(process)
            fail(f"the cluster did not start in {timeout:.0f} s (stopped); logs under {state_dir}", 1)
        time.sleep(0.5)
    print_state(state)


def _wait_quietly(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=STOP_TIMEOUT_S * 4)
    except subprocess.TimeoutExpired:
        pass


@app.command("supervise", hidden=True)
def supervise(
    state_dir: Annotated[Path, typer.Option("--state-dir")],
    timeout: Annotated[float, typer.Option()] = 900.0,
) -> None:
    """The background supervisor `up` starts (reads the spec `up` wrote)."""
    from app.cluster.supervisor import Supervisor

    spec = ClusterSpec.model_validate_json((state_dir / "spec.json").read_text())
    raise typer.Exit(Supervisor(spec, timeout_s=timeout).run())


@app.command("down")
def down(
    state_dir: StateDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for everything to stop.", min=1)] = 180.0,
) -> None:
    """Stop nginx, the replicas, the MLflow server and PostgreSQL (the state directory stays)."""
    state_dir = (state_dir or default_state_dir()).resolve()
    state = read_state(state_dir)
    if not state:
        typer.echo(f"no cluster has run from {state_dir}")
        return
    pid = int((state.get("supervisor") or {}).get("pid") or 0)
    if supervisor_alive(state):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while supervisor_alive(state) and time.monotonic() < deadline:
            time.sleep(0.25)
    forced = []
    if supervisor_alive(state):  # stuck: end it, then what it recorded
        os.kill(pid, signal.SIGKILL)
        forced.append("the supervisor")
    from app.cluster.supervisor import PG_CLUSTER, stop_group

    for service in reversed(state.get("services", [])):
        if group_members(service["pgid"]):  # the supervisor did not get to it (killed outright)
            stop_group(service["pgid"], None)
            forced.append(service["name"])
    # PostgreSQL is pg_ctl's daemon, not the supervisor's child: stopped here too when still running.
    if (state_dir / "postgres" / "data" / "postmaster.pid").exists():
        subprocess.run(["bash", str(PG_CLUSTER), "stop", str(state_dir / "postgres")], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
        forced.append("postgresql")
    typer.echo(f"stopped the cluster of {state_dir}" + (f" (forced: {', '.join(forced)})" if forced else ""))


@app.command("status")
def status(state_dir: StateDirOption = None) -> None:
    """What runs and whether it answers; exit 0 when the cluster is ready, 1 otherwise."""
    state_dir = (state_dir or default_state_dir()).resolve()
    state = read_state(state_dir)
    if not state:
        typer.echo(f"no cluster has run from {state_dir}")
        raise typer.Exit(1)
    alive = supervisor_alive(state)
    typer.echo(f"cluster {state_dir}: {state.get('status') if alive else 'not running'}"
               + (f" ({state['error']})" if state.get("error") else ""))
    healthy = alive and state.get("status") == "ready"
    for service in state.get("services", []):
        url = service.get("url")
        running = bool(group_members(service["pgid"]))
        answer = _probe(url + ("/health" if service["name"] == "mlflow" else "/readyz")) if running and url else (
            "running" if running else "not running")
        healthy &= running and (url is None or answer == "ready")
        typer.echo(f"  {service['name']:<10} pid {service['pid']:<8} {url or '':<24} {answer}")
    raise typer.Exit(0 if healthy else 1)


def _probe(url: str) -> str:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})"
    return "ready" if response.status_code == 200 else f"HTTP {response.status_code}"


def print_state(state: dict[str, Any]) -> None:
    spec = state["spec"]
    typer.echo(f"cluster ready: {state['url']} (nginx, round-robin over {len(state['replicas'])} replicas)")
    for replica in state["replicas"]:
        typer.echo(f"  {replica['name']}: {replica['url']}  logs {replica['log_dir']}")
    typer.echo(f"  MLflow: {state['mlflow_url']}   state database: {state['database_url']}")
    typer.echo(f"  admin token: $RECSYS_ADMIN_TOKEN or {spec['state_dir']}/admin-token;  "
               f"log key: $RECSYS_LOG_HMAC_KEY or {spec['state_dir']}/log-hmac.key")
    typer.echo(f"  logs: recsys logs verify --dir '{spec['state_dir']}/replica-*/logs' --key-file {spec['state_dir']}/log-hmac.key")
    typer.echo(f"  stop: recsys cluster down --state-dir {spec['state_dir']}")
