"""Shared fixtures: a small synthetic dataset, a model trained on it through the real CLI into a
temporary MLflow store, the app built around that model, and a real uvicorn server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from recsys.datasets.synthetic import SyntheticConfig, generate

RECSYS = str(Path(sys.executable).with_name("recsys"))
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """400 users, 3,000 items: every label, minors, duplicates, skewed popularity."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(SyntheticConfig(n_users=400, n_items=3_000, seed=7, interactions_per_user=30, mainstream_share=0.01)).save(out)
    return out


@pytest.fixture(scope="session")
def model_env(tmp_path_factory, synthetic_dir) -> dict[str, str]:
    """Environment of a project whose MLflow store holds a model trained by `recsys train`."""
    root = tmp_path_factory.mktemp("project")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "RECSYS_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "RECSYS_MLFLOW_ARTIFACTS_DIR": str(root / "mlartifacts"),
        "RECSYS_VAR_DIR": str(root / "var"),
        "RECSYS_DATASET_DIR": str(synthetic_dir),
        "RECSYS_AUTH__MODE": "development",  # user authentication has its own tests (tests/serving/test_auth.py)
    }
    result = subprocess.run(
        [RECSYS, "train", "--dataset", str(synthetic_dir), "--seed", "0"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return env


@pytest.fixture(scope="session")
def trained(model_env):
    """(bundle, version) loaded from the registry by alias, as the server loads it."""
    from recsys.config import core_settings, environment
    from recsys.registry import load_bundle

    with environment({k: v for k, v in model_env.items() if k.startswith(("MLFLOW_", "RECSYS_"))}):
        settings = core_settings()
        return load_bundle(f"models:/{settings.model_name}@{settings.model_alias}")


class MovableClock:
    """An injectable clock tests can set and move."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # 18:00 in Asia/Shanghai: outside curfew


@pytest.fixture
def make_settings(tmp_path) -> Callable:
    from compliance.logstore import LogConfig
    from serving.auth import AuthConfig
    from serving.config import Settings

    def make(**overrides):
        values = {
            "auth": AuthConfig(mode="development"),
            "database_url": f"sqlite:///{tmp_path / 'state.db'}",
            "logs": LogConfig(dir=tmp_path / "logs", fsync="group"),
            "admin_token": ADMIN_TOKEN,
            "filing_number": "TEST-FILING-0001",
            "feature_library_path": tmp_path / "features.jsonl",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def client_factory(trained, make_settings, clock) -> Iterator[Callable]:
    """Build a TestClient around the trained model; every client is closed at the end."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    clients = []

    def make(clock=clock, **overrides):
        app = create_app(make_settings(**overrides), clock=clock, bundle_loader=lambda uri: trained)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory):
    return client_factory()


SECOND_APPROVER = ("approver-two", "approver-two-password")


def approve(client, intervention):
    """The two-person rule's second person: an approver account (made once per app) approves a
    pending intervention (the JSON of its creation response); an active one is returned as is."""
    if intervention.get("status") != "pending":
        return intervention
    from serving.operators import Operator

    accounts = client.app.state.services.accounts
    name, password = SECOND_APPROVER
    if accounts.store.get(name) is None:
        accounts.add(name, "approver", password)
    token = accounts.issue_token(Operator(name, "approver"))
    response = client.post(f"/v1/admin/interventions/{intervention['id']}/approve",
                           headers={"Authorization": f"Bearer {token}"}, json={"reason": "checked by a second person"})
    assert response.status_code == 200, response.text
    return response.json()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `recsys serve` process on 127.0.0.1."""

    def __init__(self, env: dict[str, str], workers: int, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {
            **env,
            "RECSYS_DATABASE_URL": f"sqlite:///{tmp / 'state.db'}",
            "RECSYS_LOG_DIR": str(tmp / "logs"),
            "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECSYS_FILING_NUMBER": "TEST-FILING-0001",
        }
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> Server:
        self.process = subprocess.Popen(
            [RECSYS, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not become ready in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


@pytest.fixture
def server_factory(model_env, tmp_path) -> Iterator[Callable[..., Server]]:
    servers = []

    def make(workers: int = 2) -> Server:
        server = Server(model_env, workers, tmp_path).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# -- PostgreSQL: the state database's second backend (tests/serving/test_state_*.py) ----------------
PG_CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pg-cluster.sh"


class PostgresCluster:
    """A throwaway PostgreSQL server started by scripts/pg-cluster.sh, and fresh databases in it."""

    def __init__(self, url: str, start_seconds: float):
        self.url = url  # postgresql+psycopg://postgres@127.0.0.1:PORT/recsys
        self.start_seconds = start_seconds  # how long starting it took (install excluded when already there)
        self._made = 0

    def create_database(self, prefix: str = "test", template: str = "template0") -> str:
        """CREATE DATABASE ... TEMPLATE `template` (empty by default); returns its URL."""
        import psycopg
        from sqlalchemy.engine import make_url

        self._made += 1
        name = f"{''.join(c if c.isalnum() else '_' for c in prefix.lower())[:40]}_{self._made}"
        admin = make_url(self.url)
        with psycopg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return admin.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole session (installed first when missing), stopped at the end.
    RECSYS_TEST_POSTGRES=skip skips the PostgreSQL cases on a machine that cannot run it."""
    import shutil
    import tempfile

    if os.environ.get("RECSYS_TEST_POSTGRES") == "skip":
        pytest.skip("RECSYS_TEST_POSTGRES=skip")
    # Not under pytest's 0700 temporary folder: as root the cluster runs as `postgres`, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    started = time.perf_counter()
    result = subprocess.run(["bash", str(PG_CLUSTER_SCRIPT), "start", str(root), str(free_port())],
                            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"scripts/pg-cluster.sh start failed: {result.stderr.strip()[-2000:]} "
                    "(RECSYS_TEST_POSTGRES=skip skips the PostgreSQL cases)", pytrace=False)
    cluster = PostgresCluster(result.stdout.strip().splitlines()[-1], time.perf_counter() - started)
    try:
        yield cluster
    finally:
        subprocess.run(["bash", str(PG_CLUSTER_SCRIPT), "stop", str(root)], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres, request) -> str:
    """A fresh, empty PostgreSQL database for this test module."""
    return postgres.create_database(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def state_url(request, tmp_path_factory) -> str:
    """This module's state database on each backend: a new SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module")
def state_engine(state_url):
    """An engine over `state_url` for this module, disposed after it."""
    from serving.state.db import make_engine

    engine = make_engine(state_url)
    yield engine
    engine.dispose()
