"""Trending (Art. 11, Art. 14 (draft 13)): distinct users, decay, account-trust, burst and lockstep rules, and an attack.

The patient-attacker scenarios (drips, decoys, aged empty accounts, clusters) are in
test_trending_adversarial.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.trending import TrendingConfig, TrendingInputError, compute_trending

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
LOOSE = TrendingConfig(min_distinct_users=1)


def frame(rows: list[tuple[str, str, str, datetime]]) -> pl.DataFrame:
    """Events from (user, item, type, ts) rows, with fresh event ids."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "ts": [r[3] for r in rows],
        },
        schema={"event_id": pl.Utf8, "user_id": pl.Utf8, "item_id": pl.Utf8, "type": pl.Utf8,
                "ts": pl.Datetime("us", "UTC")},
    )


def old_accounts(rows) -> dict[str, datetime]:
    return {r[0]: OLD for r in rows}


def accounts_frame(created: dict[str, datetime | None], prior: dict[str, int | None]) -> pl.DataFrame:
    users = list(created)
    return pl.DataFrame(
        {"user_id": users, "created_at": [created[u] for u in users], "prior_items": [prior.get(u) for u in users]},
        schema={"user_id": pl.Utf8, "created_at": pl.Datetime("us", "UTC"), "prior_items": pl.Int64},
    )


def scores(result) -> dict[str, float]:
    return {item.item_id: item.score for item in result.items}


# -- single rules --------------------------------------------------------------------------------
def test_score_is_decayed_type_weight_of_each_users_strongest_event():
    rows = [
        ("u1", "a", "share", NOW - timedelta(hours=6)),  # 3 * 0.5 = 1.5
        ("u1", "a", "click", NOW),  # 1.0: weaker than the decayed share
        ("u2", "a", "impression", NOW),  # weight 0
        ("u3", "a", "like", NOW - timedelta(hours=12)),  # 2 * 0.25
    ]
    result = compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE)
    assert scores(result) == pytest.approx({"a": 1.5 + 0.5})
    item = result.items[0]
    assert (item.distinct_users, item.counted_users) == (2, 2)
    assert result.discounted["zero_weight_type"] == 1 and result.discounted["repeat_engagement"] == 1


def test_window_future_duplicates_and_unknown_types_are_dropped_and_counted():
    rows = [
        ("u1", "a", "click", NOW - timedelta(hours=25)),
        ("u2", "a", "click", NOW + timedelta(hours=1)),
        ("u3", "a", "follow", NOW),
        ("u4", "a", "click", NOW),
    ]
    events = frame(rows)
    events = pl.concat([events, events.tail(1)])  # a resent event id
    result = compute_trending(events, old_accounts(rows), NOW, LOOSE)
    assert scores(result) == pytest.approx({"a": 1.0})
    d = result.discounted
    assert (d["outside_window"], d["future_events"], d["unknown_type"], d["duplicate_event_id"]) == (1, 1, 1, 1)


def test_new_and_unknown_accounts_weigh_less_and_the_switch_turns_it_off():
    rows = [("new", "a", "click", NOW), ("unknown", "a", "click", NOW), ("old", "a", "click", NOW)]
    accounts = {"new": NOW - timedelta(days=2), "old": OLD}
    # with history: new and unknown-created accounts are worth new_account_weight
    with_history = accounts_frame(accounts | {"unknown": None}, {"new": 10, "unknown": 10, "old": 10})
    result = compute_trending(frame(rows), with_history, NOW, LOOSE)
    assert scores(result)["a"] == pytest.approx(1.0 + 0.2 + 0.2)
    assert result.discounted["new_account"] == 2 and result.discounted["no_history"] == 0
    # the mapping form carries no history: for a new or unknown-created account that counts as none
    # (rule changed: they were worth new_account_weight before prior_items existed)
    result = compute_trending(frame(rows), accounts, NOW, LOOSE)
    assert scores(result)["a"] == pytest.approx(1.0)
    assert result.discounted["new_account"] == 2 and result.discounted["no_history"] == 2
    unfiltered = compute_trending(frame(rows), accounts, NOW, LOOSE.without_filters())
    assert scores(unfiltered)["a"] == pytest.approx(3.0)


