"""The declared list policy (Art. 11, Art. 12, Art. 14 (draft 13)): config validation, its hash, interventions, and the
engine rules it builds, checked end to end through the re-ranking engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.policy import (
    BLOCK,
    BOOST,
    CONTENT_DEDUP,
    DISPERSAL,
    SESSION_DIVERSITY,
    FRONT_SCREEN,
    ITEM_DEDUP,
    PIN,
    Intervention,
    PolicyConfig,
    build_rules,
    config_hash,
    describe,
    dispersal_violations,
)
from recsys.pipeline.candidates import CandidateSet, Source
from recsys.pipeline.rerank import select
from recsys.pipeline.rules import Boost, Dispersal, Exclude, Pin, PoolSlots, UniqueContent, UniqueItems
from recsys.pipeline.slate import SlateContext
from recsys.pipeline.rules.session import SessionShareCap

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def intervention(**fields) -> dict:
    return {"operator": "ops@example", "reason": "editorial decision", **fields}


# ------------------------------------------------------------------------------------------------
# PolicyConfig
# ------------------------------------------------------------------------------------------------
def test_defaults_are_the_declared_policy() -> None:
    config = PolicyConfig()
    assert config.dedup.items is True and config.dedup.content is True
    assert (config.dispersal.window, config.dispersal.max_per_window, config.dispersal.across_pages) == (5, 2, True)
    assert config.front_screen.surfaces == ["home"]
    assert config.front_screen.pages == [0]
    # "at least 2 editorial items within the first screen of 10" (was: positions 1 and 5)
    assert config.front_screen.positions == list(range(1, 11)) and config.front_screen.count == 2
    assert config.front_screen.pool == "mainstream"
    assert config.relaxation_order == [SESSION_DIVERSITY, DISPERSAL, FRONT_SCREEN, CONTENT_DEDUP]
    assert config.max_k == 100


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dispersal": {"window": 5, "max_per_window": 5}}, r"dispersal.max_per_window \(5\) must be < dispersal.window \(5\)"),
        ({"dispersal": {"window": 1}}, "greater than or equal to 2"),
        ({"relaxation_order": ["dispersal", "shuffle"]}, "unknown rule 'shuffle'; relaxable rules: session_diversity, dispersal, front_screen, content_dedup"),
        ({"relaxation_order": ["item_dedup"]}, "'item_dedup' is a hard rule and is never relaxed"),
        ({"relaxation_order": ["pin"]}, "'pin' is a hard rule"),
        ({"relaxation_order": ["dispersal", "dispersal"]}, "names a rule twice"),
        ({"front_screen": {"positions": [0, 5]}}, "1-based positions"),
        ({"front_screen": {"positions": [2, 2]}}, "must not repeat"),
        ({"front_screen": {"pages": [-1]}}, "0-based page numbers"),
        ({"front_screen": {"positions": [1, 120]}}, r"positions \[120\] lie beyond max_k \(100\)"),
        ({"dedup": {"items": False}}, "dedup.items cannot be turned off"),
        ({"dispersal": {"windw": 4}}, "Extra inputs are not permitted"),
        ({"max_k": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_config_is_rejected_with_a_clear_message(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig.model_validate(data)


def test_check_k_names_the_bound() -> None:
    config = PolicyConfig(max_k=20)
    assert config.check_k(20) == 20
    with pytest.raises(ValueError, match=r"1\.\.20"):
        config.check_k(21)


def test_from_file_reads_toml_and_json_and_names_the_file(tmp_path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text("[dispersal]\nwindow = 6\nmax_per_window = 3\n")
    assert PolicyConfig.from_file(toml).dispersal.window == 6
    good = tmp_path / "policy.json"
    good.write_text(json.dumps({"front_screen": {"positions": [1, 3]}}))
    assert PolicyConfig.from_file(good).front_screen.positions == [1, 3]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dispersal": {"window": 3, "max_per_window": 3}}))
    with pytest.raises(ValueError, match=r"invalid policy file .*bad\.json.*max_per_window"):
        PolicyConfig.from_file(bad)
    with pytest.raises(ValueError, match="cannot read policy file"):
        PolicyConfig.from_file(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------------------
# config_hash
# ------------------------------------------------------------------------------------------------
configs = st.builds(
    lambda window, limit, positions, pages, content, order: PolicyConfig.model_validate(
        {
            "dispersal": {"window": window, "max_per_window": min(limit, window - 1)},
            "front_screen": {"positions": positions, "pages": pages},
            "dedup": {"content": content},
            "relaxation_order": order,
        }
    ),
    st.integers(2, 8),
    st.integers(1, 7),
    st.lists(st.integers(1, 10), unique=True, max_size=3),
    st.lists(st.integers(0, 3), unique=True, max_size=2),
    st.booleans(),
    st.permutations([DISPERSAL, FRONT_SCREEN, CONTENT_DEDUP]).flatmap(lambda p: st.integers(0, 3).map(lambda n: p[:n])),
)


@settings(max_examples=100, deadline=None)
@given(configs)
def test_hash_is_stable_short_and_tracks_every_change(config: PolicyConfig) -> None:
    digest = config_hash(config)
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert config_hash(PolicyConfig.model_validate(config.model_dump())) == digest
    assert config_hash(PolicyConfig.model_validate_json(config.model_dump_json())) == digest
    changed = config.model_copy(update={"max_k": config.max_k + 1})
    assert config_hash(changed) != digest


def test_hash_ignores_the_order_positions_were_written_in() -> None:
    a = PolicyConfig.model_validate({"front_screen": {"positions": [5, 1]}})
    assert config_hash(a) == config_hash(PolicyConfig.model_validate({"front_screen": {"positions": [1, 5]}}))


# ------------------------------------------------------------------------------------------------
# Intervention
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "pin", "item_id": "7", "surface": "home"}, "a pin needs item_id and position"),
        ({"kind": "pin", "item_id": "7", "position": 0, "surface": "home"}, "greater than or equal to 1"),
        ({"kind": "pin", "item_id": "7", "position": 2, "surface": "home", "category": "Drama"}, "does not take category"),
        ({"kind": "pin", "item_id": "7", "position": 2, "surface": "home", "factor": 2}, "does not take factor"),
        # the audit's findings: each was accepted by the API and then failed every list
        ({"kind": "block", "item_id": "172", "category": "Animation"}, "exactly one of item_id or category"),
        ({"kind": "block", "item_id": "7", "position": 3}, "a block does not take position"),
        ({"kind": "block", "item_id": "7", "factor": 2}, "a block does not take factor"),
        ({"kind": "boost", "item_id": "7", "factor": 2, "position": 1}, "a boost does not take position"),
        ({"kind": "boost", "item_id": "7", "factor": 11}, "less than or equal to 10"),
        ({"kind": "block"}, "a block needs exactly one of item_id or category"),
        ({"kind": "boost", "item_id": "7", "category": "Drama", "factor": 2}, "exactly one of item_id or category"),
        ({"kind": "boost", "category": "Drama"}, "a boost needs a factor > 0"),
        ({"kind": "boost", "category": "Drama", "factor": 0}, "greater than 0"),
        ({"kind": "mute", "item_id": "7"}, "'pin', 'block' or 'boost'"),
        ({"kind": "block", "item_id": "7", "operator": ""}, "at least 1 character"),
    ],
)
def test_invalid_intervention_is_rejected(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        Intervention.model_validate(intervention(**fields))


def test_intervention_activity_and_surface() -> None:
    pin = Intervention.model_validate(intervention(kind="pin", item_id="7", position=2, surface="home"))
    assert pin.is_active(NOW) and pin.applies_to("home") and not pin.applies_to("trending")
    expired = pin.model_copy(update={"expires_at": NOW - timedelta(seconds=1)})
    assert not expired.is_active(NOW)
    naive = pin.model_copy(update={"expires_at": datetime(2026, 1, 2)})  # SQLite hands back naive UTC
    assert naive.is_active(NOW)
    assert not pin.model_copy(update={"revoked_at": NOW}).is_active(NOW)
    everywhere = pin.model_copy(update={"surface": None})
    assert everywhere.applies_to("trending")


# ------------------------------------------------------------------------------------------------
# build_rules
# ------------------------------------------------------------------------------------------------
def test_front_screen_slots_only_on_configured_surface_and_page() -> None:
    config = PolicyConfig()
    rules, order = build_rules(config, "home", 0, now=NOW)
    assert [type(r) for r in rules] == [UniqueItems, UniqueContent, Dispersal, SessionShareCap, PoolSlots]
    assert rules[4] == PoolSlots(tuple(range(10)), "mainstream", name=FRONT_SCREEN, count=2)
    assert rules[2] == Dispersal(5, 2, attribute="category", across_pages=True, name=DISPERSAL)
    assert [r.name for r in rules] == [ITEM_DEDUP, CONTENT_DEDUP, DISPERSAL, SESSION_DIVERSITY, FRONT_SCREEN]
    assert order == (SESSION_DIVERSITY, DISPERSAL, FRONT_SCREEN, CONTENT_DEDUP)
    for surface, page in (("home", 1), ("trending", 0)):
        names = [r.name for r in build_rules(config, surface, page, now=NOW)[0]]
        assert FRONT_SCREEN not in names
    no_content = PolicyConfig.model_validate({"dedup": {"content": False}})
    assert CONTENT_DEDUP not in [r.name for r in build_rules(no_content, "home", 0, now=NOW)[0]]


def test_interventions_become_pins_blocks_and_boosts_for_this_request() -> None:
    item_index = {"m7": 70, "m8": 80, "m9": 90, "m10": 100}
    categories = {"Drama": 3, "Comedy": 4}
    interventions = [
        intervention(id=1, kind="pin", item_id="m7", position=2, surface="home"),
        intervention(id=2, kind="pin", item_id="m8", position=3, surface="trending"),  # other surface
        intervention(id=3, kind="pin", item_id="m9", position=1, surface=None, page=1),  # other page
        intervention(id=4, kind="pin", item_id="m10", position=4, expires_at=NOW - timedelta(days=1)),  # expired
        intervention(id=5, kind="boost", category="Drama", factor=1.5),
        intervention(id=6, kind="boost", item_id="m8", factor=2.0, surface="home"),
        intervention(id=7, kind="block", item_id="m9"),
        intervention(id=8, kind="block", category="Comedy"),
        intervention(id=9, kind="block", item_id="unknown-id"),  # skipped, logged
        intervention(id=10, kind="boost", category="Horror", factor=3.0),  # skipped, logged
        intervention(id=11, kind="pin", item_id="m8", position=5, revoked_at=NOW - timedelta(hours=1)),
    ]
    rules, _ = build_rules(PolicyConfig(), "home", 0, interventions, item_index=item_index,
                           category_index=categories, now=NOW)
    extra = [r for r in rules if r.name in (PIN, BOOST, BLOCK)]
    assert extra == [
        Boost(category=3, factor=1.5, name=BOOST),
        Boost(item=80, factor=2.0, name=BOOST),
        Exclude(frozenset({90}), attribute="item", name=BLOCK),
        Exclude(frozenset({4}), attribute="category", name=BLOCK),
        Pin(1, 70, name=PIN),
    ]


def test_newest_pin_wins_a_contested_position() -> None:
    older = intervention(id=1, kind="pin", item_id=5, position=1, created_at=NOW - timedelta(days=1))
    newer = intervention(id=2, kind="pin", item_id=6, position=1, created_at=NOW)
    rules, order = build_rules(PolicyConfig(), "home", 0, [older, newer], now=NOW)
    pins = [r for r in rules if isinstance(r, Pin)]
    assert pins == [Pin(0, 6, name=PIN), Pin(0, 5, name=PIN)]
    c = catalogue(np.random.default_rng(0), 30)
    slate = select(c, 10, rules, SlateContext(), order)
    assert slate.items[0] == 6 and slate.slots[0] == "pinned"
    assert [v.rule for v in slate.violations] == [PIN]  # the older pin is reported, not silently lost


@pytest.mark.parametrize(
    ("surface", "page", "message"),
    [("", 0, "surface must be a non-empty string"), ("home", -1, "page must be an integer >= 0")],
)
def test_build_rules_rejects_bad_request_fields(surface, page, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_rules(PolicyConfig(), surface, page)


def test_build_rules_names_a_malformed_stored_intervention() -> None:
    with pytest.raises(ValueError, match="invalid intervention 42"):
        build_rules(PolicyConfig(), "home", 0, [intervention(id=42, kind="pin", item_id="m1")])


# ------------------------------------------------------------------------------------------------
# End to end through the engine
# ------------------------------------------------------------------------------------------------
def catalogue(rng: np.random.Generator, n: int, categories: int = 8, pool_share: float = 0.2) -> CandidateSet:
    return CandidateSet(
        item=np.arange(n, dtype=np.int64),
        score=rng.random(n).astype(np.float32),
        category=rng.integers(0, categories, n),
        content=rng.permutation(10 * n)[:n],
        source=np.where(rng.random(n) < pool_share, Source.MAINSTREAM, Source.RANKED).astype(np.int8),
        pools={"mainstream": rng.random(n) < pool_share},
    )


@settings(max_examples=60, deadline=None)
@given(configs, st.integers(0, 2**16), st.integers(1, 20), st.sampled_from(["home", "trending"]))
def test_served_pages_follow_the_declared_policy(config: PolicyConfig, seed: int, k: int, surface: str) -> None:
    rng = np.random.default_rng(seed)
    c = catalogue(rng, 200, categories=12, pool_share=0.3)
    context = SlateContext()
    shown: set[int] = set()
    for page in range(3):
        rules, order = build_rules(config, surface, page, now=NOW)
        slate = select(c, k, rules, context, order)
        assert len(slate) == k  # 200 distinct candidates: always enough
        assert not shown & set(slate.items.tolist())
        shown |= set(slate.items.tolist())
        # With 12 categories and 60 pool items nothing needs to give way.
        assert slate.violations == () and slate.relaxed == ()
        front = surface in config.front_screen.surfaces and page in config.front_screen.pages
        for position in config.front_screen.positions:
            if position <= k:
                assert (slate.slots[position - 1] == "mainstream") == front
        context = context.after(slate, c)


def test_rules_that_give_way_are_the_ones_declared() -> None:
    # Two categories cannot meet "at most 1 in 3"; with dispersal declared relaxable it gives way
    # and is reported; with an empty relaxation order the page stops short instead.
    rng = np.random.default_rng(3)
    c = catalogue(rng, 40, categories=2)
    strict = PolicyConfig.model_validate({"dispersal": {"window": 3, "max_per_window": 1}, "relaxation_order": [],
                                          "session_diversity": {"enabled": False}})
    lenient = strict.model_copy(update={"relaxation_order": [DISPERSAL]})
    rules, order = build_rules(lenient, "trending", 0, now=NOW)
    slate = select(c, 10, rules, SlateContext(), order)
    assert len(slate) == 10 and slate.relaxed == (DISPERSAL,)
    assert {v.rule for v in slate.violations} == {DISPERSAL}
    rules, order = build_rules(strict, "trending", 0, now=NOW)
    short = select(c, 10, rules, SlateContext(), order)
    assert len(short) < 10 and {v.rule for v in short.violations} == {"slate_size"}


def test_describe_states_the_configured_numbers() -> None:
    config = PolicyConfig.model_validate(
        {"dispersal": {"window": 6, "max_per_window": 1}, "front_screen": {"positions": [2, 7]},
         "relaxation_order": [DISPERSAL]}
    )
    texts = {t.name: t for t in describe(config)}
    assert set(texts) == {ITEM_DEDUP, CONTENT_DEDUP, DISPERSAL, FRONT_SCREEN, SESSION_DIVERSITY, "fewer_like_this",
                          "interventions", "relaxation"}
    assert "In any 6 consecutive positions, at most 1" in texts[DISPERSAL].text
    assert "positions 2 and 7" in texts[FRONT_SCREEN].text and texts[FRONT_SCREEN].articles == (11,)
    assert "Never relaxed: Session diversity (no information cocoon), Front screen, Content de-duplication" in \
        texts["relaxation"].text
    assert all(t.articles for t in texts.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["A", "B", "C", None]), max_size=30), st.integers(2, 6), st.integers(1, 3))
def test_dispersal_violations_are_the_positions_that_break_the_rule(categories, window, limit):
    """The review's measure (Art. 8) follows the rule's definition, and agrees with the black-box
    auditor's own reading of it (auditor/articles/lists.py, written apart on purpose)."""
    from auditor.articles.lists import dispersal_violations as auditor_reading

    by_definition = [i for i, value in enumerate(categories) if value is not None
                     and categories[max(0, i - window + 1): i + 1].count(value) > limit]
    assert dispersal_violations(categories, window, limit) == by_definition
    assert auditor_reading(categories, window, limit) == by_definition


