"""Periodic review (Art. 8): the addiction-risk simulation and the threshold checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.review import (
    CHECKS,
    ReviewCheck,
    ReviewConfig,
    ReviewError,
    addiction_risk,
    feedback_effectiveness,
    one_at_a_time,
    review,
    session_diversity,
)

N_ITEMS, N_CATEGORIES, K = 400, 8, 10
CATEGORIES = np.arange(N_ITEMS) % N_CATEGORIES
ITEMS_BY_CATEGORY = [np.flatnonzero(CATEGORIES == c) for c in range(N_CATEGORIES)]


def user_histories(n_users=150, length=20, seed=0) -> list[np.ndarray]:
    """Each user leans to one category (~40% of their history), the rest spread over the others."""
    rng = np.random.default_rng(seed)
    histories = []
    for _ in range(n_users):
        favourite = rng.integers(N_CATEGORIES)
        cats = np.where(rng.random(length) < 0.4, favourite, rng.integers(N_CATEGORIES, size=length))
        histories.append(np.array([rng.choice(ITEMS_BY_CATEGORY[c]) for c in cats]))
    return histories


def unseen(category: int, history: np.ndarray, k: int) -> np.ndarray:
    pool = ITEMS_BY_CATEGORY[category]
    return pool[~np.isin(pool, history)][:k]


def echo_chamber(users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Always the user's most consumed category: the narrowing Art. 8 warns against."""
    out = []
    for history in histories:
        favourite = np.bincount(CATEGORIES[history], minlength=N_CATEGORIES).argmax()
        out.append(unseen(favourite, history, K))
    return np.stack(out)


def diverse(user: int, history: np.ndarray) -> np.ndarray:
    """One unseen item per category, starting from a category that rotates with the history length."""
    start = (user + len(history)) % N_CATEGORIES
    order = [(start + j) % N_CATEGORIES for j in range(N_CATEGORIES)]
    picks = [unseen(c, history, 1)[0] for c in order]
    return np.array(picks + [unseen(order[0], history, 3)[-1], unseen(order[1], history, 3)[-1]])


def served_metrics(risk) -> dict[str, float]:
    """The review's inputs when `risk`'s recommender is both the model and the served path, lists clean."""
    return risk.as_metrics() | {"model/dominant_category_amplification": risk.amplification,
                                "dispersal_violation_rate": 0.0, "dedup_violation_rate": 0.0, "flagged_served_rate": 0.0,
                                "feedback_rejected_item_share": 0.0}


def test_echo_chamber_recommender_amplifies_the_dominant_category_and_fails_review():
    risk = addiction_risk(echo_chamber, user_histories(), CATEGORIES)
    assert risk.final_share == pytest.approx(1.0)
    assert risk.amplification > 1.5 and risk.category_diversity == 1.0
    assert risk.slate_share_by_session.shape == (20,) and risk.slate_share_by_session.min() == pytest.approx(1.0)
    result = review(served_metrics(risk))
    assert not result.passed
    assert {c.name for c in result.failures} == {"dominant_category_amplification", "category_diversity",
                                                 "model/dominant_category_amplification"}


@pytest.mark.parametrize("consumption", ["top", "position_bias"])
def test_a_list_led_by_other_categories_dilutes_the_dominant_one_under_either_consumption(consumption):
    """The dominant category only at the list's tail: consuming the top item never picks it, the
    position-biased user sometimes does; either way the share falls."""

    def tail_only(users, histories):
        out = []
        for history in histories:
            favourite = np.bincount(CATEGORIES[history], minlength=N_CATEGORIES).argmax()
            others = [unseen(c, history, 1)[0] for c in range(N_CATEGORIES) if c != favourite]
            out.append(np.array(others + list(unseen(favourite, history, K - len(others)))))
        return np.stack(out)

    config = ReviewConfig(consumption=consumption, simulation_sessions=10)
    risk = addiction_risk(tail_only, user_histories(), CATEGORIES, config)
    assert risk.final_share < risk.initial_share
    if consumption == "top":
        assert risk.amplification < addiction_risk(tail_only, user_histories(), CATEGORIES,
                                                   config.model_copy(update={"consumption": "position_bias"})).amplification


def test_diverse_recommender_does_not_amplify_and_passes_review():
    risk = addiction_risk(one_at_a_time(diverse), user_histories(), CATEGORIES)
    assert risk.amplification < 1.0 and risk.final_share < risk.initial_share
    assert risk.category_diversity == N_CATEGORIES
    result = review(served_metrics(risk))
    assert result.passed, result.failures


def test_simulation_samples_users_reproducibly_and_skips_empty_histories():
    histories = user_histories(n_users=300) + [np.array([], dtype=np.int64)]
    config = ReviewConfig(simulation_users=50, simulation_sessions=5, seed=3)
    first = addiction_risk(echo_chamber, histories, CATEGORIES, config)
    again = addiction_risk(echo_chamber, histories, CATEGORIES, config)
    assert first.users == 50 and first.as_metrics() == again.as_metrics()
    assert np.array_equal(first.slate_share_by_session, again.slate_share_by_session)
    everyone = addiction_risk(echo_chamber, histories, CATEGORIES, ReviewConfig(simulation_users=None, simulation_sessions=2))
    assert everyone.users == 300


