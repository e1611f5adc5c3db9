"""End to end: train both stages on a small synthetic dataset into a temporary MLflow store, register,
alias, load the bundle back through the registry and rank; reuse; the CLI; the config file."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from compliance.tags import TagPolicy, banned_features
from recsys.config import core_settings
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.evaluation import protocol_split
from training.cli import evaluate_command, train_command
from training.config import ConfigError, TrainingConfig, load_config
from training.pipeline import run_offline, train
from recsys.registry import RegistryError, client, load_bundle

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
def store(tmp_path_factory):
    """A temporary MLflow store and var dir, set through the environment as a user would."""
    root = tmp_path_factory.mktemp("mlflow")
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
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(SyntheticConfig(n_users=250, n_items=600, interactions_per_user=30, seed=11)).save(out)
    return out


@pytest.fixture(scope="module")
def trained(store, dataset_dir):
    config = TrainingConfig.model_validate(SMALL)
    return train(str(dataset_dir), config, progress=False), config


def test_train_registers_an_aliased_version_and_the_bundle_ranks(trained, dataset_dir):
    result, config = trained
    settings = core_settings()
    assert result.model_version == "1" and result.alias_set and not result.reused
    version = client().get_model_version_by_alias(settings.model_name, settings.model_alias)
    assert str(version.version) == "1" and version.run_id == result.run_id
    assert version.tags["config_hash"] == config.config_hash() and version.tags["dataset_fingerprint"]

    bundle, label = load_bundle()
    assert label == "1"
    assert bundle.manifest["run_id"] == result.run_id
    assert bundle.manifest["index_build_id"] == bundle.index.build_id == version.tags["index_build_id"]
    assert bundle.manifest["dataset"]["source"] == str(dataset_dir)
    assert bundle.feature_names and banned_features(bundle.feature_names, TagPolicy()) == []

    # Serving-ready arrays.
    n_items = len(bundle.item_ids)
    assert bundle.item_ids.dtype.kind == "U" and bundle.item_index[str(bundle.item_ids[7])] == 7
    assert bundle.item_category.dtype == np.int32 and bundle.item_category.max() < len(bundle.category_names)
    assert bundle.item_categories.shape == (n_items, len(bundle.category_names))
    assert bundle.content_code.dtype == np.int64
    for name in ("minor_safe", "mainstream", "synthetic", "flagged"):
        assert getattr(bundle, name).dtype == bool and len(getattr(bundle, name)) == n_items
    assert bundle.popularity.dtype == np.float32 and bundle.item_factors.dtype == np.float32
    assert set(bundle.users.columns) == {"user_id", "age"}

    # A known user: top-k excludes the history and returns valid ids.
    user_id = next(iter(bundle.user_index))
    user = bundle.user_index[user_id]
    history = bundle.user_history(user)
    top = bundle.recommend(np.array([user]), k=10)[0]
    assert len(top) == 10 and len(set(top)) == 10 and (top >= 0).all()
    assert not set(top) & set(history)
    assert all(str(bundle.item_ids[i]) in bundle.item_index for i in top)

    # The serving path: a filtered history gives a recomputed vector and features of the right shape.
    filtered = history[bundle.item_category[history] != bundle.item_category[history[0]]]
    vector = bundle.user_vector(filtered)
    scores, found = bundle.index.search(vector[None], 50)
    features = bundle.features(vector, filtered, found[0], bundle.item_factors[found[0]] @ vector)
    assert features.shape == (50, len(bundle.feature_names))
    assert bundle.ranker.score(features).shape == (50,)


def test_the_run_holds_params_metrics_and_documents(trained):
    result, _ = trained
    run = client().get_run(result.run_id)
    assert run.data.params["als.factors"] == "16" and run.data.params["n_candidates"] == "60"
    metrics = run.data.metrics
    for key in ("two_stage/ndcg_at_10", "als/recall_at_10", "popular/ndcg_at_10", "ndcg_at_10", "catalog_coverage",
                "retrieval/candidate_recall_at_60", "validation/ranker_ndcg_at_10", "time/ranker_s", "time/total_s"):
        assert key in metrics, key
    # The served-reality rule (every item rated at any value before the test part excluded), for every model.
    for key in ("two_stage/unseen_ndcg_at_10", "als/unseen_recall_at_10", "popular/unseen_ndcg_at_10",
                "two_stage/unseen_catalog_coverage_at_10", "unseen_ndcg_at_10", "unseen_recall_at_10",
                "unseen_catalog_coverage", "retrieval/unseen_candidate_recall_at_60"):
        assert key in metrics, key
    assert metrics["unseen_ndcg_at_10"] == metrics["two_stage/unseen_ndcg_at_10"]
    assert metrics["ndcg_at_10"] == metrics["two_stage/ndcg_at_10"]
    artifacts = {a.path for a in client().list_artifacts(result.run_id)}
    assert {"model_card.md", "evaluation.md", "evaluation.json", "training_config.json"} <= artifacts
    for rule in ("unseen_", ""):
        assert result.metrics["two-stage"][f"{rule}ndcg_at_10"] > result.metrics["MostPopular"][f"{rule}ndcg_at_10"]
    # Excluding what users already rated can only free list slots for test items of ALS and MostPopular.
    for label in ("ALS", "MostPopular"):
        assert result.metrics[label]["unseen_recall_at_10"] >= result.metrics[label]["recall_at_10"]
    table = mlflow.artifacts.load_text(f"runs:/{result.run_id}/evaluation.md")
    assert "unseen_ndcg_at_10" in table.splitlines()[0] and "| ndcg_at_10 |" in table.splitlines()[0]


def test_reuse_skips_a_version_written_in_an_older_bundle_format(trained, dataset_dir):
    from compliance.policy import PolicyConfig, config_hash as policy_hash
    from recsys.bundle import FORMAT_VERSION
    from recsys.datasets import load
    from training.pipeline import _reusable, dataset_fingerprint

    result, config = trained
    name = core_settings().model_name
    version = client().get_model_version_by_alias(name, core_settings().model_alias)
    assert version.tags["bundle_format"] == str(FORMAT_VERSION)
    key = (dataset_fingerprint(load(str(dataset_dir))), config.config_hash(), policy_hash(PolicyConfig()))
    assert _reusable(*key) is not None
    for tag in ("1", None):  # a format-1 version (no seen files), or one registered before the tag existed
        if tag is None:
            client().delete_model_version_tag(name, version.version, "bundle_format")
        else:
            client().set_model_version_tag(name, version.version, "bundle_format", tag)
        assert _reusable(*key) is None
    client().set_model_version_tag(name, version.version, "bundle_format", str(FORMAT_VERSION))
    assert _reusable(*key).model_version == str(version.version)


def test_reuse_returns_the_aliased_version_and_no_alias_keeps_it(trained, dataset_dir):
    result, config = trained
    again = train(str(dataset_dir), config, reuse=True, progress=False)
    assert again.reused and again.model_version == result.model_version and again.run_id == result.run_id
    other = train(str(dataset_dir), config.model_copy(update={"seed": 1}), reuse=True, set_alias=False, progress=False)
    assert not other.reused and other.model_version == "2" and not other.alias_set
    assert load_bundle()[1] == "1"  # the alias did not move
    assert load_bundle(f"models:/{core_settings().model_name}/2")[1] == "2"
    bundle, label = load_bundle(f"runs:/{other.run_id}")
    assert label == "2" and bundle.manifest["run_id"] == other.run_id


def test_the_pyfunc_model_returns_top_k_ids(trained):
    model = mlflow.pyfunc.load_model(f"models:/{core_settings().model_name}@{core_settings().model_alias}")
    bundle, _ = load_bundle()
    known = next(iter(bundle.user_index))
    out = model.predict(pd.DataFrame({"user_id": [known, "nobody"]}), params={"k": 5})
    assert list(out.columns) == ["user_id", "rank", "item_id"]
    mine = out[out.user_id == known]
    assert mine["rank"].tolist() == [1, 2, 3, 4, 5]
    history_ids = {str(bundle.item_ids[i]) for i in bundle.user_history(bundle.user_index[known])}
    assert not set(mine.item_id) & history_ids
    assert len(out[out.user_id == "nobody"]) == 5  # the non-personalised list


def test_concurrent_loads_share_one_cached_copy(trained, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(lambda _: load_bundle(cache_dir=tmp_path), range(3)))
    assert {label for _, label in loaded} == {"1"}
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]


def test_registry_errors_name_the_uri(store):
    with pytest.raises(RegistryError, match="models:/nope@champion"):
        load_bundle("models:/nope@champion")
    with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS"):
        load_bundle("s3://bucket/model")


def test_cli_evaluate_prints_the_table_and_errors_name_the_flag(trained, dataset_dir):
    app = typer.Typer()
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--no-log"])
    assert out.exit_code == 0, out.output
    assert "two-stage" in out.output and "MostPopular" in out.output and "ALS" in out.output
    bad = runner.invoke(app, ["train", "--dataset", str(dataset_dir / "missing")])
    assert bad.exit_code == 2 and "--dataset" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["evaluate", "--model-uri", "models:/nope/1"])
    assert bad.exit_code == 2 and "--model-uri" in bad.output


def test_full_refits_retrieval_on_every_positive(tmp_path, dataset_dir):
    from recsys.datasets import load

    data = load(str(dataset_dir))
    config = TrainingConfig.model_validate(SMALL)
    result = run_offline(data, config, tmp_path, full=True)
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["full"] is True and manifest["trained_on"] == "all positives"
    split = protocol_split(data)
    from recsys.bundle import ModelBundle

    bundle = ModelBundle.load(result.bundle_dir, serving=False)
    assert len(bundle.history.items) == len(split.train.items) + len(split.test.items)
    assert "two-stage" in manifest["metrics"]["test"]


def test_config_file_and_errors(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('n_candidates = 150\n[als]\nfactors = 64\n')
    config = load_config(path, seed=3)
    assert config.n_candidates == 150 and config.als.factors == 64 and config.effective().als.seed == 3
    assert config.config_hash() != load_config(path, seed=4).config_hash()
    path.write_text('{"ranker": {"kind": "gbdt"}}')
    with pytest.raises(ConfigError, match="ranker.kind"):
        load_config(path.rename(tmp_path / "c.json"))
    (tmp_path / "d.json").write_text('{"ranker": {"params": {"hiden": [3]}}}')
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "d.json")


def test_every_run_is_reviewed_and_the_review_is_logged(trained):
    result, _ = trained
    assert result.review["article"] == "Art. 8" and result.review["passed"] and result.alias_set
    run = client().get_run(result.run_id)
    assert run.data.tags["review"] == "passed" and run.data.tags["policy_hash"] == result.review["policy_hash"]
    metrics = run.data.metrics
    assert metrics["review/passed"] == 1.0
    for key in ("dispersal_violation_rate", "dedup_violation_rate", "flagged_served_rate", "dominant_category_amplification",
                "model/dominant_category_amplification", "served/ndcg_at_10", "model/lists_with_dispersal_violation"):
        assert f"review/{key}" in metrics, key
    # The policy pipeline removes the dispersal violations the ranker's own lists have.
    assert metrics["review/dispersal_violation_rate"] == 0.0 < metrics["review/model/lists_with_dispersal_violation"]
    artifacts = {a.path for a in client().list_artifacts(result.run_id)}
    assert {"review.md", "review.json"} <= artifacts
    version = client().get_model_version(core_settings().model_name, result.model_version)
    assert version.tags["review"] == "passed"


def test_a_run_that_fails_the_review_is_registered_without_the_alias(trained, dataset_dir, tmp_path):
    result, _ = trained
    name = core_settings().model_name
    before = client().get_model_version_by_alias(name, core_settings().model_alias).version
    config = tmp_path / "strict.json"
    config.write_text(json.dumps({**SMALL, "seed": 5, "review": {**SMALL["review"], "min_category_diversity": 11.0}}))
    outcome = CliRunner().invoke(typer_app(train_command), ["--dataset", str(dataset_dir), "--config", str(config),
                                                            "--no-progress"])
    assert outcome.exit_code == 3, outcome.output
    assert "periodic review (Art. 8) failed on category_diversity" in outcome.output
    versions = client().search_model_versions(f"name='{name}'")
    newest = max(versions, key=lambda v: int(v.version))
    assert newest.tags["review"] == "failed" and int(newest.version) > int(before)
    assert client().get_model_version_by_alias(name, core_settings().model_alias).version == before
    failed_run = client().get_run(newest.run_id)
    assert failed_run.data.tags["review"] == "failed" and failed_run.data.metrics["review/passed"] == 0.0


def test_a_bad_policy_file_names_the_flag(dataset_dir, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("[dispersal]\nwindow = 0\n")
    outcome = CliRunner().invoke(typer_app(train_command), ["--dataset", str(dataset_dir), "--policy", str(policy)])
    assert outcome.exit_code == 2 and "--policy:" in outcome.output and "dispersal.window" in outcome.output


def typer_app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def test_offline_serving_replays_the_policy_pipeline(trained, dataset_dir):
    from compliance.policy import dispersal_violations
    from recsys.datasets import load
    from training.review import OfflineServing

    bundle, _ = load_bundle()
    split = protocol_split(load(str(dataset_dir)))
    path = OfflineServing(bundle)
    histories = [split.train.of(int(u)) for u in split.test_users()[:40]]
    served, model = path.lists(histories, 10), path.lists(histories, 10, served=False)
    assert (served >= 0).all() and (model >= 0).all()
    for row, history in zip(served, histories):
        assert not np.isin(row, history).any() and len(set(row.tolist())) == 10
        assert not bundle.flagged[row].any()
        unseen_pool = np.setdiff1d(np.flatnonzero(bundle.mainstream & ~bundle.flagged), history)
        # the front screen: at least 2 editorial items in positions 1-10 while the pool has them
        assert bundle.mainstream[row].sum() >= min(2, len(unseen_pool))
        assert dispersal_violations(bundle.item_category[row].tolist(), 5, 2) == []
    # The model's own list is the ranker's order of its candidates, policy-free.
    assert not all(bundle.mainstream[row].sum() >= 2 for row in model)
    # No history: as the server does for a cold user, the non-personalized list, with its front screen.
    cold = path.served_list(np.empty(0, dtype=np.int64), 10)
    pool = int((bundle.mainstream & ~bundle.flagged).sum())  # the synthetic pool may hold a single item
    assert len(cold) == 10 and bundle.mainstream[cold].sum() >= min(2, pool) and not bundle.flagged[cold].any()
    # As serving with `ModelBundle.user_seen`: nothing the user rated, at any value, comes back.
    seen = [split.known().of(int(u)) for u in split.test_users()[:40]]
    assert any(len(np.setdiff1d(known, history)) for known, history in zip(seen, histories))
    for served_flag in (True, False):
        for row, known in zip(path.lists(histories, 10, served_flag, seen), seen):
            assert (row >= 0).all() and not np.isin(row, known).any()