def test_burst_of_new_accounts_is_zeroed_on_that_item_only():
    burst_start = NOW - timedelta(hours=3)
    rows = [(f"fresh{i}", "target", "share", burst_start + timedelta(minutes=i)) for i in range(12)]
    rows += [(f"fresh{i}", "other", "click", NOW - timedelta(hours=10 - i)) for i in range(3)]
    rows += [(f"old{i}", "target", "click", NOW - timedelta(hours=i)) for i in range(5)]
    rows += [("old0", "other", "click", NOW - timedelta(hours=10))]
    created = {f"fresh{i}": NOW - timedelta(days=1) for i in range(12)} | {f"old{i}": OLD for i in range(5)}
    accounts = accounts_frame(created, dict.fromkeys(created, 10))  # fresh accounts with some history
    result = compute_trending(frame(rows), accounts, NOW, LOOSE)
    assert result.discounted["burst"] == 12
    expected_target = sum(math.exp(-math.log(2) * i / 6) for i in range(5))
    assert scores(result)["target"] == pytest.approx(expected_target)
    old0_on_other = 2 ** (-10 / 6)
    assert scores(result)["other"] > old0_on_other  # spread out, not a burst: only the new-account discount
    flagged = result.flagged.filter(pl.col("rule") == "burst")
    assert set(flagged["item_id"]) == {"target"} and flagged.height == 12


def test_lockstep_group_counts_as_one_user_per_item():
    items = ["t", "c1", "c2", "c3"]
    rows = [(f"bot{b}", item, "like", NOW - timedelta(hours=2 + b / 10)) for b in range(25) for item in items]
    rows += [(f"bot{b}", "c4", "like", NOW - timedelta(hours=1)) for b in range(5)]  # a few vary a bit
    result = compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE)
    assert result.discounted["lockstep_groups"] == 1 and result.discounted["lockstep_accounts"] == 25
    target = next(i for i in result.items if i.item_id == "t")
    assert (target.distinct_users, target.counted_users) == (25, 1)
    assert target.score == pytest.approx(2 * 2 ** (-2 / 6))  # the group's strongest contribution
    too_small = compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE.model_copy(update={"lockstep_min_group": 26}))
    assert too_small.discounted["lockstep_accounts"] == 0


def test_min_users_catalogue_blocked_and_minor_safe_eligibility():
    rows = [(f"u{i}", item, "click", NOW) for i in range(3) for item in ("a", "b", "c", "ghost")]
    rows += [("u0", "solo", "click", NOW)]
    catalog = ["a", "b", "c", "solo"]
    result = compute_trending(
        frame(rows), old_accounts(rows), NOW, TrendingConfig(min_distinct_users=2), catalog_item_ids=catalog,
        blocked=np.array([False, True, False, False]), minor_safe=np.array([True, True, False, True]),
    )
    assert result.item_ids == ["a"]
    d = result.discounted
    assert (d["not_in_catalog"], d["blocked_item"], d["not_minor_safe"], d["below_min_users"]) == (1, 1, 1, 1)


def test_ties_break_by_item_id_and_top_n_limits_the_list():
    rows = [(f"u{i}", item, "click", NOW) for i in range(3) for item in ("b", "a", "c")]
    result = compute_trending(frame(rows), old_accounts(rows), NOW, TrendingConfig(), top_n=2)
    assert result.item_ids == ["a", "b"]


def test_bad_inputs_name_the_column_or_argument():
    rows = [("u1", "a", "click", NOW)]
    with pytest.raises(TrendingInputError, match="missing column"):
        compute_trending(frame(rows).drop("ts"), {}, NOW)
    with pytest.raises(TrendingInputError, match="'ts' must be a datetime or unix seconds"):
        compute_trending(frame(rows).with_columns(pl.lit("yesterday").alias("ts")), {}, NOW)
    with pytest.raises(TrendingInputError, match="need catalog_item_ids"):
        compute_trending(frame(rows), {}, NOW, minor_safe=np.array([True]))
    with pytest.raises(TrendingInputError, match="minor_safe: must be a bool array"):
        compute_trending(frame(rows), {}, NOW, catalog_item_ids=["a"], minor_safe=np.array([1, 0]))
    with pytest.raises(ValueError, match="event_weights"):
        TrendingConfig(event_weights={"click": -1.0})


