"""`recsys train --engine ray` (issue 13.4) on a local Ray instance the test starts (2 CPUs, loopback
only, no dashboard): parity with the local engine (the same data read, the same registered files,
the same ranker up to float rounding, the same NDCG), the model it registers serves, and the
periodic review (Art. 8) still withholds the alias from a version that fails it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import typer
from typer.testing import CliRunner

from recsys.config import core_settings
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.registry import client, load_bundle
from training.cli import train_command
from training.config import TrainingConfig
from training.engine import LocalEngine
from training.pipeline import train
from training.ray_engine import LOOPBACK_ONLY, RayEngine

pytestmark = pytest.mark.e2e  # starts a Ray instance and trains three models

SMALL = {
    "als": {"factors": 16, "regularization": 1.0, "iterations": 8},
    "n_candidates": 60,
    "ranker": {"params": {"hidden": [16], "epochs": 12}},
    # A small SASRec (the tests check the pipeline, not its quality): the default 64-dim, 2-block, 20-epoch model
    # is trained twice per run and was most of each run's time.
    "sequential": {"n_candidates": 30, "sasrec": {"max_len": 20, "hidden": 16, "blocks": 1, "epochs": 3}},
    # A shorter Art. 8 review simulation (its default, 100 users x 20 sessions and 2,000 checked lists, was half
    # of each run): every check still runs and is logged; the thresholds are unchanged.
    "review": {"simulation_users": 20, "simulation_sessions": 5, "list_users": 100},
}


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance on 127.0.0.1 with 2 CPUs and no dashboard, shut down after the module."""
    previous = os.environ.get(LOOPBACK_ONLY)
    os.environ[LOOPBACK_ONLY] = "0"  # read when ray is imported: the node takes the loopback address
    import ray

    # address="local": a new instance of its own, never a cluster another process left running here.
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        yield ray
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop(LOOPBACK_ONLY, None)
        else:
            os.environ[LOOPBACK_ONLY] = previous


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A temporary MLflow store and var dir, set through the environment as a user would."""
    root = tmp_path_factory.mktemp("mlflow-ray")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "RECSYS_MLFLOW_ARTIFACTS_DIR": str(root / "artifacts"),
        "RECSYS_VAR_DIR": str(root / "var"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        core_settings.cache_clear()
        yield root
    core_settings.cache_clear()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic-ray")
    generate(SyntheticConfig(n_users=250, n_items=600, interactions_per_user=30, seed=11)).save(out)
    return out


@pytest.fixture(scope="module")
def both(store, dataset_dir, ray_session):
    """The same data and config trained by the local engine (version 1), then by Ray (version 2)."""
    config = TrainingConfig.model_validate(SMALL)
    local = train(str(dataset_dir), config, progress=False, engine=LocalEngine())
    on_ray = train(str(dataset_dir), config, progress=False, engine=RayEngine(workers=2))
    return local, on_ray


def bundle_files(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}


def test_the_ray_engine_registers_the_local_engines_model(both):
    local, on_ray = both
    assert (local.engine, on_ray.engine) == ("local", "ray")
    assert (local.model_version, on_ray.model_version) == ("1", "2") and on_ray.alias_set
    runs = {result.engine: client().get_run(result.run_id) for result in both}
    assert runs["ray"].data.params["engine"] == "ray" and runs["ray"].data.params["engine.workers"] == "2"
    assert runs["local"].data.params["engine"] == "local"
    # Ray Data read the very frames polars reads (the fingerprint hashes them).
    assert runs["ray"].data.tags["dataset_fingerprint"] == runs["local"].data.tags["dataset_fingerprint"]
    assert runs["ray"].data.tags["config_hash"] == runs["local"].data.tags["config_hash"]

    name = core_settings().model_name
    (local_bundle, _), (ray_bundle, _) = (load_bundle(f"models:/{name}/{v}") for v in ("1", "2"))
    assert bundle_files(local_bundle.path) == bundle_files(ray_bundle.path)
    local_manifest, ray_manifest = (json.loads((b.path / "manifest.json").read_text()) for b in (local_bundle, ray_bundle))
    assert local_manifest.keys() == ray_manifest.keys() and ray_manifest["engine"] == "ray"
    # ALS in a Ray task: implicit with the same seed, data and threads gives the same factors.
    np.testing.assert_allclose(ray_bundle.item_factors, local_bundle.item_factors, atol=1e-5)

    # DDP over 2 replicas takes the single process's optimisation steps: the weights agree up to
    # float rounding. The output bias is the exception the loss allows: a listwise softmax does not
    # see a constant added to every score, so Adam moves it on rounding noise alone; the scores of
    # a list therefore agree up to one constant, and the order is the same.
    local_weights, ray_weights = local_bundle.ranker.network.state_dict(), ray_bundle.ranker.network.state_dict()
    output_bias = list(local_weights)[-1]
    for key, value in local_weights.items():
        if key != output_bias:
            torch.testing.assert_close(ray_weights[key], value, atol=1e-5, rtol=1e-4, msg=key)
    user = next(iter(local_bundle.user_index.values()))
    vector = local_bundle.user_factors[user]
    _, found = local_bundle.index.search(vector[None], 60)
    features = local_bundle.features(vector, local_bundle.user_history(user), found[0], local_bundle.item_factors[found[0]] @ vector)
    shift = ray_bundle.ranker.score(features) - local_bundle.ranker.score(features)
    assert float(np.ptp(shift)) < 1e-4

    for rule in ("unseen_", ""):
        assert abs(on_ray.metrics["two-stage"][f"{rule}ndcg_at_10"] - local.metrics["two-stage"][f"{rule}ndcg_at_10"]) <= 0.002
    assert abs(on_ray.validation["ranker_ndcg_at_10"] - local.validation["ranker_ndcg_at_10"]) <= 0.002
    assert on_ray.review["passed"]
    values = {engine: {c["name"]: c["value"] for c in result.review["checks"]} for engine, result in zip(("local", "ray"), both)}
    assert values["ray"] == pytest.approx(values["local"], abs=0.002)


def test_the_model_registered_by_ray_serves(both, dataset_dir, make_settings, clock):
    """The server's own loading path (the registry alias, now on the Ray version) and a list."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    settings = core_settings()
    adults = pl.read_parquet(dataset_dir / "users.parquet").filter(pl.col("age") >= 18)["user_id"].to_list()
    bundle, version = load_bundle()
    assert version == "2" and bundle.manifest["engine"] == "ray"
    user = next(u for u in adults if u in bundle.user_index)
    app = create_app(make_settings(model_uri=f"models:/{settings.model_name}@{settings.model_alias}"), clock=clock)
    with TestClient(app) as http:
        assert http.get("/readyz").status_code == 200
        response = http.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "personalized" and len(body["items"]) == 10
    assert all(item["item_id"] in bundle.item_index for item in body["items"])


