"""Elderly mode's rules (Provisions Art. 19): who is in it, what the feature library flags for
it, what the audience removes, and plain explanations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import explanations, minors
from compliance.elderly import FRAUD_RISK, PLAIN_TEXT, ElderlyConfig, describe, is_elderly, plain_reason
from compliance.feature_library import FeatureEntry, FeatureLibrary
from served.query import Audience


@settings(max_examples=200, deadline=None)
@given(age=st.none() | st.integers(0, 120), setting=st.none() | st.booleans(), default_age=st.none() | st.integers(18, 150))
def test_the_setting_wins_else_a_known_age_at_or_above_the_default(age, setting, default_age):
    config = ElderlyConfig(default_age=default_age)
    expected = setting if setting is not None else (age is not None and default_age is not None and age >= default_age)
    assert is_elderly(age, setting, config) is expected


def test_fraud_risk_entries_flag_items_without_blocking_them_for_everyone():
    titles = ["Win a prize now", "A quiet film", "Prize draw scam", "Illegal thing"]
    library = FeatureLibrary([
        FeatureEntry(id="fraud", kind="keyword", pattern="prize", category=FRAUD_RISK, author="t"),
        FeatureEntry(id="bad", kind="keyword", pattern="illegal", category="illegal", author="t"),
    ])
    match = library.match(titles, None, ["a", "b", "c", "d"])
    assert match.blocked.tolist() == [False, False, False, True]
    assert match.flagged(FRAUD_RISK).tolist() == [True, False, True, False]
    assert match.matched.tolist() == [True, False, True, True]
    assert match.counts == {"fraud": 2, "bad": 1} and match.entry_for_item[0] == "fraud"
    assert not FeatureLibrary().match(titles, None, ["a", "b", "c", "d"]).flagged(FRAUD_RISK).any()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.lists(st.booleans(), min_size=1, max_size=40), st.booleans())
def test_the_audience_removes_fraud_risk_items_exactly_for_elderly_users(blocked, risk, elderly):
    n = min(len(blocked), len(risk))
    blocked, risk = np.array(blocked[:n]), np.array(risk[:n])
    audience = Audience.offline("u", datetime(2026, 1, 1, tzinfo=UTC), minors.MinorsConfig(), age=70, elderly=elderly)
    rating = np.zeros(n, dtype=np.int8)
    eligible = audience.eligible(blocked, rating, risk)
    assert (eligible == (~blocked & ~(risk & elderly))).all()
    removed = np.zeros(n, dtype=bool)
    for _, mask in audience.exclusions(np.arange(n), blocked, rating, risk):
        removed |= mask
    assert (removed == ~eligible).all()


def test_plain_reasons_keep_the_code_and_signals():
    for reason in (explanations.because_liked(["Alien"]), explanations.popular(3), explanations.trending(5, 24.0),
                   explanations.popular_in_category("Comedy", 2)):
        plain = plain_reason(reason)
        assert plain.code == reason.code and plain.signals == reason.signals and plain.text == PLAIN_TEXT[reason.code]


def test_the_description_states_the_configured_age():
    assert "60 or more" in describe(ElderlyConfig()) and "Art. 19" in describe(ElderlyConfig())
    assert "off unless the user turns it on" in describe(ElderlyConfig(default_age=None))
