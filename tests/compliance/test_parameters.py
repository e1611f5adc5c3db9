"""DSA Art. 27: each surface's main parameters with their relative importance."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from compliance.parameters import SIGNAL_FAMILIES, signal_importance, surface_parameters
from recsys.ranking.features import FEATURE_NAMES


def test_every_ranker_feature_belongs_to_a_named_family():
    grouped = {f for features in SIGNAL_FAMILIES.values() for f in features}
    assert set(FEATURE_NAMES) == grouped  # a new feature must be given its plain-words family


@given(st.lists(st.floats(0, 1), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)))
def test_family_shares_sum_the_feature_shares_most_important_first(values):
    total = sum(values) or 1.0
    importance = {name: v / total for name, v in zip(FEATURE_NAMES, values)}
    rows = signal_importance(importance, FEATURE_NAMES + ["a_forks_own_feature"])
    shares = [r["relative_importance"] for r in rows]
    assert shares == sorted(shares, reverse=True)
    assert abs(sum(shares) - sum(importance.values())) < 0.01
    assert any(r["signal"] == "a_forks_own_feature" for r in rows)


def test_without_measured_importance_the_shares_are_unknown_not_invented():
    rows = surface_parameters(["home"], {"home": ["Front screen"]}, None, FEATURE_NAMES)
    assert all(s["relative_importance"] is None for s in rows[0]["personalized"]["ranking_signals"])
    assert rows[0]["personalized"]["policies"] == ["Front screen"]
