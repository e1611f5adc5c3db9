"""Ranker features (behavioural only, same code in training and serving), the ranker, its training data."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.tags import TagPolicy, banned_features
from recsys.evaluation import Histories
from recsys.ranking.features import (
    FEATURE_NAMES,
    NO_CATEGORY,
    FeatureConfig,
    ItemStats,
    build_features,
    encode_categories,
    item_stats,
)
from recsys.ranking.model import (
    RANKERS,
    MLPRanker,
    RankerError,
    RankingLists,
    _group_losses,
    _list_losses,
    load_ranker,
    make_ranker,
)
from recsys.ranking.train import Candidates, label, list_groups, list_top_k, retrieve, split_lists, with_sequential
from recsys.retrieval.index import build_index

CONFIG = FeatureConfig(recent_items=5, recent_days=10)
DAY = 86_400


def make_stats(n_items: int = 60, d: int = 8, seed: int = 0) -> ItemStats:
    rng = np.random.default_rng(seed)
    categories = encode_categories([[f"c{i % 4}"] + ([f"c{(i + 1) % 4}"] if i % 3 == 0 else []) for i in range(n_items)])
    items = rng.integers(0, n_items, 400)
    timestamps = np.sort(rng.integers(0, 100 * DAY, 400))
    return item_stats(rng.normal(size=(n_items, d)), items, timestamps, categories.codes, len(categories.names),
                      rng.integers(1970, 2000, n_items).astype(float), CONFIG)


def test_features_have_the_declared_names_and_no_user_attribute():
    stats = make_stats()
    features = build_features(stats, np.ones(8, dtype=np.float32), np.array([1, 2, 3]), np.arange(10, 20),
                              np.linspace(1, 0, 10), CONFIG)
    assert features.shape == (10, len(FEATURE_NAMES)) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert banned_features(FEATURE_NAMES, TagPolicy()) == []
    # The builder has no parameter through which a demographic attribute could arrive (the sequential
    # source's scores and which candidates it retrieved are behavioural, like the retrieval scores).
    assert list(inspect.signature(build_features).parameters) == [
        "stats", "user_vector", "history_idx", "cand_idx", "retrieval_scores", "config", "sequential_scores",
        "from_sequential"]


def test_features_are_deterministic_and_follow_candidate_order():
    stats = make_stats()
    rng = np.random.default_rng(1)
    cand, scores = rng.permutation(60)[:15], rng.normal(size=15).astype(np.float32)
    history = np.array([40, 41, 42, 43, 44, 45, 46])
    first = build_features(stats, np.ones(8), history, cand, scores, CONFIG)
    assert np.array_equal(first, build_features(stats, np.ones(8), history, cand, scores, CONFIG))
    order = rng.permutation(15)
    assert np.allclose(build_features(stats, np.ones(8), history, cand[order], scores[order], CONFIG), first[order])


def test_a_filtered_history_removes_the_category_from_the_features():
    stats = make_stats()
    history = np.array([4, 8, 12, 16, 1, 5])  # items 4, 8, 16 are only c0; 12 also c1
    affinity = FEATURE_NAMES.index("category_affinity")
    primary_share = FEATURE_NAMES.index("primary_category_share")
    candidate = np.array([20])  # category c0 only
    before = build_features(stats, np.ones(8), history, candidate, np.array([1.0]), CONFIG)
    kept = history[stats.category_codes[history, 0] != 0]
    after = build_features(stats, np.ones(8), kept, candidate, np.array([1.0]), CONFIG)
    assert before[0, affinity] > 0 and after[0, affinity] == 0 and after[0, primary_share] == 0


def test_an_empty_history_gives_finite_features():
    stats = make_stats()
    features = build_features(stats, np.zeros(8), np.array([], dtype=np.int64), np.arange(5), np.zeros(5), CONFIG)
    assert np.isfinite(features).all()
    assert build_features(stats, np.zeros(8), np.arange(3), np.array([], dtype=np.int64), np.zeros(0), CONFIG).shape == (0, len(FEATURE_NAMES))


def test_item_stats_count_positives_in_the_window():
    categories = encode_categories([["a"], ["b", "a"], []])
    assert categories.names == ["a", "b", NO_CATEGORY] and categories.primary.tolist() == [0, 1, 2]
    assert categories.codes.tolist() == [[0, -1], [1, 0], [2, -1]]
    stats = item_stats(np.eye(3), np.array([0, 0, 1]), np.array([0, 50 * DAY, 100 * DAY]), categories.codes, 3,
                       np.array([1995.0, np.nan, 2005.0]), CONFIG)
    assert np.exp(stats.recent_log_popularity).round().tolist() == [1, 2, 1]  # only item 1 in the last 10 days
    assert stats.release_year.tolist() == pytest.approx([0.5, 1.0, 1.5])  # the unknown year takes the median
    assert stats.recency_log_days[1] == 0 and stats.recency_log_days[0] == pytest.approx(np.log1p(50))


def test_item_stats_round_trip(tmp_path):
    stats = make_stats()
    stats.save(tmp_path / "stats.npz")
    loaded = ItemStats.load(tmp_path / "stats.npz")
    assert loaded.n_categories == stats.n_categories
    assert np.array_equal(loaded.category_codes, stats.category_codes)


# -- the ranker -------------------------------------------------------------------------------------


def synthetic_lists(n_users=120, n=30, seed=0) -> RankingLists:
    """Lists where the positives are the rows with the largest feature 3 (plus noise)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_users, n, len(FEATURE_NAMES))).astype(np.float32)
    signal = features[:, :, 3] + 0.3 * rng.normal(size=(n_users, n))
    labels = (signal >= np.sort(signal, axis=1)[:, [-2]]).astype(np.float32)
    return RankingLists(features, labels, np.ones((n_users, n), dtype=bool))