def test_simulation_rejects_bad_recommenders_and_inputs():
    histories = user_histories(n_users=5)
    with pytest.raises(ReviewError, match=r"recommend: must return shape \(5, >= 1\)"):
        addiction_risk(lambda users, h: np.zeros(len(users), dtype=np.int64), histories, CATEGORIES)
    with pytest.raises(ReviewError, match="recommend: must return integer item indices in 0..399"):
        addiction_risk(lambda users, h: np.full((len(users), 3), 999), histories, CATEGORIES)
    with pytest.raises(ReviewError, match="item_categories"):
        addiction_risk(echo_chamber, histories, CATEGORIES.astype(float))
    with pytest.raises(ReviewError, match=r"histories\[0\]"):
        addiction_risk(echo_chamber, [np.array([N_ITEMS + 1])], CATEGORIES)
    with pytest.raises(ReviewError, match="no user has a history"):
        addiction_risk(echo_chamber, [np.array([], dtype=np.int64)], CATEGORIES)


def test_review_reports_each_configured_check_and_fails_missing_metrics():
    result = review({"dominant_category_amplification": 1.5, "category_diversity": 2.0})
    by_name = {c.name: c for c in result.checks}
    assert by_name["dominant_category_amplification"] == ReviewCheck("dominant_category_amplification", 1.5, 1.5, True)
    assert by_name["category_diversity"].passed is False
    assert by_name["dispersal_violation_rate"] == ReviewCheck("dispersal_violation_rate", None, 0.0, False)
    assert "recall_at_10" not in by_name  # threshold None: not checked
    lenient = review({}, ReviewConfig(missing_metric_fails=False))
    assert lenient.passed and all(c.value is None for c in lenient.checks)
    quality = review({"recall_at_10": 0.05}, ReviewConfig(min_recall_at_10=0.1, missing_metric_fails=False))
    assert [c.name for c in quality.failures] == ["recall_at_10"]
    assert result.to_dict()["article"] == "Art. 8" and result.to_dict()["checks"][0]["name"] == CHECKS[0][0]


def test_review_rejects_non_numeric_metrics():
    with pytest.raises(ReviewError, match="metrics\\['category_diversity'\\]: expected a number"):
        review({"category_diversity": "high"})
    with pytest.raises(ValueError, match="max_dispersal_violation_rate"):
        ReviewConfig(max_dispersal_violation_rate=2.0)


@settings(max_examples=50, deadline=None)
@given(value=st.floats(0, 10, allow_nan=False), threshold=st.floats(0.01, 10))
def test_property_max_checks_pass_exactly_up_to_their_threshold(value, threshold):
    config = ReviewConfig(max_dominant_category_amplification=threshold, min_category_diversity=None,
                          max_model_dominant_category_amplification=None,
                          max_dispersal_violation_rate=None, max_dedup_violation_rate=None, max_flagged_served_rate=None,
                          max_feedback_rejected_item_share=None)
    result = review({"dominant_category_amplification": value}, config)
    assert result.passed == (value <= threshold)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), users=st.integers(1, 8), pages=st.integers(1, 6))
def test_feedback_effectiveness_counts_every_rejected_item_and_duplicate(seed, users, pages):
    rng = np.random.default_rng(seed)
    content = rng.integers(0, N_ITEMS // 2, N_ITEMS)  # about two items per content key
    first = [rng.choice(N_ITEMS, K, replace=False) for _ in range(users)]
    rejected = [f[:2] for f in first]
    fewer = [CATEGORIES[f[1:2]] for f in first]
    after = [[rng.choice(N_ITEMS, K, replace=False) for _ in range(pages)] for _ in range(users)]
    result = feedback_effectiveness(first, after, rejected, fewer, content, CATEGORIES)
    expected = sum(int(np.isin(content[p], content[r]).sum()) for a, r in zip(after, rejected) for p in a)
    assert result.rejected_shown == expected and result.items_shown == users * pages * K
    assert result.users_shown_rejected == sum(any(np.isin(content[p], content[r]).any() for p in a)
                                              for a, r in zip(after, rejected))
    metrics = result.as_metrics()
    assert metrics["feedback_rejected_item_share"] == expected / (users * pages * K)
    assert review(metrics, ReviewConfig(missing_metric_fails=False)).passed == (expected == 0)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), sessions=st.integers(1, 10), cap=st.floats(0.1, 1.0), min_positions=st.integers(1, 30))
def test_session_diversity_reports_the_dominant_share_and_the_sessions_over_the_cap(seed, sessions, cap, min_positions):
    rng = np.random.default_rng(seed)
    pages = [[rng.choice(N_ITEMS, K, replace=False) for _ in range(rng.integers(1, 5))] for _ in range(sessions)]
    report = session_diversity(pages, CATEGORIES, cap, min_positions)
    shares, over = [], 0
    for session in pages:
        counts = np.bincount(CATEGORIES[np.concatenate(session)])
        n = counts.sum()
        shares.append(counts.max() / n)
        over += counts.max() > max(1, int(cap * max(n, min_positions) + 1e-9))
    assert report["session/dominant_share_max"] == pytest.approx(max(shares))
    assert report["session_over_cap_rate"] == pytest.approx(over / sessions)