# ------------------------------------------------------------------------------------------------
# Front screen: fixed slots (any config that lists positions only) and "at least n of these"
# ------------------------------------------------------------------------------------------------
def test_a_config_listing_positions_keeps_exactly_those_slots() -> None:
    legacy = PolicyConfig.model_validate({"front_screen": {"positions": [1, 5]}})
    assert legacy.front_screen.count is None and legacy.front_screen.required == 2
    rules, _ = build_rules(legacy, "home", 0, now=NOW)
    assert rules[-1] == PoolSlots((0, 4), "mainstream", name=FRONT_SCREEN)
    text = {t.name: t.text for t in describe(legacy)}[FRONT_SCREEN]
    assert "positions 1 and 5 show items from the editorial 'mainstream' pool" in text and "at least" not in text
    # Round trips keep the form: the dump names count None, the default dump count 2.
    assert PolicyConfig.model_validate(legacy.model_dump()) == legacy
    assert PolicyConfig.model_validate(PolicyConfig().model_dump()) == PolicyConfig()


def test_at_least_n_of_a_set_of_positions() -> None:
    config = PolicyConfig.model_validate({"front_screen": {"positions": [1, 2, 3, 4, 5, 6], "count": 3}})
    rules, _ = build_rules(config, "home", 0, now=NOW)
    assert rules[-1] == PoolSlots((0, 1, 2, 3, 4, 5), "mainstream", name=FRONT_SCREEN, count=3)
    text = {t.name: t.text for t in describe(config)}[FRONT_SCREEN]
    assert "at least 3 of positions 1 to 6 show items from the editorial 'mainstream' pool" in text
    # n equal to the positions listed is the fixed form
    every = PolicyConfig.model_validate({"front_screen": {"positions": [2, 4], "count": 2}})
    assert build_rules(every, "home", 0, now=NOW)[0][-1] == PoolSlots((1, 3), "mainstream", name=FRONT_SCREEN)
    default = {t.name: t.text for t in describe(PolicyConfig())}[FRONT_SCREEN]
    assert "at least 2 of positions 1 to 10" in default


