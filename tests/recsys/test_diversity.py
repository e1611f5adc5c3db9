"""Property tests of the session rules (recsys/pipeline/rules/session.py): the session share cap holds
over every page of a session whenever the candidates allow it, and is reported whenever it does
not; the category penalty sinks exactly the named categories and keeps every other order."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.policy import SESSION_DIVERSITY, PolicyConfig, build_rules
from recsys.pipeline.rules.session import CategoryPenalty, SessionShareCap, session_limit
from recsys.pipeline.candidates import CandidateSet, Source
from recsys.pipeline.rerank import select
from recsys.pipeline.rules import RULE_TYPES, Dispersal, UniqueItems, rule_from_config
from recsys.pipeline.slate import SlateContext

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def candidates(rng: np.random.Generator, n: int, categories: int, skew: float) -> CandidateSet:
    """`n` items over `categories` categories; `skew` of them in category 0 and scored highest (a
    user whose model would fill the session with one category)."""
    category = rng.integers(0, categories, n)
    dominant = rng.random(n) < skew
    category[dominant] = 0
    score = rng.random(n) + dominant  # the dominant category outranks the rest
    return CandidateSet(item=np.arange(n, dtype=np.int64), score=score.astype(np.float32), category=category,
                        content=np.arange(n, dtype=np.int64), source=np.full(n, Source.RANKED, dtype=np.int8))


def serve_session(c: CandidateSet, pages: int, k: int, rules_for, relaxation=(SESSION_DIVERSITY,)):
    """Serve `pages` pages of one session; yield (slate, every category shown so far)."""
    context = SlateContext()
    shown: list[int] = []
    for _ in range(pages):
        slate = select(c, k, rules_for(shown), context, relaxation)
        shown += c.category[slate.indices].tolist()
        context = context.after(slate, c)
        yield slate, shown


@SETTINGS
@given(seed=st.integers(0, 2**16), categories=st.integers(2, 12), skew=st.floats(0, 0.9), k=st.integers(1, 20),
       pages=st.integers(1, 5), cap=st.floats(0.1, 1.0), min_positions=st.integers(1, 30))
def test_the_cap_holds_on_every_page_or_the_page_says_it_gave_way(seed, categories, skew, k, pages, cap, min_positions):
    c = candidates(np.random.default_rng(seed), 150, categories, skew)

    def rules(shown):
        return [UniqueItems("item_dedup"), SessionShareCap.for_session(shown, cap, min_positions=min_positions)]

    gave_way = False  # a page that broke the cap says so; a page that keeps it says nothing
    for slate, shown in serve_session(c, pages, k, rules):
        limit = session_limit(cap, len(shown), min_positions)
        over = max(np.bincount(shown)) > limit
        reported = any(v.rule == SESSION_DIVERSITY for v in slate.violations)
        gave_way |= reported
        assert not reported or over, (shown, limit, slate.violations)
        assert not over or gave_way, (shown, limit)


@SETTINGS
@given(seed=st.integers(0, 2**16), skew=st.floats(0, 0.95), k=st.integers(1, 20), pages=st.integers(1, 5),
       cap=st.floats(0.15, 0.6), min_positions=st.integers(1, 30))
def test_the_cap_is_met_whenever_the_candidates_allow_it(seed, skew, k, pages, cap, min_positions):
    # Enough categories with enough items each that a page keeping the cap always exists: every
    # session length n up to the last page's needs n / limit(n) categories.
    categories = max(math.ceil(n / session_limit(cap, n, min_positions)) for n in range(1, pages * k + 1)) + 1
    rng = np.random.default_rng(seed)
    c = candidates(rng, 1200, categories, skew)
    c.category[: categories * 25] = np.repeat(np.arange(categories), 25)  # >= 25 items per category

    def rules(shown):
        return [UniqueItems("item_dedup"), SessionShareCap.for_session(shown, cap, min_positions=min_positions)]

    for slate, shown in serve_session(c, pages, k, rules, relaxation=()):
        assert len(slate) == k and not slate.violations, slate.violations
        assert max(np.bincount(shown)) <= session_limit(cap, len(shown), min_positions)
        if len(shown) >= max(min_positions, 1 / cap):  # (one item of one is 100%, whatever the cap)
            assert max(np.bincount(shown)) / len(shown) <= cap + 1e-9  # the share itself, once the session is long enough


@SETTINGS
@given(seed=st.integers(0, 2**16), k=st.integers(5, 20), pages=st.integers(1, 4), skew=st.floats(0.3, 0.95))
def test_broaden_my_feed_lowers_the_dominant_share_through_the_declared_policy(seed, k, pages, skew):
    config = PolicyConfig.model_validate({"session_diversity": {"max_share": 0.5, "broadened_max_share": 0.2}})
    c = candidates(np.random.default_rng(seed), 400, 10, skew)
    c.category[:250] = np.repeat(np.arange(10), 25)
    shares = {}
    for broaden in (False, True):
        def rules(shown, broaden=broaden):
            return build_rules(config, "feed", 1, session_categories=shown, broaden=broaden)[0]

        *_, (slate, shown) = serve_session(c, pages, k, rules, relaxation=config.relaxation_order)
        assert not [v for v in slate.violations if v.rule == SESSION_DIVERSITY]
        cap = config.session_diversity.cap(broaden)
        assert max(np.bincount(shown)) <= session_limit(cap, len(shown), config.session_diversity.min_positions)
        shares[broaden] = max(np.bincount(shown)) / len(shown)
    assert shares[True] <= max(shares[False], session_limit(0.2, pages * k, 10) / (pages * k))


@SETTINGS
@given(seed=st.integers(0, 2**16), categories=st.integers(2, 8), penalised=st.sets(st.integers(0, 7), min_size=1),
       k=st.integers(1, 30))
def test_a_full_penalty_puts_every_other_category_first_and_keeps_each_group_in_score_order(seed, categories, penalised, k):
    rng = np.random.default_rng(seed)
    c = candidates(rng, 60, categories, 0.3)
    slate = select(c, k, [UniqueItems("item_dedup"), CategoryPenalty(frozenset(penalised), 1.5)])  # > 1: below every other
    hit = np.isin(c.category[slate.indices], list(penalised))
    assert not np.any(hit[:-1] & ~hit[1:]), "a penalised item ranks above an unpenalised one"
    for group in (hit, ~hit):
        scores = c.score[slate.indices][group]
        assert np.all(np.diff(scores) <= 0)  # within a group, the model's order


def test_a_partial_penalty_lowers_only_the_named_categories():
    c = CandidateSet(item=np.arange(4), score=np.array([4.0, 3.0, 2.0, 1.0], dtype=np.float32),
                     category=np.array([0, 1, 0, 1]), content=np.arange(4), source=np.zeros(4, dtype=np.int8))
    slate = select(c, 4, [CategoryPenalty(frozenset({0}), 0.4)])  # spread 3: category 0 loses 1.2
    assert slate.items.tolist() == [1, 0, 3, 2] and np.allclose(slate.scores, [3.0, 2.8, 1.0, 0.8])


def test_session_rules_are_in_the_one_registry_and_build_from_config():
    assert RULE_TYPES["session_share_cap"] is SessionShareCap and RULE_TYPES["category_penalty"] is CategoryPenalty
    rule = rule_from_config({"type": "session_share_cap", "max_share": 0.25, "prior": ((3, 2),)})
    assert rule == SessionShareCap(0.25, ((3, 2),)) and rule.prior_total == 2


def test_with_dispersal_the_cap_gives_way_first_and_is_reported():
    # Two categories cannot meet a 30% cap; the declared order relaxes the cap, never dispersal first.
    c = candidates(np.random.default_rng(1), 60, 2, 0.5)
    rules = [UniqueItems("item_dedup"), Dispersal(5, 3, name="dispersal"), SessionShareCap(0.3)]
    slate = select(c, 10, rules, SlateContext(), (SESSION_DIVERSITY, "dispersal"))
    assert len(slate) == 10 and slate.relaxed == (SESSION_DIVERSITY,)
    assert {v.rule for v in slate.violations} == {SESSION_DIVERSITY}
