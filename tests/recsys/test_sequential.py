"""The sequential candidate source (issue 16 item 3): it retrieves from the user's recent history
and follows it when it changes, the served path merges it with ALS's candidates and the ranker
reads both, the bundle round-trips both sources, and a training config switches it off."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import numpy as np
import pytest

from compliance.minors import MinorsConfig
from compliance.policy import PolicyConfig
from compliance.tags import TagPolicy
from recsys.bundle import SEQUENTIAL_DIR, BundleError, ModelBundle
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.ranking.features import FEATURE_NAMES, SEQUENTIAL_FEATURES
from recsys.retrieval.sequential import SequentialSource
from served.catalog import Catalog
from served.path import ServedPath, SharedState
from served.query import Audience, RecommendationRequest
from training.config import TrainingConfig, load_config
from training.pipeline import run_offline

SMALL = {
    "als": {"factors": 16, "regularization": 1.0, "iterations": 6},
    "n_candidates": 40,
    "ranker": {"params": {"hidden": [8], "epochs": 3}},
    "sequential": {"n_candidates": 30, "sasrec": {"max_len": 20, "hidden": 16, "blocks": 1, "epochs": 3}},
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def data():
    return generate(SyntheticConfig(n_users=150, n_items=400, interactions_per_user=30, seed=5))


@pytest.fixture(scope="module")
def offline(data, tmp_path_factory):
    return run_offline(data, TrainingConfig.model_validate(SMALL), tmp_path_factory.mktemp("sequential"))


@pytest.fixture(scope="module")
def bundle(offline):
    return ModelBundle.load(offline.bundle_dir, serving=False)


@pytest.fixture(scope="module")
def path(bundle):
    return ServedPath(Catalog.from_bundle(bundle, "test"), PolicyConfig(), MinorsConfig(), TagPolicy(),
                      retrieval_candidates=40, popular_candidates=50)


def _query(path, bundle, user_id, engaged=None):
    request = RecommendationRequest(user_id, "feed", 0, 10)
    audience = Audience.offline(user_id, NOW, MinorsConfig())
    return path.make_query(request, audience, "r", session_id="s", engaged=engaged)


def _shared(bundle):
    return SharedState(interventions=[], blocked_items=np.zeros(len(bundle.item_ids), dtype=bool), feature_match=None,
                       versions=(0, 0))


def test_the_bundle_round_trips_both_sources(offline, bundle, tmp_path):
    assert bundle.sequential is not None and bundle.manifest["sequential"]["n_candidates"] == 30
    assert bundle.index.n_items == bundle.sequential.index.n_items == len(bundle.item_ids)
    copied = tmp_path / "copy"
    shutil.copytree(offline.bundle_dir, copied)
    again = ModelBundle.load(copied, serving=False)
    assert again.sequential is not None
    sequence = bundle.user_history(next(iter(bundle.user_index.values())))
    np.testing.assert_allclose(again.sequence_query(sequence), bundle.sequence_query(sequence), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again.sequential.item_vectors(), bundle.sequential.item_vectors())
    np.testing.assert_array_equal(again.item_factors, bundle.item_factors)
    # Each user's query for their stored history is precomputed, as ALS's user vectors are.
    user = next(iter(bundle.user_index.values()))
    assert bundle.sequential.user_queries is not None and len(bundle.sequential.user_queries) == len(bundle.user_ids)
    np.testing.assert_allclose(bundle.stored_sequence_query(user), bundle.sequence_query(bundle.user_history(user)),
                               rtol=1e-4, atol=1e-5)
    (copied / SEQUENTIAL_DIR / "model.pt").unlink()  # a damaged source is named, never half-loaded
    with pytest.raises(BundleError, match="model.pt"):
        ModelBundle.load(copied, serving=False)


def test_the_sequential_source_follows_the_recent_history(path, bundle):
    user_id, user = next(iter(bundle.user_index.items()))
    trace_before = _trace(path, bundle, user_id)
    found = trace_before.retrieved["sequential"]
    assert trace_before.candidates["sequential"] == len(found) > 0
    history = set(bundle.user_history(user).tolist())
    # Engaging with items the user never had changes the sequence, so the query and what it retrieves.
    fresh = np.array([i for i in np.argsort(-bundle.popularity)[::-1] if int(i) not in history][:5], dtype=np.int64)
    before = _query(path, bundle, user_id)
    after = _query(path, bundle, user_id, engaged=fresh)
    assert not np.allclose(before.sequence_query, after.sequence_query)
    expected = bundle.sequential.search(bundle.sequence_query(np.concatenate([bundle.user_history(user), fresh]))[None, :],
                                        bundle.sequential.n_candidates + len(after.seen))[1][0]
    trace_after = _trace(path, bundle, user_id, engaged=fresh)
    np.testing.assert_array_equal(trace_after.retrieved["sequential"], expected[expected >= 0])
    assert not np.array_equal(trace_after.retrieved["sequential"], found)
    # The engaged items are known to the server as events: they are never served back.
    served = path.select_items(_query(path, bundle, user_id, engaged=fresh), _shared(bundle))
    assert not set(served.tolist()) & set(fresh.tolist())


def _trace(path, bundle, user_id, engaged=None):
    from served.path import Trace

    trace = Trace()
    query = _query(path, bundle, user_id, engaged=engaged)
    path.candidate_sources(query, _shared(bundle), trace)
    return trace


def test_the_ranker_reads_the_sequential_sources_features(path, bundle):
    user_id, user = next(iter(bundle.user_index.items()))
    query = _query(path, bundle, user_id)
    items = np.arange(20, dtype=np.int64)
    vector = query.user_vector
    with_source = bundle.features(vector, query.history, items, bundle.item_factors[items] @ vector,
                                  query.sequence_query, np.isin(items, items[:5]))
    columns = [FEATURE_NAMES.index(name) for name in SEQUENTIAL_FEATURES]
    expected = bundle.sequential.item_vectors()[items] @ query.sequence_query
    np.testing.assert_allclose(with_source[:, columns[0]], expected, rtol=1e-5)
    assert with_source[:, columns[3]].tolist() == [1.0] * 5 + [0.0] * 15
    without = bundle.features(vector, query.history, items, bundle.item_factors[items] @ vector)
    assert not without[:, columns].any()


def test_training_lists_merge_both_sources(offline, bundle):
    users = offline.split.test_users()[:20]
    candidates = bundle.candidates(offline.split.train, users, 40, offline.split.seen)
    assert candidates.sequential is not None and candidates.from_sequential is not None
    for row, user in enumerate(users):
        real = candidates.items[row] >= 0
        items = candidates.items[row][real]
        assert len(items) == len(set(items.tolist()))  # one row per item
        assert not set(items.tolist()) & set(offline.split.seen.of(int(user)).tolist())
        assert candidates.from_sequential[row][real].any()


def test_a_forker_switches_the_source_off(data, tmp_path):
    config_file = tmp_path / "train.toml"
    config_file.write_text("[sequential]\nenabled = false\n")
    config = load_config(config_file)
    assert not config.sequential.enabled and config.config_hash() != TrainingConfig().config_hash()
    small = TrainingConfig.model_validate({**SMALL, "sequential": {"enabled": False}})
    offline = run_offline(data, small, tmp_path / "work")
    bundle = ModelBundle.load(offline.bundle_dir, serving=False)
    assert bundle.sequential is None and bundle.manifest["sequential"] is None
    assert not (offline.bundle_dir / SEQUENTIAL_DIR).exists()
    path = ServedPath(Catalog.from_bundle(bundle, "test"), PolicyConfig(), MinorsConfig(), TagPolicy(),
                      retrieval_candidates=40, popular_candidates=50)
    user_id = next(iter(bundle.user_index))
    trace = _trace(path, bundle, user_id)
    assert "sequential" not in trace.candidates and trace.candidates["retrieval"] > 0
    assert len(path.select_items(_query(path, bundle, user_id), _shared(bundle))) == 10


def test_a_saved_source_loads_alone(bundle, tmp_path):
    source = bundle.sequential
    source.save(tmp_path / "seq")
    loaded = SequentialSource.load(tmp_path / "seq")
    assert loaded.n_candidates == source.n_candidates and loaded.max_len == source.max_len
    sequence = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    np.testing.assert_allclose(loaded.query(sequence), source.query(sequence), rtol=1e-5, atol=1e-6)


def test_the_registered_model_carries_both_sources(trained):
    """The model `recsys train` registered (default config), loaded from MLflow as the server loads it."""
    bundle, _ = trained
    assert bundle.sequential is not None and bundle.manifest["sequential"]["kind"] == "sasrec"
    user = next(iter(bundle.user_index.values()))
    assert bundle.recommend(np.array([user]), k=10).shape == (1, 10)