def test_mlp_ranker_learns_a_signal_and_round_trips(tmp_path):
    lists = synthetic_lists()
    train, valid = split_lists(lists, 0.2, seed=0)
    ranker = make_ranker("mlp", FEATURE_NAMES, {"epochs": 30, "hidden": [16]}, seed=0)
    report = ranker.fit(train, valid)
    assert report["epochs"] >= 1 and np.isfinite(report["train_loss"])
    held = synthetic_lists(n_users=50, seed=1)
    scores = ranker.score(held.features.reshape(-1, len(FEATURE_NAMES))).reshape(held.labels.shape)
    top = np.argmax(scores, axis=1)
    assert held.labels[np.arange(50), top].mean() > 0.6  # random picking would hit 2/30
    path = ranker.save(tmp_path / "ranker.pt")
    torch.load(path, weights_only=True)  # plain tensors and config: no code objects
    loaded = load_ranker(path)
    assert isinstance(loaded, MLPRanker) and loaded.feature_names == FEATURE_NAMES
    assert np.allclose(loaded.score(held.features[0]), scores[0], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(hidden=st.lists(st.integers(1, 24), min_size=0, max_size=3), rows=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_request_scores_are_the_modules_scores_bit_for_bit(hidden, rows, seed):
    """The request path's forward pass (`MLPRanker.score`) gives exactly the torch module's scores,
    so a ranking never changes with the faster path; weights loaded later are picked up."""
    ranker = make_ranker("mlp", FEATURE_NAMES, {"hidden": hidden}, seed=seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        ranker.network.mean.copy_(torch.from_numpy(rng.normal(size=len(FEATURE_NAMES)).astype(np.float32)))
        ranker.network.scale.copy_(torch.from_numpy(rng.uniform(0.1, 3, size=len(FEATURE_NAMES)).astype(np.float32)))
    features = (rng.normal(size=(rows, len(FEATURE_NAMES))) * 3).astype(np.float32)
    with torch.inference_mode():
        expected = ranker.network(torch.from_numpy(features)).numpy()
    assert np.array_equal(ranker.score(features), expected)
    other = make_ranker("mlp", FEATURE_NAMES, {"hidden": hidden}, seed=seed + 1)
    ranker.network.load_state_dict(other.network.state_dict())
    with torch.inference_mode():
        assert np.array_equal(ranker.score(features), other.network(torch.from_numpy(features)).numpy())


def test_scoring_500_candidates_is_fast():
    torch.set_num_threads(1)
    stats = make_stats(n_items=5000, d=64)
    ranker = make_ranker("mlp", FEATURE_NAMES)
    rng = np.random.default_rng(2)
    cand, scores, history = rng.permutation(5000)[:500], rng.normal(size=500), rng.permutation(5000)[:80]
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        ranker.score(build_features(stats, np.ones(64), history, cand, scores, CONFIG))
        timings.append(time.perf_counter() - started)
    median_ms = float(np.median(timings)) * 1e3
    print(f"features + MLP for 500 candidates: {median_ms:.3f} ms (median)")  # speed: benchmarks/, not asserted


def test_ranker_registry_and_errors(tmp_path):
    assert "mlp" in RANKERS
    with pytest.raises(RankerError, match="unknown 'gbdt'"):
        make_ranker("gbdt", FEATURE_NAMES)
    ranker = make_ranker("mlp", FEATURE_NAMES)
    with pytest.raises(RankerError, match="features: expected shape"):
        ranker.score(np.ones((3, 2)))
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(RankerError, match="not a ranker file"):
        load_ranker(tmp_path / "bad.pt")
    with pytest.raises(RankerError, match="no ranker file"):
        load_ranker(tmp_path / "missing.pt")


# -- training data: candidates from retrieval, labelled by held-out positives -----------------------


def test_retrieve_excludes_history_and_labels_mark_held_out_items():
    rng = np.random.default_rng(3)
    item_vectors = rng.normal(size=(40, 6)).astype(np.float32)
    user_vectors = rng.normal(size=(3, 6)).astype(np.float32)
    history = Histories(np.array([0, 5, 5, 45]), np.concatenate([np.arange(5), np.arange(40)]), np.zeros(45, dtype=np.int64), 40)
    candidates = retrieve(build_index(item_vectors, "flat").search, user_vectors, history, np.array([0, 1, 2]), 10)
    assert not set(candidates.items[0]) & set(range(5)) and (candidates.items[0] >= 0).all()
    expected = np.argsort(-(item_vectors @ user_vectors[1]))[:10]
    assert candidates.items[1].tolist() == expected.tolist()
    assert (candidates.items[2] == -1).all()  # every item is in user 2's history
    held_out = Histories(np.array([0, 1, 2, 2]), np.array([candidates.items[0, 3], 39]), np.zeros(2, dtype=np.int64), 40)
    labels = label(candidates, held_out)
    assert labels[0].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0] and labels[2].sum() == 0
    top = list_top_k(-np.arange(10, dtype=np.float32)[None].repeat(3, 0), candidates, 3)
    assert top[0].tolist() == candidates.items[0, :3].tolist() and (top[2] == -1).all()


def test_retrieve_also_removes_the_excluded_items_and_keeps_n_candidates():
    rng = np.random.default_rng(4)
    item_vectors = rng.normal(size=(40, 6)).astype(np.float32)
    user_vectors = rng.normal(size=(2, 6)).astype(np.float32)
    history = Histories(np.array([0, 3, 3]), np.array([0, 1, 2]), np.zeros(3, dtype=np.int64), 40)
    best = np.argsort(-(item_vectors @ user_vectors[1]))
    seen = Histories(np.array([0, 2, 7]), np.concatenate([[0, 5], best[:5]]), np.zeros(7, dtype=np.int64), 40)
    candidates = retrieve(build_index(item_vectors, "flat").search, user_vectors, history, np.array([0, 1]), 10, exclude=seen)
    assert not set(candidates.items[0]) & {0, 1, 2, 5} and (candidates.items >= 0).all()
    assert candidates.items[1].tolist() == best[5:15].tolist()  # the 5 seen best ones skipped, still 10


def test_split_lists_keeps_only_lists_with_a_positive():
    lists = synthetic_lists(n_users=20)
    lists.labels[:5] = 0
    train, held = split_lists(lists, 0.25, seed=0)
    assert len(train.labels) + len(held.labels) == 15 and len(held.labels) == 4
    assert (train.labels.sum(axis=1) > 0).all()


def test_candidates_dataclass_shapes():
    candidates = Candidates(np.array([0]), np.array([[1, 2, -1]]), np.array([[0.5, 0.2, -np.inf]], dtype=np.float32))
    assert list_top_k(np.array([[0.1, 0.9, 5.0]]), candidates, 3).tolist() == [[2, 1, -1]]


# -- the policy in the loop: the served path's sources in the lists, the within-group loss ---------------


def test_extra_sources_join_the_lists_without_seen_items_or_repeats():
    rng = np.random.default_rng(5)
    item_vectors = rng.normal(size=(40, 6)).astype(np.float32)
    user_vectors = rng.normal(size=(2, 6)).astype(np.float32)
    history = Histories(np.array([0, 3, 3]), np.array([0, 1, 2]), np.zeros(3, dtype=np.int64), 40)
    seen = Histories(np.array([0, 1, 1]), np.array([7]), np.zeros(1, dtype=np.int64), 40)
    als = retrieve(build_index(item_vectors, "flat").search, user_vectors, history, np.array([0, 1]), 10, exclude=seen)
    popular, pool = np.array([0, 7, 30, 31, als.items[1, 0]]), np.array([1, 32, 33])
    merged = with_sequential(als, item_vectors, user_vectors, None, history, seen, [popular, pool])
    assert merged.sequential is None
    for row, user in enumerate(merged.users):
        items = merged.items[row][merged.items[row] >= 0]
        assert len(items) == len(set(items.tolist()))
        assert items[:10].tolist() == als.items[row].tolist()  # ALS's candidates first, in order
        assert not set(items.tolist()) & (set(history.of(user).tolist()) | set(seen.of(user).tolist()))
        assert set(items.tolist()) == (set(als.items[row].tolist()) | set(popular.tolist()) | set(pool.tolist())) - \
            set(history.of(user).tolist()) - set(seen.of(user).tolist())
        real = merged.items[row] >= 0
        assert np.allclose(merged.scores[row, real], item_vectors[items] @ user_vectors[user], atol=1e-5)


def test_list_groups_code_the_primary_category_and_the_pool():
    items = np.array([[3, 0, -1], [1, 2, 3]])
    primary = np.array([2, 0, -1, 1])
    pool = np.array([True, False, False, True])
    groups = list_groups(items, primary, pool)
    assert groups.shape == (2, 3, 2)
    assert groups[..., 0].tolist() == [[1, 2, -1], [0, -1, 1]]
    assert groups[..., 1].tolist() == [[0, 0, -1], [-1, -1, 0]]
    assert list_groups(items, primary).shape == (2, 3, 1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 12), lists=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_the_group_loss_is_the_list_loss_inside_each_group(n, lists, seed):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.normal(size=(lists, n)).astype(np.float32))
    labels = torch.from_numpy((rng.random((lists, n)) < 0.3).astype(np.float32))
    mask = torch.from_numpy(rng.random((lists, n)) < 0.9)
    labels = labels * mask
    # One group holding every candidate: the group loss is the list loss (0 for a list without a positive).
    one = torch.zeros((lists, n, 1), dtype=torch.long)
    assert torch.allclose(_group_losses(scores, labels, mask, one), _list_losses(scores, labels, mask), atol=1e-5)
    # No group: nothing to learn from.
    assert (_group_losses(scores, labels, mask, torch.full((lists, n, 1), -1)) == 0).all()
    # Two groups: the mean of each group's list loss over the groups with a positive.
    codes = torch.from_numpy(rng.integers(0, 2, (lists, n)))
    expected = []
    for row in range(lists):
        per_group = []
        for code in (0, 1):
            inside = mask[row] & (codes[row] == code)
            if (labels[row] * inside).sum() > 0:
                per_group.append(float(_list_losses(scores[row:row + 1], (labels[row] * inside)[None], inside[None])[0]))
        expected.append(np.mean(per_group) if per_group else 0.0)
    got = _group_losses(scores, labels, mask, codes[..., None]).numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_the_group_term_trains_only_on_lists_that_carry_groups():
    """Lists without groups train exactly as with the term off; lists with groups train to a
    different network (the term is in the gradient), and groups survive `subset`."""
    lists = synthetic_lists(n_users=40, n=12)
    codes = np.random.default_rng(1).integers(-1, 3, lists.labels.shape + (2,)).astype(np.int32)
    grouped = RankingLists(lists.features, lists.labels, lists.mask, codes)
    assert grouped.subset(np.array([3, 5])).groups.tolist() == codes[[3, 5]].tolist()
    with pytest.raises(RankerError):
        RankingLists(lists.features, lists.labels, lists.mask, codes[:, :5])

    def scores(data, weight):
        ranker = make_ranker("mlp", FEATURE_NAMES, {"epochs": 3, "hidden": [8], "group_loss": weight}, seed=0)
        report = ranker.fit(data)
        assert np.isfinite(report["train_loss"])
        return ranker.score(lists.features[0])

    assert np.array_equal(scores(lists, 1.0), scores(lists, 0.0))
    assert not np.array_equal(scores(grouped, 1.0), scores(grouped, 0.0))