def test_unix_seconds_naive_datetimes_and_account_frames_are_accepted():
    rows = [("u1", "a", "click", NOW - timedelta(hours=6))]
    seconds = frame(rows).with_columns(pl.col("ts").dt.epoch("s"))
    naive = frame(rows).with_columns(pl.col("ts").dt.replace_time_zone(None))
    accounts = pl.DataFrame({"user_id": ["u1"], "created_at": [OLD]})
    for events in (seconds, naive):
        assert scores(compute_trending(events, accounts, NOW, LOOSE)) == pytest.approx({"a": 0.5})


# -- properties -------------------------------------------------------------------------------------
TYPES = st.sampled_from(["impression", "click", "like", "share"])
EVENT = st.tuples(st.integers(0, 9), st.sampled_from(["a", "b", "c"]), TYPES, st.floats(0, 23.9))


def rows_from(spec) -> list[tuple[str, str, str, datetime]]:
    return [(f"u{u}", item, kind, NOW - timedelta(hours=age)) for u, item, kind, age in spec]


@settings(max_examples=40, deadline=None)
@given(spec=st.lists(EVENT, max_size=30), extra_type=st.sampled_from(["click", "like", "share"]), age=st.floats(0, 23.9))
def test_property_score_is_monotone_in_distinct_genuine_users(spec, extra_type, age):
    rows = rows_from(spec)
    before = scores(compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE)) if rows else {}
    more = rows + [("newcomer", "a", extra_type, NOW - timedelta(hours=age))]
    after = scores(compute_trending(frame(more), old_accounts(more), NOW, LOOSE))
    assert after["a"] > before.get("a", 0.0)
    assert {k: v for k, v in after.items() if k != "a"} == pytest.approx({k: v for k, v in before.items() if k != "a"})


@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(TYPES, min_size=1, max_size=40), ages=st.lists(st.floats(0, 23.9), min_size=40, max_size=40))
def test_property_a_users_repeated_events_never_count_more_than_once(kinds, ages):
    rows = [("u1", "a", kind, NOW - timedelta(hours=age)) for kind, age in zip(kinds, ages, strict=False)]
    result = compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE)
    strongest = max(LOOSE.event_weights[k] * 2 ** (-age / 6) for k, age in zip(kinds, ages, strict=False))
    assert scores(result).get("a", 0.0) == pytest.approx(strongest)
    assert all(item.distinct_users == 1 for item in result.items)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["click", "like", "share"]), younger=st.floats(0, 23.9), older=st.floats(0, 23.9))
def test_property_decay_is_monotone_in_age(kind, younger, older):
    younger, older = sorted((younger, older))
    score = {}
    for age in (younger, older):
        rows = [("u1", "a", kind, NOW - timedelta(hours=age))]
        score[age] = scores(compute_trending(frame(rows), old_accounts(rows), NOW, LOOSE))["a"]
    assert score[younger] >= score[older]


# -- the simulated attack ---------------------------------------------------------------------------
def organic_population(rng, n_users=2000, n_items=300):
    """Genuine users with Zipf item preferences over 24 h; 3% of them joined in the last week."""
    popularity = 1 / np.arange(1, n_items + 1)
    popularity /= popularity.sum()
    item_by_rank = rng.permutation(n_items)
    per_user = rng.poisson(10, n_users) + 1
    users = np.repeat(np.arange(n_users), per_user)
    items = item_by_rank[rng.choice(n_items, size=users.size, p=popularity)]
    kinds = rng.choice(["impression", "click", "like", "share"], size=users.size, p=[0.6, 0.3, 0.07, 0.03])
    ages = rng.uniform(0, 24 * 3600, users.size)
    joined_days = np.where(rng.random(n_users) < 0.03, rng.uniform(0, 7, n_users), rng.uniform(30, 2000, n_users))
    rows = [(f"u{u}", f"i{i}", str(k), NOW - timedelta(seconds=float(a))) for u, i, k, a in zip(users, items, kinds, ages, strict=True)]
    accounts = {f"u{u}": NOW - timedelta(days=float(d)) for u, d in enumerate(joined_days)}
    return rows, accounts, [f"i{i}" for i in item_by_rank]


