"""Retrieval models (ALS, MostPopular, ItemKNN, EASE) and the Faiss item index."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.evaluation import evaluate_scorer, protocol_split
from recsys.retrieval import MODELS, model_class
from recsys.retrieval.als import ALS, ALSConfig, UserSolver
from recsys.retrieval.base import RetrievalError
from recsys.retrieval.baselines import EASE, EASEConfig, ItemKNN, ItemKNNConfig, MostPopular
from recsys.retrieval.index import IndexConfig, ItemIndex, build_index

SMALL_ALS = ALSConfig(factors=16, regularization=1.0, alpha=10.0, iterations=6, seed=0)


@pytest.fixture(scope="module")
def split():
    data = generate(SyntheticConfig(n_users=300, n_items=600, interactions_per_user=30, seed=5))
    return protocol_split(data)


@pytest.fixture(scope="module")
def als(split):
    return ALS(SMALL_ALS).fit(split.train.matrix())


def test_als_factors_are_float32_with_the_configured_shape(split, als):
    assert als.user_factors.dtype == np.float32 and als.item_factors.dtype == np.float32
    assert als.user_factors.shape == (split.n_users, 16) and als.item_factors.shape == (split.n_items, 16)
    scores = als.scores(np.array([0, 1, 2]))
    assert scores.shape == (3, split.n_items)
    assert np.allclose(scores[1], als.item_factors @ als.user_factors[1], atol=1e-5)


def test_als_user_vector_recomputes_the_trained_vector(split):
    """At convergence, the closed form on the unfiltered history reproduces the trained vector."""
    als = ALS(SMALL_ALS.model_copy(update={"iterations": 25})).fit(split.train.matrix())
    for user in np.flatnonzero(split.train.lengths > 0)[:20]:
        recomputed = als.user_vector(split.train.of(user))
        trained = als.user_factors[user]
        cosine = recomputed @ trained / (np.linalg.norm(recomputed) * np.linalg.norm(trained))
        assert cosine > 0.99


def test_user_solver_woodbury_and_direct_paths_agree():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(200, 32)).astype(np.float32)
    solver = UserSolver(factors, regularization=3.0, alpha=5.0)
    short, long = rng.choice(200, 5, replace=False), rng.choice(200, 100, replace=False)
    for history in (short, long):
        f = factors[history].astype(np.float64)
        expected = np.linalg.solve(solver.base + 5.0 * f.T @ f, 6.0 * f.sum(axis=0))
        assert np.allclose(solver.solve(history), expected, rtol=1e-4, atol=1e-5)
    assert not solver.solve(np.array([], dtype=np.int64)).any()
    with pytest.raises(RetrievalError, match="history_idx"):
        solver.solve(np.array([500]))


def test_models_beat_popularity_and_popularity_beats_chance(split, als):
    train = split.train.matrix()
    popular = evaluate_scorer(MostPopular().fit(train), split)["ndcg_at_10"]
    for model in (als, ItemKNN().fit(train), EASE(EASEConfig(regularization=50.0)).fit(train)):
        assert evaluate_scorer(model, split)["ndcg_at_10"] > popular, type(model).__name__

    class Chance:
        def scores(self, users):
            return np.random.default_rng(0).random((len(users), split.n_items)).astype(np.float32)

    assert popular > evaluate_scorer(Chance(), split)["ndcg_at_10"]


def test_most_popular_scores_are_counts():
    matrix = csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [3, 0, 0]], dtype=np.float32))
    scores = MostPopular().fit(matrix).scores(np.array([0, 2]))
    assert scores.tolist() == [[3, 0, 1], [3, 0, 1]]  # binary positives: a 3 counts once


def test_itemknn_keeps_top_neighbours_and_uses_cosine():
    matrix = csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1]], dtype=np.float32))
    model = ItemKNN(ItemKNNConfig(neighbours=1)).fit(matrix)
    assert np.all(np.diff(model.similarity.indptr) <= 1)
    full = ItemKNN(ItemKNNConfig(neighbours=10)).fit(matrix).similarity.toarray()
    # items 0 and 1 share users 0 and 1: cos = 2 / (sqrt(3) * sqrt(3))
    assert full[0, 1] == pytest.approx(2 / 3) and np.allclose(np.diag(full), 0)


def test_ease_weights_have_zero_diagonal_and_solve_the_ridge_problem():
    rng = np.random.default_rng(1)
    matrix = csr_matrix((rng.random((40, 12)) < 0.3).astype(np.float32))
    model = EASE(EASEConfig(regularization=2.0)).fit(matrix)
    assert np.allclose(np.diag(model.weights), 0)
    x = matrix.toarray()
    gram = x.T @ x + 2.0 * np.eye(12)
    # Stationarity of ||X - XB||^2 + lambda ||B||^2 under diag(B) = 0: off-diagonal gradient vanishes.
    gradient = gram @ model.weights - x.T @ x
    off = ~np.eye(12, dtype=bool)
    assert np.abs(gradient[off]).max() < 1e-3


def test_every_registered_model_fits_and_scores(split):
    train = split.train.matrix()
    for kind in MODELS:
        cls = model_class(kind)
        model = cls(SMALL_ALS) if kind == "als" else cls()
        assert model.fit(train).scores(np.array([0, 1])).shape == (2, split.n_items)
    with pytest.raises(RetrievalError, match="unknown 'bpr'"):
        model_class("bpr")


def test_models_refuse_bad_input_and_unfitted_use():
    with pytest.raises(RetrievalError, match="csr_matrix"):
        MostPopular().fit(np.ones((2, 2)))
    with pytest.raises(RetrievalError, match="fit"):
        EASE().scores(np.array([0]))


# -- the Faiss index --------------------------------------------------------------------------------


def _brute_force(vectors, queries, k):
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_flat_index_is_exact_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    index = build_index(vectors, "flat")
    scores, found = index.search(queries, 10)
    assert np.array_equal(found, _brute_force(vectors, queries, 10))
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, found, axis=1), atol=1e-5)
    loaded = ItemIndex.load(index.save(tmp_path / "index"))
    assert loaded.build_id == index.build_id and len(index.build_id) == 12
    assert np.array_equal(loaded.search(queries, 10)[1], found)
    assert index.search(queries, 10_000)[1].shape == (20, 500)  # k is capped at the catalog size


def test_auto_picks_ivf_above_the_threshold_and_reaches_the_recall_target(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 16))
    vectors = (centres[rng.integers(0, 30, 4000)] + 0.3 * rng.normal(size=(4000, 16))).astype(np.float32)
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    config = IndexConfig(flat_max_items=1000, target_recall=0.95, recall_k=20)
    index = build_index(vectors, config=config, sample_queries=queries)
    params = index.params
    assert params["kind"] == "ivf" and params["requested"] == "auto"
    assert params["nlist"] == round(4 * np.sqrt(4000)) and params["recall"] >= 0.95 and params["nprobe"] >= 1
    loaded = ItemIndex.load(index.save(tmp_path / "ivf"))
    assert loaded.params["nprobe"] == params["nprobe"]
    assert np.array_equal(loaded.search(queries[:5], 20)[1], index.search(queries[:5], 20)[1])
    assert build_index(vectors[:900], config=config).params["kind"] == "flat"


def test_hnsw_by_config_calibrates_ef_search_to_the_recall_target(tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    low = build_index(vectors, "hnsw", IndexConfig(hnsw_m=8, hnsw_ef_search=10, recall_k=50, target_recall=0.5),
                      sample_queries=queries)
    high = build_index(vectors, "hnsw", IndexConfig(hnsw_m=8, hnsw_ef_search=10, recall_k=50, target_recall=0.99),
                       sample_queries=queries)
    assert low.params["kind"] == "hnsw" and low.params["ef_search"] >= 50  # never below k
    assert high.params["recall"] >= 0.99 and high.params["ef_search"] > low.params["ef_search"]
    # The recorded recall is what the loaded index delivers on the same queries.
    loaded = ItemIndex.load(high.save(tmp_path / "hnsw"))
    exact = build_index(vectors, "flat")
    found, truth = loaded.search(queries, 50)[1], exact.search(queries, 50)[1]
    measured = np.mean([len(np.intersect1d(f, t)) / 50 for f, t in zip(found, truth)])
    assert measured == pytest.approx(high.params["recall"], abs=0.01)


def test_build_id_changes_with_content():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    assert build_index(vectors, "flat").build_id == build_index(vectors.copy(), "flat").build_id
    assert build_index(vectors, "flat").build_id != build_index(vectors * 2, "flat").build_id


def test_index_errors_name_the_argument(tmp_path):
    index = build_index(np.eye(4, dtype=np.float32), "flat")
    with pytest.raises(RetrievalError, match="queries"):
        index.search(np.ones((1, 3), dtype=np.float32), 2)
    with pytest.raises(RetrievalError, match="item_factors"):
        build_index(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(RetrievalError, match="missing index file"):
        ItemIndex.load(tmp_path)
