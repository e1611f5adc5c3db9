"""What runs where in the one-machine cluster: ports, directories, each process's command and environment,
and nginx's configuration. Pure: nothing here starts a process (supervisor.py does).

    state_dir/
      cluster.json        what is running (the supervisor's pid, every service's process group, URLs, status)
      supervisor.log      the supervisor's own output
      admin-token         the admin bearer token of the replicas (0600; RECSYS_ADMIN_TOKEN wins when set)
      log-hmac.key        the recommendation log's HMAC key, one for every replica (0600; RECSYS_LOG_HMAC_KEY wins)
      postgres/           the PostgreSQL cluster (scripts/pg-cluster.sh): databases `recsys` (state) and `mlflow`
      mlflow/             the tracking server's log and artifact root (artifacts/)
      train/              `recsys train`'s working folder and log (when `up` trains the model)
      replica-a/ ...      one per replica: logs/ (its own hash chains), models/ (its model cache), serve.log
      nginx/              nginx.conf (generated), its pid file, error and access logs, temp folders
"""

from __future__ import annotations

import os
import secrets
import string
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

HOST = "127.0.0.1"  # every service of the cluster binds here only
STATE_FILE = "cluster.json"
MIN_KEY_CHARS = 32


class ClusterSpec(BaseModel):
    """The cluster's knobs; the defaults run two replicas of two workers behind nginx on port 8080."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path
    port: int = Field(default=8080, ge=1, le=65535, description="nginx, the one address clients use")
    replica_ports: tuple[int, ...] = Field(default=(8101, 8102), min_length=1, max_length=26)
    workers: int = Field(default=2, ge=1, le=64, description="uvicorn worker processes per replica")
    mlflow_port: int = Field(default=5050, ge=1, le=65535)
    postgres_port: int = Field(default=55432, ge=1, le=65535)
    dataset: str = "movielens-100k"  # what `up` trains on (a name or a folder) unless `train` is False
    train_config: Path | None = None  # `recsys train --config`
    train: bool = True  # train (or reuse, same data and config) a model in the cluster's MLflow server
    model_uri: str | None = None  # what the replicas serve (default: the registered model's serving alias)

    @model_validator(mode="after")
    def _distinct_ports(self) -> ClusterSpec:
        ports = [self.port, self.mlflow_port, self.postgres_port, *self.replica_ports]
        repeated = sorted({p for p in ports if ports.count(p) > 1})
        if repeated:
            raise ValueError(f"ports: each service needs its own port; {repeated} given twice")
        return self

    # -- places -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    @property
    def train_dir(self) -> Path:
        return self.state_dir / "train"

    @property
    def nginx_dir(self) -> Path:
        return self.state_dir / "nginx"

    @property
    def replica_names(self) -> list[str]:
        return [f"replica-{string.ascii_lowercase[i]}" for i in range(len(self.replica_ports))]

    def replica_dir(self, index: int) -> Path:
        return self.state_dir / self.replica_names[index]

    def replica_log_dir(self, index: int) -> Path:
        return self.replica_dir(index) / "logs"

    # -- addresses ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    def replica_url(self, index: int) -> str:
        return f"http://{HOST}:{self.replica_ports[index]}"

    def database_url(self, database: str) -> str:
        """The URL scripts/pg-cluster.sh prints for a database of the cluster (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@{HOST}:{self.postgres_port}/{database}"


def stored_secret(path: Path, env_name: str) -> str:
    """The value of `env_name` when set, else the one stored at `path` (made once, random, 0600), so a
    restarted cluster keeps its admin token and, above all, the key that verifies its old logs."""
    value = os.environ.get(env_name)
    if value:
        return value
    if path.is_file():
        stored = path.read_text().strip()
        if len(stored) >= MIN_KEY_CHARS:
            return stored
    value = secrets.token_urlsafe(MIN_KEY_CHARS)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def python_command(*args: str) -> list[str]:
    """This interpreter running the `recsys` command (the same code and virtualenv as the caller)."""
    return [sys.executable, "-m", "app.cli", *args]


def mlflow_env() -> dict[str, str]:
    """Client settings for every process that talks to the tracking server: bounded retries, so a
    server that is down fails a command in seconds instead of minutes of back-off."""
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def mlflow_command(spec: ClusterSpec) -> list[str]:
    """The tracking server: PostgreSQL backend store (the psycopg 3 URL works as is), artifacts
    proxied by the server (`mlflow-artifacts:/`) into a local folder, so clients need no file access."""
    return [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", spec.database_url("mlflow"),
        "--artifacts-destination", str(spec.mlflow_dir / "artifacts"),
        "--serve-artifacts",
        "--host", HOST, "--port", str(spec.mlflow_port), "--workers", "1",
    ]


def mlflow_server_env() -> dict[str, str]:
    # The server's background job runner serves GenAI features this project does not use.
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def model_env(spec: ClusterSpec) -> dict[str, str]:
    """Where a process finds the model registry: the cluster's tracking server."""
    return {"MLFLOW_TRACKING_URI": spec.mlflow_url, "RECSYS_MLFLOW_TRACKING_URI": spec.mlflow_url, **mlflow_env()}


def train_command(spec: ClusterSpec) -> list[str]:
    command = python_command("train", "--dataset", spec.dataset, "--reuse", "--no-progress")
    if spec.train_config is not None:
        command += ["--config", str(spec.train_config)]
    return command


def replica_command(spec: ClusterSpec, index: int) -> list[str]:
    return python_command("serve", "--host", HOST, "--port", str(spec.replica_ports[index]),
                          "--workers", str(spec.workers))


def replica_env(spec: ClusterSpec, index: int, admin_token: str, log_key: str) -> dict[str, str]:
    """One replica: the shared state database and registry, its own log directory and model cache,
    the cluster's admin token and log key (one key, so one `recsys logs verify` checks every replica)."""
    env = {
        **model_env(spec),
        "RECSYS_DATABASE_URL": spec.database_url("recsys"),
        "RECSYS_VAR_DIR": str(spec.replica_dir(index)),
        "RECSYS_LOG_DIR": str(spec.replica_log_dir(index)),
        "RECSYS_LOG_HMAC_KEY": log_key,
        "RECSYS_ADMIN_TOKEN": admin_token,
    }
    if spec.model_uri:
        env["RECSYS_MODEL_URI"] = spec.model_uri
    return env


def nginx_conf(spec: ClusterSpec) -> str:
    """nginx in front of the replicas, round-robin (its default balancing), run in the foreground as the
    supervisor's child with every file it writes under nginx/.

    A logged list (GET /v1/recommendations/{id}) is in the log of the replica that served it, so that
    route alone tries the next replica on a 404; nothing else is retried on another replica after an
    answer (a POST never is: nginx replays no non-idempotent request), only on a connection error."""
    root = spec.nginx_dir
    servers = "\n".join(f"        server {HOST}:{port};" for port in spec.replica_ports)
    proxy = """            proxy_pass http://recsys_replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 60s;
            add_header X-Upstream $upstream_addr always;"""
    return f"""# Generated by `recsys cluster up` (app/cluster/topology.py); rewritten on every start.
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    # The replicas answer oversized bodies themselves (413 JSON with the request id), so nginx lets them through.
    client_max_body_size 4m;

    upstream recsys_replicas {{
{servers}
        keepalive 32;
        # Idle kept-alive connections close on nginx's side first (uvicorn closes them after 5 s): a
        # POST sent on a connection the replica is closing would be a 502 that nginx may not replay.
        keepalive_timeout 4s;
    }}

    server {{
        listen {HOST}:{spec.port};

        location ~ ^/v1/recommendations/[^/]+$ {{
{proxy}
            proxy_next_upstream error timeout http_404;
        }}

        location / {{
{proxy}
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_command(spec: ClusterSpec, nginx: str, test: bool = False) -> list[str]:
    command = [nginx, "-p", str(spec.nginx_dir), "-c", str(spec.nginx_dir / "nginx.conf"),
               "-e", str(spec.nginx_dir / "error.log")]
    return [*command, "-t", "-q"] if test else command