def fake_accounts(rng, target, covers, n_fake=200):
    """Accounts created in the last day that click, like and share the same items within 40 minutes."""
    start = NOW - timedelta(hours=2)
    rows, accounts = [], {}
    for f in range(n_fake):
        accounts[f"fake{f}"] = NOW - timedelta(hours=float(rng.uniform(3, 20)))
        for item in (target, *covers):
            moment = start + timedelta(minutes=float(rng.uniform(0, 40)))
            rows += [(f"fake{f}", item, kind, moment) for kind in ("click", "like", "share")]
    return rows, accounts


@pytest.fixture(scope="module")
def attacked():
    rng = np.random.default_rng(7)
    rows, accounts, by_rank = organic_population(rng)
    target, covers = by_rank[200], [by_rank[40], by_rank[60], by_rank[80]]
    fake_rows, fake_accounts_created = fake_accounts(rng, target, covers)
    # history: organic users have engaged at least 5 items before the window; the fakes come with a
    # bought history of 10 items, so that only their age, the burst and the lockstep rules catch them
    # (fakes with no history count for nothing at all: see test_trending_adversarial.py)
    history = np.random.default_rng(70)
    prior = {user: 5 + int(history.poisson(40)) for user in accounts} | dict.fromkeys(fake_accounts_created, 10)
    return frame(rows), frame(rows + fake_rows), accounts_frame(accounts | fake_accounts_created, prior), target


def test_attack_pushes_the_target_into_the_top_10_only_without_the_filters(attacked):
    _, events, accounts, target = attacked
    unfiltered = compute_trending(events, accounts, NOW, TrendingConfig().without_filters(), top_n=10)
    assert target in unfiltered.item_ids
    filtered = compute_trending(events, accounts, NOW, TrendingConfig(), top_n=10)
    assert target not in filtered.item_ids
    d = filtered.discounted
    assert d["burst"] >= 200 and d["lockstep_accounts"] == 200 and d["lockstep_groups"] == 1
    # flagged now lists every discounted contribution (also the new-account discount of organic
    # newcomers); the burst and lockstep rules flag the fakes only
    groups = filtered.flagged.filter(pl.col("rule").is_in(["burst", "lockstep"]))
    flagged_fakes = set(groups["user_id"])
    assert all(user.startswith("fake") for user in flagged_fakes) and len(flagged_fakes) == 200


@pytest.mark.parametrize("only", ["burst", "lockstep"])
def test_burst_or_lockstep_alone_keeps_the_target_out(attacked, only):
    _, events, accounts, target = attacked
    config = TrendingConfig(burst_enabled=only == "burst", lockstep_enabled=only == "lockstep", cluster_enabled=False,
                            untrusted_max_share=1.0)
    assert target not in compute_trending(events, accounts, NOW, config, top_n=10).item_ids


def test_filters_leave_an_organic_top_10_unchanged(attacked):
    organic, _, accounts, _ = attacked
    filtered = compute_trending(organic, accounts, NOW, TrendingConfig(), top_n=10)
    unfiltered = compute_trending(organic, accounts, NOW, TrendingConfig().without_filters(), top_n=10)
    assert filtered.item_ids == unfiltered.item_ids
    assert filtered.discounted["burst"] == 0 and filtered.discounted["lockstep_accounts"] == 0


def test_no_events_give_an_empty_list():
    empty = frame([])
    result = compute_trending(empty, {}, NOW, catalog_item_ids=["a"], minor_safe=np.array([True]))
    assert result.items == () and result.flagged.height == 0
    assert result.to_dict()["items"] == []
