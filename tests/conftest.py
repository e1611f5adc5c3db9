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
    from training.registry import load_bundle

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