@pytest.mark.parametrize(
    ("front", "message"),
    [({"positions": [1, 5], "count": 3}, r"front_screen.count \(3\) exceeds the 2 positions listed"),
     ({"count": 0}, "greater than or equal to 1"),
     ({"positions": [1, 5, 5], "count": 1}, "must not repeat")],
)
def test_bad_front_screen_counts_are_refused(front: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig.model_validate({"front_screen": front})


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 20), st.floats(0.0, 0.4))
def test_default_front_screen_carries_two_editorial_items_or_reports_it(seed: int, k: int, pool_share: float) -> None:
    # The default rule on any candidate set: >= min(2, k) mainstream items in the first 10, each
    # labelled as an editorial pick; when the pool cannot supply them, the gap is reported.
    rng = np.random.default_rng(seed)
    c = catalogue(rng, 60, categories=12, pool_share=pool_share)
    rules, order = build_rules(PolicyConfig(), "home", 0, now=NOW)
    slate = select(c, k, rules, SlateContext(), order)
    pool = c.pools["mainstream"]
    front = [p for p in range(min(10, len(slate))) if pool[slate.indices[p]]]
    required = min(2, len(slate))
    reported = [v for v in slate.violations if v.rule == FRONT_SCREEN]
    assert len(slate) == k and len(set(slate.items.tolist())) == k
    if int(pool.sum()) >= required:
        assert len(front) >= required and not reported
    else:
        assert len(front) == int(pool.sum()) and len(reported) == required - len(front)
    assert [p for p, name in enumerate(slate.slots) if name == "mainstream"] == front[:required]