def test_the_review_gates_the_alias_on_the_ray_engine_too(both, dataset_dir, tmp_path):
    """`recsys train --engine ray` with thresholds the model cannot meet: registered, no alias, exit 3."""
    name, alias = core_settings().model_name, core_settings().model_alias
    before = client().get_model_version_by_alias(name, alias).version
    config = tmp_path / "strict.json"
    config.write_text(json.dumps({**SMALL, "review": {**SMALL["review"], "min_category_diversity": 11.0}}))
    app = typer.Typer()
    app.command()(train_command)
    outcome = CliRunner().invoke(app, ["--dataset", str(dataset_dir), "--config", str(config), "--no-progress",
                                       "--engine", "ray", "--workers", "2"])
    assert outcome.exit_code == 3, outcome.output
    assert "periodic review (Art. 8) failed on category_diversity" in outcome.output and "engine: ray" in outcome.output
    newest = max(client().search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    assert int(newest.version) > int(before) and newest.tags["review"] == "failed"
    assert client().get_run(newest.run_id).data.params["engine"] == "ray"
    assert client().get_model_version_by_alias(name, alias).version == before


def test_engine_flags_are_checked_before_anything_runs(dataset_dir):
    app = typer.Typer()
    app.command()(train_command)
    runner = CliRunner()
    unknown = runner.invoke(app, ["--dataset", str(dataset_dir), "--engine", "spark"])
    assert unknown.exit_code == 2 and "--engine" in unknown.output and "local, ray" in unknown.output
    stray = runner.invoke(app, ["--dataset", str(dataset_dir), "--address", "127.0.0.1:6379"])
    assert stray.exit_code == 2 and "--address" in stray.output and "Traceback" not in stray.output
