"""The cluster's supervisor: one process that starts every service in order, waits until each answers,
watches them, and stops them all, in reverse order, on SIGTERM/SIGINT or when one of them dies.

    PostgreSQL ► MLflow tracking server ► the model (trained or reused in that server) ► replicas ► nginx

Every service but PostgreSQL (which pg_ctl runs as the `postgres` user) is a child of the supervisor in
its own process group, so stopping a service ends everything it started (uvicorn workers, the tracking
server's uvicorn) and the supervisor reaps them all: nothing is left behind, not even a zombie. The
children are also told to die with the supervisor (Linux parent-death signal), so a supervisor that is
killed outright does not leave servers holding the ports. What is running is written to cluster.json
(`recsys cluster status|down` read it).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.cluster.topology import (
    ClusterSpec,
    mlflow_command,
    mlflow_server_env,
    model_env,
    nginx_command,
    nginx_conf,
    replica_command,
    replica_env,
    stored_secret,
    train_command,
)

PG_CLUSTER = Path(__file__).resolve().parents[2] / "scripts" / "pg-cluster.sh"
NGINX_INSTALL = "scripts/nginx.sh install"
STOP_TIMEOUT_S = 30.0
POLL_S = 0.25
PR_SET_PDEATHSIG = 1


class StartupFailed(RuntimeError):
    """A service did not come up; the message names it and quotes its log."""


class Stopping(BaseException):
    """Raised in the supervisor by SIGTERM/SIGINT: leave whatever is waiting and stop everything."""


@dataclass
class Service:
    """A child process group of the supervisor."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    @property
    def pgid(self) -> int:
        return self.process.pid  # started with start_new_session: the leader's pid is the group's id

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.process.pid, "pgid": self.pgid, "log": str(self.log), "url": self.url}


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())[:1500] or "(empty log)"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def stop_group(pgid: int, leader: subprocess.Popen[bytes] | None, first: int = signal.SIGTERM,
               timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Signal a process group, wait (bounded) until none of it is alive, SIGKILL what remains; reap the leader."""
    for sig, wait_s in ((first, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if _wait_gone(pgid, leader, wait_s):
            break
    if leader is not None:
        try:
            leader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _wait_gone(pgid: int, leader: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap the leader as soon as it exits
        if not group_members(pgid):
            return True
        time.sleep(POLL_S)
    return False


def wait_http(url: str, ok: Callable[[httpx.Response], bool], deadline: float, service: Service | None,
              what: str) -> None:
    """Poll `url` until `ok(response)`, the service's process exits, or the deadline passes."""
    while True:
        if service is not None and service.process.poll() is not None:
            raise StartupFailed(f"{what} exited with code {service.process.returncode}: {tail(service.log)}")
        try:
            if ok(httpx.get(url, timeout=5)):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            log = f": {tail(service.log)}" if service is not None else ""
            raise StartupFailed(f"{what} did not answer {url} in time{log}")
        time.sleep(POLL_S * 2)


@dataclass
class Supervisor:
    spec: ClusterSpec
    timeout_s: float = 900.0
    services: list[Service] = field(default_factory=list)
    postgres_started: bool = False
    error: str | None = None  # why the cluster failed (kept in cluster.json through stopping)
    _stopping: bool = False

    # -- lifecycle --------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, then watch until asked to stop (0) or a service dies (1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        code = 0
        try:
            self.write_state("starting")
            self.start()
            self.write_state("ready")
            code = self.watch()
        except Stopping:
            code = 0
        except StartupFailed as exc:
            self.error = str(exc)
            self.write_state("failed")
            code = 1
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping cannot be interrupted half-way
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.stop()
            self.write_state("stopped" if code == 0 else "failed")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stopping()

    def start(self) -> None:
        spec = self.spec
        deadline = time.monotonic() + self.timeout_s
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        admin_token = stored_secret(spec.state_dir / "admin-token", "RECSYS_ADMIN_TOKEN")
        log_key = stored_secret(spec.state_dir / "log-hmac.key", "RECSYS_LOG_HMAC_KEY")
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        if nginx is None:
            raise StartupFailed(f"nginx is not installed: run `{NGINX_INSTALL}` (Debian's nginx; root and apt-get)")
        steps: list[tuple[str, Callable[[], None]]] = [
            ("postgresql", self.start_postgres),
            ("the MLflow server", lambda: self.start_mlflow(deadline)),
            ("the model", lambda: self.ensure_model(deadline)),
            ("the replicas", lambda: self.start_replicas(admin_token, log_key, deadline)),
            ("nginx", lambda: self.start_nginx(nginx, deadline)),
        ]
        for what, step in steps:
            started = time.monotonic()
            step()
            print(f"{what} ready in {time.monotonic() - started:.1f} s", flush=True)

    def watch(self) -> int:
        while True:
            for service in self.services:
                if service.process.poll() is not None:
                    self.error = f"{service.name} exited with code {service.process.returncode}: {tail(service.log)}"
                    self.write_state("failed")
                    return 1
            time.sleep(POLL_S * 2)

    def stop(self) -> None:
        """Stop every service, the last started first, then PostgreSQL."""
        self.write_state("stopping")
        for service in reversed(self.services):
            started = time.monotonic()
            # nginx: SIGQUIT is its graceful shutdown (finish the requests in flight).
            stop_group(service.pgid, service.process, signal.SIGQUIT if service.name == "nginx" else signal.SIGTERM)
            print(f"stopped {service.name} in {time.monotonic() - started:.1f} s", flush=True)
        self.services.clear()
        if self.postgres_started:
            started = time.monotonic()
            subprocess.run(["bash", str(PG_CLUSTER), "stop", str(self.spec.postgres_dir)], capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL)
            self.postgres_started = False
            print(f"stopped postgresql in {time.monotonic() - started:.1f} s", flush=True)

    # -- the services -----------------------------------------------------------------------------
    def spawn(self, name: str, command: list[str], env: dict[str, str], log: Path, url: str | None = None,
              cwd: Path | None = None) -> Service:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                       preexec_fn=_die_with_parent)
        service = Service(name, process, log, url)
        self.services.append(service)
        self.write_state("starting")
        return service

    def start_postgres(self) -> None:
        """One PostgreSQL server, two databases: `recsys` (the replicas' state) and `mlflow` (the registry)."""
        spec = self.spec
        # As root the server runs as `postgres`, which must reach the cluster folder through the state dir.
        spec.state_dir.chmod(spec.state_dir.stat().st_mode | 0o055)
        self.postgres_started = True  # from here on, stop() stops it (even if starting is interrupted)
        for database in ("recsys", "mlflow"):
            result = subprocess.run(["bash", str(PG_CLUSTER), "start", str(spec.postgres_dir), str(spec.postgres_port),
                                     database], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise StartupFailed(f"postgresql: {result.stderr.strip()[-1500:]}")

    def start_mlflow(self, deadline: float) -> None:
        spec = self.spec
        (spec.mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        service = self.spawn("mlflow", mlflow_command(spec), mlflow_server_env(), spec.mlflow_dir / "server.log",
                             spec.mlflow_url, cwd=spec.mlflow_dir)
        wait_http(f"{spec.mlflow_url}/health", lambda r: r.status_code == 200, deadline, service, "the MLflow server")

    def ensure_model(self, deadline: float) -> None:
        """Train (or reuse: same data and config) the model in the cluster's registry, or check one is there."""
        spec = self.spec
        env = {**model_env(spec), "RECSYS_VAR_DIR": str(spec.train_dir)}
        from recsys.config import environment

        with environment(env):
            from recsys import registry
            from recsys.config import core_settings

            if spec.train:
                _ensure_experiment(core_settings().experiment_name)
            elif spec.model_uri is None and registry.aliased_version() is None:
                settings = core_settings()
                raise StartupFailed(f"--no-train: the MLflow server holds no {settings.model_name}@{settings.model_alias}; "
                                    "run `recsys cluster up` without --no-train once")
        if not spec.train:
            return
        log = spec.train_dir / "train.log"
        service = self.spawn("train", train_command(spec), env, log)
        while service.process.poll() is None:
            if time.monotonic() > deadline:
                raise StartupFailed(f"training did not finish in time: {tail(log)}")
            time.sleep(POLL_S * 2)
        self.services.remove(service)
        if service.process.returncode != 0:
            raise StartupFailed(f"recsys train exited with code {service.process.returncode}: {tail(log)}")

    def start_replicas(self, admin_token: str, log_key: str, deadline: float) -> None:
        spec = self.spec
        started = []
        for index, name in enumerate(spec.replica_names):
            spec.replica_log_dir(index).mkdir(parents=True, exist_ok=True)
            started.append(self.spawn(name, replica_command(spec, index), replica_env(spec, index, admin_token, log_key),
                                      spec.replica_dir(index) / "serve.log", spec.replica_url(index)))
        for index, service in enumerate(started):
            wait_http(f"{spec.replica_url(index)}/readyz", lambda r: r.status_code == 200, deadline, service, service.name)

    def start_nginx(self, nginx: str, deadline: float) -> None:
        spec = self.spec
        for folder in ("tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (spec.nginx_dir / folder).mkdir(parents=True, exist_ok=True)
        (spec.nginx_dir / "nginx.conf").write_text(nginx_conf(spec))
        check = subprocess.run(nginx_command(spec, nginx, test=True), capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise StartupFailed(f"nginx -t: {check.stderr.strip()[-1000:]}")
        service = self.spawn("nginx", nginx_command(spec, nginx), {}, spec.nginx_dir / "nginx.out", spec.url)
        wait_http(f"{spec.url}/readyz", lambda r: r.status_code == 200, deadline, service, "nginx")

    # -- the state file ---------------------------------------------------------------------------
    def write_state(self, status: str) -> None:
        spec = self.spec
        state = {
            "status": status,
            "error": self.error,
            "supervisor": {"pid": os.getpid(), "started": process_start_time(os.getpid())},
            "spec": spec.model_dump(mode="json"),
            "url": spec.url,
            "mlflow_url": spec.mlflow_url,
            "database_url": spec.database_url("recsys"),
            "replicas": [{"name": name, "url": spec.replica_url(i), "log_dir": str(spec.replica_log_dir(i))}
                         for i, name in enumerate(spec.replica_names)],
            "services": [s.describe() for s in self.services],
            "updated_at": time.time(),
        }
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = spec.state_file.with_name(f".{spec.state_file.name}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, spec.state_file)


def _ensure_experiment(name: str) -> None:
    """Create the experiment in the tracking server with the server's artifact root (`mlflow-artifacts:/`,
    proxied), before `recsys train` would create it with a local folder only this machine could read."""
    from recsys import registry

    import mlflow

    try:
        client = registry.client()
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name)
    except mlflow.exceptions.MlflowException as exc:
        raise StartupFailed(f"the MLflow server at {registry.tracking_uri()}: {' '.join(str(exc).split())[:300]}") from None


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot): with the pid, it names one process,
    so a pid reused by an unrelated process is never signalled."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[19])
