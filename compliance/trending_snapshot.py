"""Hot-list snapshots you can verify (Art. 11: hot lists are a key surface; Art. 14 (draft 13): no
manipulated lists; Art. 28 (draft 24): logs kept; the 2024-25 hot-list campaign: rules published,
hot-list logs kept).

A `TrendingSnapshot` is one computation of the hot list, as served: the rule config, the audience's
band, a digest of the events it was computed from and where to find them again in the state store
(the window, the moment they had to be received by, the ids received at that very moment), the
account facts the trust rules read, the event items the audience may not see (with the reason), the
manual changes in force (pins applied or withheld, blocks), and what came out (the ranked items,
what each rule discounted, every discounted contribution with its rule). It is logged before a list
that uses it is served; a cached list is the same snapshot.

`recompute` runs `compute_trending` from a snapshot's inputs and a set of events; the server computes
every list through it, so `verify` (the events again, the same inputs) reproduces it bit for bit or
names what differs, one line per mismatch. `compose_hot_list` places the pins and fills the rest
with the ranked items: the served list, recomposed by `verify_served` from a recomputation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from compliance.trending import EVENT_COLUMNS, TrendingConfig, TrendingItem, TrendingResult, compute_trending

SNAPSHOT_KIND = "trending_snapshot"  # the log record kind of a snapshot
SERVED_KIND = "trending"  # the log record kind of a served list (it names its snapshot_id)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_SCHEMA: dict[str, pl.DataType] = {"event_id": pl.Utf8(), "user_id": pl.Utf8(), "item_id": pl.Utf8(),
                                        "type": pl.Utf8(), "ts": pl.Datetime("us", "UTC")}
ACCOUNT_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Utf8(), "created_at": pl.Datetime("us", "UTC"),
                                          "prior_items": pl.Int64()}


class EventsRef(BaseModel):
    """Which stored events a snapshot was computed from, and their digest (`events_digest`).

    The events are those with `window_start <= ts` received by `received_by`; of those received at
    exactly `received_by`, only `boundary_event_ids` (later arrivals at the same instant came after)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_start: datetime
    received_by: datetime
    boundary_event_ids: list[str] = Field(default_factory=list)
    count: int = Field(ge=0)
    digest: str


class AccountFacts(BaseModel):
    """What the trust rules knew of each engaging account, column by column: creation time (epoch
    microseconds, None: no profile), distinct items in stored events before the window, and items in
    the model's training data (`prior_items` is their sum)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: list[str] = Field(default_factory=list)
    created_us: list[int | None] = Field(default_factory=list)
    prior_event_items: list[int] = Field(default_factory=list)
    prior_trained_items: list[int] = Field(default_factory=list)

    def frame(self) -> pl.DataFrame:
        """The `accounts` argument of `compute_trending`."""
        created = [None if us is None else EPOCH + timedelta(microseconds=us) for us in self.created_us]
        prior = [a + b for a, b in zip(self.prior_event_items, self.prior_trained_items, strict=True)]
        return pl.DataFrame({"user_id": self.user_id, "created_at": created, "prior_items": prior}, schema=ACCOUNT_SCHEMA)

    def rows(self) -> dict[str, tuple[int | None, int]]:
        """user_id -> (created_us, prior_event_items): the facts the state store can confirm."""
        return {u: (c, p) for u, c, p in zip(self.user_id, self.created_us, self.prior_event_items, strict=True)}


class Exclusion(BaseModel):
    """An event item the audience may not see, and why (not_in_catalog, flagged, feature_library,
    intervention:<id>, age_rating>N)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str
    reason: str


class ManualChange(BaseModel):
    """An operator's intervention in force for the list: a pin (applied, or withheld because the
    audience may not see the item) or a block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int | None
    kind: str  # pin | block
    item_id: str
    position: int | None = None
    operator: str
    reason: str
    applied: bool = True


class TrendingSnapshot(BaseModel):
    """One computation of the hot list: inputs (all but the last three fields) and outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_id: str
    as_of: datetime
    config: TrendingConfig
    top_n: int = Field(ge=1)
    max_age_rating: int | None  # the audience's band (None: no limit)
    model_version: str
    events: EventsRef
    accounts: AccountFacts
    exclusions: list[Exclusion] = Field(default_factory=list)
    manual_changes: list[ManualChange] = Field(default_factory=list)
    items: list[dict[str, Any]] = Field(default_factory=list)  # TrendingItem fields, best first
    discounted: dict[str, int] = Field(default_factory=dict)
    filtered: list[tuple[str, str, str]] = Field(default_factory=list)  # (user_id, item_id, rule), sorted

    @property
    def pins(self) -> list[ManualChange]:
        return [c for c in self.manual_changes if c.kind == "pin" and c.applied]

    def ranked(self) -> list[TrendingItem]:
        return [TrendingItem(**item) for item in self.items]


