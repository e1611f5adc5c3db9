"""The offline protocol: the split, the metrics (hand-computed example and properties), top-k."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix

from recsys.evaluation import (
    EvaluationError,
    Histories,
    candidate_recall,
    evaluate_scorer,
    genres_in_top,
    held_out_count,
    protocol_split,
    ranking_metrics,
    split_by_time,
    summarize,
    top_k_from_scores,
    validation_split,
)
from recsys.schema import Dataset

SETTINGS = settings(max_examples=150, deadline=None)


def histories(per_user: list[list[int]], n_items: int) -> Histories:
    items = np.asarray([i for row in per_user for i in row], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum([len(row) for row in per_user])]).astype(np.int64)
    return Histories(indptr, items, np.arange(len(items), dtype=np.int64), n_items)


def dataset(rows: list[tuple[str, str, int, float]], n_items: int = 20) -> Dataset:
    interactions = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    items = pl.DataFrame({
        "item_id": [str(i) for i in range(n_items)],
        "title": [f"t{i}" for i in range(n_items)],
        "categories": [["a"] if i % 2 else ["b", "a"] for i in range(n_items)],
        "release_year": [1990] * n_items,
        "content_key": [f"c{i}" for i in range(n_items)],
        "minor_safe": [True] * n_items, "mainstream": [False] * n_items,
        "synthetic": [False] * n_items, "flagged": [False] * n_items,
    })
    users = pl.DataFrame({"user_id": sorted({r[0] for r in rows}), "age": [30] * len({r[0] for r in rows})})
    return Dataset.from_frames("tiny", interactions, items, users)


# -- the split ------------------------------------------------------------------------------------


def test_held_out_count_is_exact_ceiling():
    n = np.arange(0, 200)
    assert held_out_count(n, 0.2).tolist() == [math.ceil(v / 5) for v in n]
    assert held_out_count(np.array([15]), 0.2)[0] == 3  # 0.2 * 15 == 3.0000000000000004 in floats


def test_split_by_time_ties_broken_by_numeric_item_id_and_low_ratings_dropped():
    # u1: 6 positives, two sharing the last timestamp; ids 9 and 10 tie: numeric order puts 10 last.
    rows = [("u1", str(i), 100 + i, 5.0) for i in range(4)]
    rows += [("u1", "10", 200, 4.0), ("u1", "9", 200, 4.0), ("u1", "5", 300, 3.0)]  # "5" is not a positive
    rows += [("u2", "1", 50, 4.0)]  # a single positive goes to test
    split = protocol_split(dataset(rows))
    u1, u2 = list(split.user_ids).index("u1"), list(split.user_ids).index("u2")
    ids = split.item_ids
    assert [ids[i] for i in split.test.of(u1)] == ["9", "10"]  # ceil(0.2 * 6) = 2, time order, ties by id
    assert [ids[i] for i in split.train.of(u1)] == ["0", "1", "2", "3"]
    assert len(split.train.of(u2)) == 0 and [ids[i] for i in split.test.of(u2)] == ["1"]


def test_protocol_split_rejects_data_without_positives():
    with pytest.raises(EvaluationError, match="rating >= 4"):
        protocol_split(dataset([("u1", "1", 1, 2.0)]))


@SETTINGS
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.sampled_from([0.1, 0.2, 0.25, 0.5]))
def test_split_by_time_holds_out_the_latest_ceil_share(lengths, share):
    rng = np.random.default_rng(sum(lengths))
    per_user = [list(rng.permutation(50)[:n]) for n in lengths]
    whole = histories(per_user, 50)
    first, held = split_by_time(whole, share)
    assert held.lengths.tolist() == [math.ceil(n * share - 1e-9) for n in lengths]
    for user in range(len(lengths)):
        assert np.concatenate([first.of(user), held.of(user)]).tolist() == whole.of(user).tolist()
        if len(first.of(user)) and len(held.of(user)):
            assert first.timestamps[first.indptr[user + 1] - 1] < held.timestamps[held.indptr[user]]


def test_validation_split_is_carved_from_train_like_test():
    rows = [("u1", str(i), i, 5.0) for i in range(10)]
    split = protocol_split(dataset(rows))
    validation = validation_split(split)
    assert len(split.test.of(0)) == 2 and len(validation.test.of(0)) == 2 and len(validation.train.of(0)) == 6
    assert set(validation.test.of(0)).isdisjoint(split.test.of(0))


# -- metrics: a hand-computed example ---------------------------------------------------------------


def test_metrics_hand_computed_example():
    test = histories([[1, 3], [2, 4, 6, 7]], 10)
    top = np.array([[3, 5, 1], [0, 2, 9]])
    recall, ndcg = ranking_metrics(top, np.array([0, 1]), test, k=3)
    # user 0: hits at ranks 1 and 3; |test| = 2 -> recall 2/2; DCG 1 + 1/2, IDCG 1 + 1/log2(3)
    # user 1: one hit at rank 2; |test| = 4 > k -> recall 1/3; DCG 1/log2(3), IDCG 1 + 1/log2(3) + 1/2
    assert recall == pytest.approx([1.0, 1 / 3])
    assert ndcg == pytest.approx([1.5 / (1 + 1 / math.log2(3)), (1 / math.log2(3)) / (1.5 + 1 / math.log2(3))])
    split_like = type("S", (), {"test": test, "n_items": 10})
    row = summarize(top, np.array([0, 1]), split_like, item_category=np.arange(10) % 3, k=3)
    assert row["recall_at_3"] == pytest.approx((1 + 1 / 3) / 2)
    assert row["catalog_coverage_at_3"] == pytest.approx(6 / 10)  # items {0, 1, 2, 3, 5, 9} of 10
    # primary categories (item % 3): [0, 2, 1] -> 3 distinct; [0, 2, 0] -> 2 distinct
    assert genres_in_top(top, np.arange(10) % 3).tolist() == [3, 2]
    assert row["genres_at_3"] == pytest.approx(2.5)


def test_duplicate_items_in_a_list_are_rejected():
    with pytest.raises(EvaluationError, match="repeats an item"):
        ranking_metrics(np.array([[1, 1]]), np.array([0]), histories([[1]], 3), k=2)


# -- metrics: properties --------------------------------------------------------------------------

N_ITEMS = 30


@st.composite
def ranked_case(draw):
    n_users = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    tests, tops = [], []
    for _ in range(n_users):
        tests.append(sorted(draw(st.sets(st.integers(0, N_ITEMS - 1), min_size=1, max_size=15))))
        tops.append(draw(st.permutations(range(N_ITEMS)))[:k])
    return tests, np.array(tops), k


@SETTINGS
@given(ranked_case())
def test_metrics_are_between_zero_and_one(case):
    tests, top, k = case
    recall, ndcg = ranking_metrics(top, np.arange(len(tests)), histories(tests, N_ITEMS), k)
    assert np.all((recall >= 0) & (recall <= 1 + 1e-12)) and np.all((ndcg >= 0) & (ndcg <= 1 + 1e-12))


@SETTINGS
@given(ranked_case())
def test_perfect_ranking_scores_one(case):
    tests, _, k = case
    top = np.array([t + [i for i in range(N_ITEMS) if i not in t] for t in tests])[:, :k]
    recall, ndcg = ranking_metrics(top, np.arange(len(tests)), histories(tests, N_ITEMS), k)
    assert recall == pytest.approx(np.ones(len(tests))) and ndcg == pytest.approx(np.ones(len(tests)))


@SETTINGS
@given(ranked_case(), st.randoms())
def test_averages_do_not_depend_on_user_order(case, random):
    tests, top, k = case
    order = list(range(len(tests)))
    random.shuffle(order)
    recall, ndcg = ranking_metrics(top, np.arange(len(tests)), histories(tests, N_ITEMS), k)
    shuffled = histories([tests[i] for i in order], N_ITEMS)
    recall2, ndcg2 = ranking_metrics(top[order], np.arange(len(tests)), shuffled, k)
    assert recall.mean() == pytest.approx(recall2.mean()) and ndcg.mean() == pytest.approx(ndcg2.mean())


@SETTINGS
@given(ranked_case())
def test_candidate_recall_is_monotone_in_k(case):
    tests, _, _ = case
    rng = np.random.default_rng(len(tests))
    full = np.array([rng.permutation(N_ITEMS) for _ in tests])
    test = histories(tests, N_ITEMS)
    values = [candidate_recall(full[:, :k], np.arange(len(tests)), test) for k in range(1, N_ITEMS + 1)]
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(1.0)


@SETTINGS
@given(ranked_case(), st.data())
def test_moving_a_hit_up_never_lowers_ndcg(case, data):
    tests, top, k = case
    test = histories(tests, N_ITEMS)
    user = data.draw(st.integers(0, len(tests) - 1))
    row = top[user]
    hits = [j for j, item in enumerate(row) if item in tests[user]]
    misses = [j for j, item in enumerate(row) if item not in tests[user]]
    if not hits or not misses or min(misses) > max(hits):
        return
    hit = data.draw(st.sampled_from([h for h in hits if h > min(misses)]))
    miss = data.draw(st.sampled_from([m for m in misses if m < hit]))
    swapped = top.copy()
    swapped[user, [hit, miss]] = swapped[user, [miss, hit]]
    _, before = ranking_metrics(top, np.arange(len(tests)), test, k)
    _, after = ranking_metrics(swapped, np.arange(len(tests)), test, k)
    assert after[user] >= before[user] - 1e-12


# -- full ranking ---------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 15), st.integers(0, 10_000))
def test_top_k_from_scores_excludes_train_items_and_sorts(n_users, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, 20)).astype(np.float32)
    exclude = csr_matrix((rng.random((n_users, 20)) < 0.3).astype(np.float32))
    top = top_k_from_scores(scores, exclude, k)
    for user in range(n_users):
        row = top[user][top[user] >= 0]
        excluded = set(exclude[user].indices)
        assert not excluded & set(row.tolist())
        assert len(row) == min(k, 20 - len(excluded))
        assert np.all(np.diff(scores[user, row]) <= 0)


def test_evaluate_scorer_on_an_oracle_is_perfect():
    rows = [(f"u{u}", str(i), i, 5.0) for u in range(3) for i in range(u, u + 10)]
    split = protocol_split(dataset(rows, n_items=20))
    truth = split.test.matrix().toarray()

    class Oracle:
        def scores(self, users):
            return truth[users]

    result = evaluate_scorer(Oracle(), split)
    assert result["ndcg_at_10"] == pytest.approx(1.0) and result["recall_at_10"] == pytest.approx(1.0)
    assert result["users"] == 3


# -- the served-reality rule: every item rated (any value) before the first test positive ----------


def test_seen_holds_low_ratings_before_the_cut_and_nothing_after():
    rows = [("u1", str(i), 10 * i, 5.0) for i in range(5)]  # positives 0..4, "4" goes to test (t=40)
    rows += [("u1", "10", 15, 2.0), ("u1", "11", 39, 3.0)]  # low ratings before the cut: known
    rows += [("u1", "12", 40, 1.0), ("u1", "13", 55, 2.0)]  # at the cut (tie rank of 12 > 4) and after: unknown
    rows += [("u1", "4", 20, 3.0)]  # the test item itself was rated low before: known, as a service knows it
    split = protocol_split(dataset(rows))
    ids = split.item_ids
    assert [ids[i] for i in split.test.of(0)] == ["4"]
    assert sorted(ids[i] for i in split.train.of(0)) == ["0", "1", "2", "3"]
    assert sorted(set(ids[i] for i in split.seen.of(0))) == ["0", "1", "10", "11", "2", "3", "4"]
    assert split.seen.ratings_of(0).tolist() == [5.0, 5.0, 2.0, 5.0, 3.0, 5.0, 3.0]  # time order
    seen = set(split.exclusion("seen")[0].indices.tolist())
    assert {ids[i] for i in seen} == {"0", "1", "2", "3", "4", "10", "11"}
    assert {ids[i] for i in split.exclusion("positives")[0].indices} == {"0", "1", "2", "3"}
    with pytest.raises(EvaluationError, match="rule"):
        split.exclusion("everything")


@st.composite
def rated_rows(draw):
    """Interactions of a few users with ratings 1..5 and many timestamp ties."""
    n_users = draw(st.integers(1, 4))
    rows = []
    for user in range(n_users):
        items = draw(st.lists(st.integers(0, 14), min_size=1, max_size=14, unique=True))
        for item in items:
            rows.append((f"u{user}", str(item), draw(st.integers(0, 6)), float(draw(st.integers(1, 5)))))
        if draw(st.booleans()):  # a repeated rating of an item, at another time
            item = items[0]
            rows.append((f"u{user}", str(item), draw(st.integers(0, 6)), float(draw(st.integers(1, 5)))))
    return rows


@SETTINGS
@given(rated_rows(), st.sampled_from([0.2, 0.5]))
def test_the_seen_rule_is_leak_free(rows, share):
    """Every item rated (any value) strictly before the first held-out positive is excluded; no item
    rated only at or after it is. "Before" is the protocol's order: (timestamp, numeric item id)."""
    if not any(r[3] >= 4 for r in rows):
        return
    split = protocol_split(dataset(rows, n_items=15), test_share=share)
    exclusion = split.exclusion("seen")
    for user in split.test_users():
        first_item = int(split.item_ids[split.test.of(user)[0]])
        cut = (int(split.test.timestamps[split.test.indptr[user]]), first_item)
        rated = [(t, int(item)) for uid, item, t, _ in rows if uid == split.user_ids[user]]
        before = {item for t, item in rated if (t, item) < cut}
        excluded = {int(split.item_ids[i]) for i in exclusion[user].indices}
        assert excluded == before
        assert {int(split.item_ids[i]) for i in split.train.of(user)} <= excluded  # train positives are before
    validation = validation_split(split, share)
    for user in validation.test_users():  # the validation split's seen: the same rule inside train
        cut = (int(validation.test.timestamps[validation.test.indptr[user]]), int(split.item_ids[validation.test.of(user)[0]]))
        known = {(int(t), int(split.item_ids[i])) for i, t in zip(validation.seen.of(user),
                 validation.seen.timestamps[validation.seen.indptr[user]:validation.seen.indptr[user + 1]])}
        assert all(event < cut for event in known)
        assert set(validation.seen.of(user)) <= set(split.seen.of(user))


def test_evaluate_scorer_reports_both_rules():
    # u0 rated items 10..14 low before the test part; a scorer that loves them wastes its list on
    # them under the published protocol, not in the served reality where they are excluded.
    rows = [("u0", str(i), i, 5.0) for i in range(10)] + [("u0", str(10 + j), j, 1.0) for j in range(5)]
    split = protocol_split(dataset(rows, n_items=20))

    class LovesLowRated:
        def scores(self, users):
            out = np.zeros((len(users), 20), dtype=np.float32)
            out[:, 10:15] = 2.0
            out[:, [8, 9]] = 1.0  # the two test items
            return out

    result = evaluate_scorer(LovesLowRated(), split, k=5)
    assert result["unseen_recall_at_5"] == pytest.approx(1.0) and result["unseen_ndcg_at_5"] == pytest.approx(1.0)
    assert result["recall_at_5"] == 0.0 and result["ndcg_at_5"] == 0.0
    assert result["users"] == 1 and "unseen_catalog_coverage_at_5" in result
    only = evaluate_scorer(LovesLowRated(), split, k=5, rules=("positives",))
    assert "unseen_ndcg_at_5" not in only and only["ndcg_at_5"] == 0.0
