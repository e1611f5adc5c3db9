"""Explanations (Art. 12, Art. 17 (draft 15)) and content labels (Art. 9): real signals only, nearest liked items."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.explanations import (
    AI_GENERATED_TEXT,
    LABEL_TEXT,
    ExplanationError,
    because_liked,
    boosted,
    content_labels,
    editorial_front_screen,
    interest_tag,
    minor_safe_pick,
    nearest_liked,
    pinned,
    popular,
    popular_in_category,
    trending,
)

titles = st.text(min_size=1, max_size=30).filter(lambda t: t.strip())
blank = st.sampled_from(["", " ", "\t\n", "\u3000"])


def test_texts_name_the_signal():
    assert because_liked(["Star Wars", "Alien"]).text == "Because you liked Star Wars and Alien"
    assert because_liked(["Heat"]).text == "Because you liked Heat"
    assert because_liked(["A", "B", "C"], ["1", "2", "3"]).signals == {
        "liked_titles": ["A", "B", "C"],
        "liked_item_ids": ["1", "2", "3"],
    }
    assert interest_tag("Comedy").text == "Matches your interest: Comedy"
    assert interest_tag("Comedy", 0.4).signals == {"tag": "Comedy", "weight": 0.4}
    assert editorial_front_screen().text == "Editor's pick for the front screen"
    assert editorial_front_screen(slot=2).signals == {"pool": "mainstream", "slot": 2}
    assert pinned("National film day").text == "Pinned by the editors: National film day"
    assert pinned("National film day", 7).signals == {"reason": "National film day", "intervention_id": "7"}
    assert boosted("Festival selection", "b1").code == "boosted"
    assert popular(3).text == "Popular with all users" and popular(3).signals == {"popularity_rank": 3}
    assert popular_in_category("Comedy", 30).text == "Popular in Comedy"
    assert trending(12, 24.0).text == "Trending now"
    assert minor_safe_pick(5).signals == {"minor_safe": True, "popularity_rank": 5}


@given(names=st.lists(titles, min_size=1, max_size=5))
def test_because_liked_names_every_title(names):
    reason = because_liked(names)
    assert reason.code == "similar_to_liked"
    assert all(" ".join(name.split()) in reason.text for name in names)


@given(empty=blank)
def test_builders_refuse_missing_signals(empty):
    refusals = [
        lambda: because_liked([]),
        lambda: because_liked([empty]),
        lambda: because_liked("Star Wars"),
        lambda: because_liked(["A", "B"], ["1"]),
        lambda: interest_tag(empty),
        lambda: interest_tag("Comedy", 0.0),
        lambda: editorial_front_screen(-1),
        lambda: pinned(empty, 1),
        lambda: boosted(empty, 1),
        lambda: popular(0),
        lambda: popular(True),
        lambda: popular_in_category(empty, 3),
        lambda: popular_in_category("Comedy", 0),
        lambda: trending(0, 24),
        lambda: trending(3, 0),
        lambda: minor_safe_pick(0),
    ]
    for refusal in refusals:
        with pytest.raises(ExplanationError):
            refusal()


def test_refusal_message_names_the_builder_and_field():
    with pytest.raises(ExplanationError, match="because_liked: at least one liked title is required"):
        because_liked([])
    with pytest.raises(ExplanationError, match="pinned: reason must be a non-empty string"):
        pinned("  ", 3)


def test_content_labels_mark_synthetic_content():
    assert content_labels(synthetic=True, minor_safe=False) == ["ai_generated"]
    assert LABEL_TEXT["ai_generated"] == AI_GENERATED_TEXT == "AI-generated content"
    assert content_labels(synthetic=False, minor_safe=True) == ["minor_safe"]
    assert content_labels(synthetic=False, minor_safe=False) == []
    assert content_labels(synthetic=True, minor_safe=True, mainstream=True) == ["ai_generated", "minor_safe", "mainstream"]
    assert all(label in LABEL_TEXT for label in ("ai_generated", "minor_safe", "mainstream"))


def _brute_nearest(candidates, liked_idx, factors, top):
    out = np.full((len(candidates), top), -1)
    for row, vector in enumerate(candidates):
        scored = []
        for idx in liked_idx:
            other = factors[idx]
            denom = (np.linalg.norm(vector) or 1.0) * (np.linalg.norm(other) or 1.0)
            scored.append((float(vector @ other) / denom, idx))
        scored.sort(key=lambda pair: -pair[0])
        best = [idx for _, idx in scored[:top]]
        out[row, : len(best)] = best
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 8),
    m=st.integers(1, 30),
    d=st.integers(1, 6),
    k=st.integers(0, 10),
    top=st.integers(1, 4),
)
def test_nearest_liked_matches_brute_force(seed, n, m, d, k, top):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(m, d)).astype(np.float32)
    liked = rng.choice(m, size=min(k, m), replace=False)
    candidates = rng.normal(size=(n, d)).astype(np.float32)
    result = nearest_liked(candidates, liked, factors, top=top)
    assert result.shape == (n, top)
    assert np.all((result == -1) | np.isin(result, liked))
    expected = _brute_nearest(candidates, liked, factors, top)
    # compare similarities, not indices: ties may order differently
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    for row in range(n):
        got = [float(unit(candidates[row]) @ unit(factors[i])) for i in result[row] if i >= 0]
        want = [float(unit(candidates[row]) @ unit(factors[i])) for i in expected[row] if i >= 0]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert (result[row] >= 0).sum() == min(top, len(liked))


def test_nearest_liked_names_the_closest_items_first():
    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]], dtype=np.float32)
    candidates = np.array([[1.0, 0.1], [0.0, 2.0]], dtype=np.float32)
    result = nearest_liked(candidates, np.array([0, 1, 2, 3]), factors, top=2)
    assert result.tolist() == [[0, 2], [1, 2]]


@pytest.mark.parametrize(
    ("candidates", "liked", "factors", "message"),
    [
        (np.zeros((2, 3)), np.array([0]), np.zeros((4, 2)), "dimension 3"),
        (np.zeros(3), np.array([0]), np.zeros((4, 3)), "must be 2-D"),
        (np.zeros((2, 3)), np.array([9]), np.zeros((4, 3)), r"values must be in 0\.\.3"),
        (np.zeros((2, 3)), np.array([0.5]), np.zeros((4, 3)), "1-D integer array"),
    ],
)
def test_nearest_liked_bad_shapes(candidates, liked, factors, message):
    with pytest.raises(ValueError, match=message):
        nearest_liked(candidates, liked, factors)
