"""Hot-list snapshots (Art. 11, Art. 14 (draft 13), Art. 28 (draft 24); the 2024-25 hot-list campaign): a snapshot recomputes to the
same bits from its events, whatever order they are read in; a changed event, account fact or served
list is named; pins hold their positions. The server-side path is tested over HTTP in
tests/e2e/test_trending_verify.py."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.trending import TRENDING_RULES, FLAG_RULES, TrendingConfig, TrendingItem, compute_trending
from compliance.trending_snapshot import (
    AccountFacts,
    EventsRef,
    Exclusion,
    ManualChange,
    TrendingSnapshot,
    compare,
    compose_hot_list,
    events_digest,
    events_frame,
    outputs,
    recompute,
    verify_served,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
US = 1_000_000


def random_rows(seed: int, n_events: int) -> list[dict]:
    """Genuine users browsing, fresh accounts piling onto one item, resent ids, late and early events."""
    rng = random.Random(seed)
    rows = []
    for n in range(n_events):
        fake = rng.random() < 0.4
        user = f"fake{rng.randrange(40)}" if fake else f"user{rng.randrange(60)}"
        item = "target" if fake and rng.random() < 0.8 else f"item{rng.randrange(12)}"
        rows.append({"event_id": f"e{n}", "user_id": user, "item_id": item,
                     "type": rng.choice(["impression", "click", "like", "share"]),
                     "ts": NOW - timedelta(microseconds=rng.randrange(-60 * US, 26 * 3600 * US))})
    return rows


def facts_for(rows: list[dict], seed: int) -> AccountFacts:
    rng = random.Random(seed)
    users = sorted({r["user_id"] for r in rows})
    created = [None if rng.random() < 0.1 else int((NOW - timedelta(days=rng.uniform(0, 60))).timestamp() * US)
               for _ in users]
    return AccountFacts(user_id=users, created_us=created,
                        prior_event_items=[0 if u.startswith("fake") else rng.randrange(0, 4) for u in users],
                        prior_trained_items=[0 if u.startswith("fake") else rng.randrange(0, 30) for u in users])


def snapshot_of(rows: list[dict], seed: int = 0, config: TrendingConfig | None = None,
                exclusions: list[Exclusion] | None = None) -> TrendingSnapshot:
    """A snapshot taken the way the server takes one: inputs first, outputs from `recompute`."""
    config = config or TrendingConfig()
    events = events_frame(rows)
    snapshot = TrendingSnapshot(
        snapshot_id="0190b3c4-0000-7000-8000-000000000000", as_of=NOW, config=config, top_n=100, max_age_rating=None,
        model_version="1",
        events=EventsRef(window_start=NOW - timedelta(hours=config.window_hours), received_by=NOW,
                         count=events.height, digest=events_digest(events)),
        accounts=facts_for(rows, seed), exclusions=exclusions or [],
    )
    return snapshot.model_copy(update=outputs(recompute(snapshot, events)))


def through_the_log(snapshot: TrendingSnapshot) -> TrendingSnapshot:
    """What `recsys trending verify` reads back: the JSON the log store keeps."""
    return TrendingSnapshot.model_validate(json.loads(json.dumps(snapshot.model_dump(mode="json"))))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_events=st.integers(0, 400))
def test_a_snapshot_recomputes_to_the_same_bits_from_its_events_read_in_any_order(seed, n_events):
    rows = random_rows(seed, n_events)
    snapshot = through_the_log(snapshot_of(rows, seed))
    shuffled = rows[:]
    random.Random(seed + 1).shuffle(shuffled)
    events = events_frame(shuffled)
    assert events_digest(events) == snapshot.events.digest
    assert compare(snapshot, recompute(snapshot, events)) == []
    # and compute_trending itself does not depend on the order of its rows
    frame = pl.DataFrame(shuffled, schema=events.schema) if shuffled else events
    direct = compute_trending(frame, snapshot.accounts.frame(), NOW, snapshot.config, top_n=100)
    assert [vars(i) for i in direct.items] == snapshot.items


def test_a_changed_event_account_fact_or_exclusion_is_named():
    rows = random_rows(3, 600)
    snapshot = through_the_log(snapshot_of(rows, 3))
    assert snapshot.items and snapshot.filtered  # fake accounts were discounted and recorded
    top = snapshot.items[0]["item_id"]
    events = events_frame([{**r, "item_id": "item99"} if r["item_id"] == top else r for r in rows])
    assert events_digest(events) != snapshot.events.digest
    problems = compare(snapshot, recompute(snapshot, events))
    assert problems and problems[0].startswith("item 1: served"), problems
    added = events_frame(rows + [{**rows[0], "event_id": "late", "user_id": "user1", "item_id": "item3", "type": "like"}])
    assert events_digest(added) != snapshot.events.digest
    facts = snapshot.accounts
    trusted = snapshot.model_copy(update={"accounts": facts.model_copy(update={
        "prior_trained_items": [30] * len(facts.user_id), "created_us": [0] * len(facts.user_id)})})
    assert any("filtered accounts" in line for line in compare(trusted, recompute(trusted, events_frame(rows))))
    hidden = snapshot.model_copy(update={"exclusions": [Exclusion(item_id=top, reason="flagged")]})
    assert any(line.startswith("item 1:") for line in compare(hidden, recompute(hidden, events_frame(rows))))


def test_the_snapshot_records_what_each_rule_discounted():
    snapshot = snapshot_of(random_rows(5, 500), 5)
    rules = {rule for _, _, rule in snapshot.filtered}
    assert rules and rules <= set(FLAG_RULES)
    assert {rule: snapshot.discounted[rule] for rule in rules} == {
        rule: sum(1 for row in snapshot.filtered if row[2] == rule) for rule in rules}
    assert all(item["item_id"] != "target" for item in snapshot.items[:3])


items_strategy = st.lists(st.sampled_from([f"i{n}" for n in range(30)]), unique=True, max_size=20)


@given(ranked_ids=items_strategy, pin_spec=st.lists(st.tuples(st.sampled_from([f"i{n}" for n in range(30)]),
                                                           st.integers(1, 12)), max_size=4, unique_by=lambda p: p[0]),
       k=st.integers(1, 15))
def test_pins_hold_their_positions_and_the_ranked_items_fill_the_rest_in_order(ranked_ids, pin_spec, k):
    ranked = [TrendingItem(item_id=i, score=float(30 - n), distinct_users=3, counted_users=3) for n, i in enumerate(ranked_ids)]
    pins = [ManualChange(id=n, kind="pin", item_id=i, position=p, operator="ed", reason="news") for n, (i, p) in enumerate(pin_spec)]
    served = compose_hot_list(ranked, pins, k)
    positions = [position for position, *_ in served]
    assert positions == list(range(1, len(served) + 1)) and len(served) <= k
    ids = [item_id for _, item_id, _, _ in served]
    assert len(ids) == len(set(ids)) or len({p.item_id for p in pins}) < len(pins)
    for position, item_id, item, pin in served:
        if pin is not None:
            assert pin.position == position and pin.item_id == item_id and item is None
    first_pin = {}
    for pin in sorted(pins, key=lambda p: p.position or 0):
        first_pin.setdefault(pin.position, pin)
    for position, pin in first_pin.items():
        if position <= len(served):
            assert served[position - 1][3] == pin
    organic = [item_id for _, item_id, item, _ in served if item is not None]
    pinned = {p.item_id for p in pins}
    assert organic == [i for i in ranked_ids if i not in pinned][: len(organic)]


def test_a_served_list_that_differs_from_the_recomposition_is_named():
    snapshot = snapshot_of(random_rows(8, 500), 8)
    result = recompute(snapshot, events_frame(random_rows(8, 500)))
    served = [{"position": p, "item_id": i, "score": None if item is None else round(item.score, 4)}
              for p, i, item, _ in compose_hot_list(result.items, snapshot.pins, 5)]
    assert verify_served(snapshot, result, served) is None
    swapped = [dict(s) for s in served]
    swapped[0]["item_id"], swapped[1]["item_id"] = swapped[1]["item_id"], swapped[0]["item_id"]
    assert verify_served(snapshot, result, swapped).startswith("position 1: served")
    assert verify_served(snapshot, result, served[:-1] + [{**served[-1], "score": 99.0}]) is not None


def test_every_rule_is_declared_once_with_its_article_and_real_config_fields():
    names = [rule.name for rule in TRENDING_RULES]
    assert len(names) == len(set(names))
    assert set(FLAG_RULES) <= set(names)
    fields = set(TrendingConfig.model_fields)
    for rule in TRENDING_RULES:
        assert rule.article.startswith("Art. ") and set(rule.parameters) <= fields, rule
        assert rule.summary and rule.summary[0].isupper()
    read = {p for rule in TRENDING_RULES for p in rule.parameters}
    assert fields - read == set(), fields - read  # every knob is published with a rule that reads it