def events_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Stored event rows as `compute_trending` reads them, in one canonical order (by event id)."""
    frame = pl.DataFrame({c: [row[c] for row in rows] for c in EVENT_COLUMNS}, schema=EVENT_SCHEMA)
    return frame.sort("event_id")


def events_digest(events: pl.DataFrame) -> str:
    """sha256 of the events, one line per event in event-id order: id, user, item, type, ts (epoch us)."""
    lines = events.sort("event_id").select(
        pl.concat_str(
            [pl.col("event_id"), pl.col("user_id"), pl.col("item_id"), pl.col("type"),
             pl.col("ts").dt.epoch("us").cast(pl.Utf8)],
            separator="\t",
        )
    ).to_series()
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def recompute(snapshot: TrendingSnapshot, events: pl.DataFrame) -> TrendingResult:
    """`compute_trending` over `events` with the snapshot's inputs: its config, account facts and
    exclusions (the catalogue is the event items; excluded items are blocked)."""
    item_ids = sorted(set(events.get_column("item_id").to_list()))
    excluded = {e.item_id: e.reason for e in snapshot.exclusions}
    catalog = [i for i in item_ids if excluded.get(i) != "not_in_catalog"]
    blocked = np.array([i in excluded for i in catalog], dtype=bool)
    return compute_trending(events, snapshot.accounts.frame(), snapshot.as_of, snapshot.config, top_n=snapshot.top_n,
                            catalog_item_ids=catalog, blocked=blocked)


def outputs(result: TrendingResult) -> dict[str, Any]:
    """The output fields of a snapshot from a computation."""
    filtered = sorted(result.flagged.select("user_id", "item_id", "rule").iter_rows())
    return {"items": [vars(item) for item in result.items], "discounted": dict(result.discounted), "filtered": filtered}


def compose_hot_list(ranked: Sequence[TrendingItem], pins: Sequence[ManualChange], k: int) -> list[tuple[int, str, TrendingItem | None, ManualChange | None]]:
    """The served list: (position, item_id, the ranked item or None, the pin or None) for positions
    1..k; a pin holds its position, the ranked items (pinned ones left out) fill the others."""
    ordered = sorted(pins, key=lambda p: p.position or 0)
    pinned = {p.item_id for p in ordered}
    organic = [item for item in ranked if item.item_id not in pinned]
    served: list[tuple[int, str, TrendingItem | None, ManualChange | None]] = []
    for position in range(1, k + 1):
        pin = next((p for p in ordered if p.position == position), None)
        if pin is not None:
            served.append((position, pin.item_id, None, pin))
        elif organic:
            top = organic.pop(0)
            served.append((position, top.item_id, top, None))
        else:
            break
    return served


def compare(snapshot: TrendingSnapshot, result: TrendingResult) -> list[str]:
    """One line per difference between what a snapshot says was computed and a recomputation."""
    problems: list[str] = []
    again = outputs(result)
    served, recomputed = snapshot.items, again["items"]
    for position, (a, b) in enumerate(zip(served, recomputed, strict=False), start=1):
        if a != b:
            problems.append(f"item {position}: served {_item_text(a)}, recomputed {_item_text(b)}")
    if len(served) != len(recomputed):
        problems.append(f"items: served {len(served)}, recomputed {len(recomputed)}")
    changed = sorted(k for k in set(snapshot.discounted) | set(again["discounted"])
                     if snapshot.discounted.get(k) != again["discounted"].get(k))
    if changed:
        problems.append("discounted: " + ", ".join(
            f"{k} served {snapshot.discounted.get(k)} recomputed {again['discounted'].get(k)}" for k in changed))
    before, after = set(map(tuple, snapshot.filtered)), set(again["filtered"])
    if before != after:
        problems.append(f"filtered accounts: {len(before - after)} only served, {len(after - before)} only recomputed"
                        f" (e.g. {sorted(before ^ after)[0]})")
    return problems


def verify_served(snapshot: TrendingSnapshot, result: TrendingResult, served_items: Sequence[dict[str, Any]]) -> str | None:
    """None when a served list (its log record's items) is the recomputation with the snapshot's
    pins placed, else a one-line difference."""
    expected = compose_hot_list(result.items, snapshot.pins, len(served_items))
    for (position, item_id, item, _pin), got in zip(expected, served_items, strict=False):
        score = None if item is None else round(item.score, 4)
        if (got.get("position"), got.get("item_id"), got.get("score")) != (position, item_id, score):
            return (f"position {position}: served {got.get('item_id')} (score {got.get('score')}), "
                    f"recomputed {item_id} (score {score})")
    if len(expected) != len(served_items):
        return f"served {len(served_items)} items, recomputed {len(expected)}"
    return None


def _item_text(item: dict[str, Any]) -> str:
    return f"{item.get('item_id')} (score {item.get('score')!r}, {item.get('counted_users')} users)"
