"""The price anatomy: which items a rule drops from the unconstrained page and which it adds, and
how often each is a held-out film (hand-made lists, properties over random ones, the benchmark's run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.price_anatomy import PICKERS, list_changes, markdown_lines, mean_over_seeds
from benchmarks.quality import ALL_RULES, RULE_SWITCHES, only_rule_policies
from compliance.policy import PolicyConfig
from recsys.evaluation import Histories


def histories(rows: list[list[int]], n_items: int) -> Histories:
    lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = np.asarray([i for r in rows for i in r], dtype=np.int64)
    return Histories(indptr=indptr, items=items, timestamps=np.zeros(len(items), dtype=np.int64), n_items=n_items)


def test_hand_made_pages():
    test = histories([[1, 9], [5]], 10)
    base = np.array([[1, 2, 3], [4, 5, 6]])
    changed = np.array([[1, 9, 2], [4, 5, 6]])  # row 0: 3 dropped (a miss), 9 added (a hit, editorial)
    editorial = np.zeros(10, dtype=bool)
    editorial[9] = True
    out = list_changes(base, changed, np.array([0, 1]), test, editorial)
    assert out == {"dropped_per_list": 0.5, "dropped_hit_rate": 0.0, "added_per_list": 0.5, "added_hit_rate": 1.0,
                   "editorial_added_per_list": 0.5, "editorial_added_hit_rate": 1.0}
    same = list_changes(base, base, np.array([0, 1]), test, editorial)
    assert same["dropped_per_list"] == same["added_per_list"] == 0 and math.isnan(same["dropped_hit_rate"])


def test_padding_is_neither_dropped_nor_added():
    test = histories([[1]], 5)
    out = list_changes(np.array([[1, 2, -1]]), np.array([[2, -1, -1]]), np.array([0]), test, np.zeros(5, dtype=bool))
    assert out["dropped_per_list"] == 1 and out["dropped_hit_rate"] == 1 and out["added_per_list"] == 0


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="list_changes"):
        list_changes(np.zeros((2, 3), dtype=int), np.zeros((2, 4), dtype=int), np.array([0, 1]),
                     histories([[0], [1]], 5), np.zeros(5, dtype=bool))


@st.composite
def pages(draw):
    n_items, k, n_users = draw(st.integers(12, 30)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    def page():
        return draw(st.permutations(range(n_items)))[:k]
    base = np.array([page() for _ in range(n_users)])
    changed = np.array([page() for _ in range(n_users)])
    test = [sorted(draw(st.sets(st.integers(0, n_items - 1), max_size=6))) for _ in range(n_users)]
    editorial = np.array(draw(st.lists(st.booleans(), min_size=n_items, max_size=n_items)))
    return base, changed, histories(test, n_items), editorial


@settings(max_examples=200, deadline=None)
@given(pages())
def test_full_pages_drop_as_many_as_they_add_and_the_hits_balance(case):
    base, changed, test, editorial = case
    users = np.arange(len(base))
    out = list_changes(base, changed, users, test, editorial)
    assert out["dropped_per_list"] == out["added_per_list"]  # pages of equal length, no padding
    assert out["editorial_added_per_list"] <= out["added_per_list"]
    # Hits on the changed page = hits on the base page - hits dropped + hits added.
    hits = lambda lists: sum(np.isin(lists[u], test.of(u)).sum() for u in users)  # noqa: E731
    dropped_hits = 0 if math.isnan(out["dropped_hit_rate"]) else out["dropped_hit_rate"] * out["dropped_per_list"] * len(users)
    added_hits = 0 if math.isnan(out["added_hit_rate"]) else out["added_hit_rate"] * out["added_per_list"] * len(users)
    assert hits(changed) == pytest.approx(hits(base) - dropped_hits + added_hits)


def test_each_rule_alone_is_a_valid_policy_with_only_that_rule_on():
    policies = only_rule_policies()
    assert list(policies) == list(RULE_SWITCHES)
    for name, override in policies.items():
        PolicyConfig.model_validate(override)
        assert not set(RULE_SWITCHES[name]) & set(override)  # its own switch is left at the default
        assert set(override) | set(RULE_SWITCHES[name]) == set().union(*map(set, RULE_SWITCHES.values()))


def test_mean_over_seeds_ignores_nan_and_keeps_the_shape():
    seeds = [{"rules": {"a": {"ndcg": 0.1, "rate": float("nan")}}, "x": 1.0},
             {"rules": {"a": {"ndcg": 0.3, "rate": 0.5}}, "x": 3.0}]
    assert mean_over_seeds(seeds) == {"rules": {"a": {"ndcg": pytest.approx(0.2), "rate": 0.5}}, "x": 2.0}


def test_markdown_names_every_rule_and_picker():
    row = {"ndcg": 0.2, "dropped_per_list": 1.0, "dropped_hit_rate": 0.1, "added_per_list": 1.0, "added_hit_rate": 0.05,
           "editorial_added_per_list": 0.5, "editorial_added_hit_rate": float("nan")}
    anatomy = {"rules": {name: row for name in [*RULE_SWITCHES, ALL_RULES]},
               "editorial_picks": {"lists_short": 0.5, "picks_per_short_list": 1.5, "displaced_hit_rate": 0.12,
                                   "pick_hit_rate": {name: 0.05 for name in PICKERS}}}
    text = "\n".join(markdown_lines(anatomy, 10))
    assert all(f"| {name} |" in text for name in [*RULE_SWITCHES, ALL_RULES, *PICKERS])
    assert "n/a" in text and "50 % of unconstrained pages" in text
