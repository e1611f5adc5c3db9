"""Trending list without manipulation (Art. 11: hot lists are a key surface to manage; Art. 13: no
fake accounts, fake likes or shares, and no manipulated lists).

`compute_trending` turns engagement events into a ranked hot list. Rules, in the order applied
(each one's switch and knobs are fields of `TrendingConfig`; the result counts what each removed):

1. Window: only events with `now - window_hours <= ts <= now` count; future timestamps are dropped
   (they would otherwise decay to more than their weight). A resent event_id counts once.
2. Event weights: each event is worth its type's weight (impression 0, click 1, like 2, share 3);
   zero-weight and unknown types carry no score.
3. Time decay: an event of age `a` hours is worth `weight * exp(-ln2 * a / half_life_hours)`.
4. Distinct users: a user counts at most once per item, by their single strongest event
   (largest decayed weight); repeating clicks, likes or shares adds nothing.
5. New accounts: an event from an account younger than `new_account_days` at the time of the event
   is worth `new_account_weight` times as much; an account with no known creation time is treated
   as new (`unknown_account_is_new`).
6. Burst: when, for one item, the new accounts that first engaged it within any `burst_minutes`
   span are at least `burst_min_accounts` and more than `burst_new_account_share` of all accounts
   engaging the item in the window, those accounts' weight on that item is zeroed.
7. Lockstep: accounts whose engaged-item sets in the window are near-identical (Jaccard >=
   `lockstep_min_jaccard`, each set >= `lockstep_min_items` items), linked into groups of at least
   `lockstep_min_group` accounts, count as one user per item (the group's strongest contribution).
8. Eligibility: items outside the catalogue, blocked items, and (for a minors' list) items that are
   not minor-safe are left out; an item needs `min_distinct_users` users (after rules 4-7).
The score of an item is the sum of its users' contributions; ties break by item id.
`manipulation_filters=False` switches rules 5-7 off at once (for comparison in audits and tests).
Near-identical sets are found with MinHash banding (16 bands of 4 rows: a pair at Jaccard 0.8 is
a candidate with probability > 0.999), then every candidate pair is checked exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EVENT_COLUMNS = ("event_id", "user_id", "item_id", "type", "ts")
DEFAULT_EVENT_WEIGHTS = {"impression": 0.0, "click": 1.0, "like": 2.0, "share": 3.0}
MINHASH_BANDS = 16
MINHASH_ROWS = 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class TrendingInputError(ValueError):
    """Events, accounts or masks that cannot be read; the message names the column or argument."""


class TrendingConfig(BaseModel):
    """Knobs of the trending list; every rule in the module docstring reads its values from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    half_life_hours: float = Field(default=6.0, gt=0)
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    min_distinct_users: int = Field(default=3, ge=1)
    manipulation_filters: bool = True  # master switch of rules 5-7
    new_account_days: float = Field(default=7.0, ge=0)
    new_account_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    unknown_account_is_new: bool = True
    burst_enabled: bool = True
    burst_minutes: float = Field(default=60.0, gt=0)
    burst_new_account_share: float = Field(default=0.5, ge=0.0, lt=1.0)
    burst_min_accounts: int = Field(default=5, ge=1)
    lockstep_enabled: bool = True
    lockstep_min_jaccard: float = Field(default=0.8, gt=0.0, le=1.0)
    lockstep_min_items: int = Field(default=3, ge=1)
    lockstep_min_group: int = Field(default=20, ge=2)

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("event_weights: at least one event type is needed")
        bad = {k: v for k, v in value.items() if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"event_weights: weights must be finite and >= 0, got {bad}")
        if not any(v > 0 for v in value.values()):
            raise ValueError("event_weights: at least one event type needs a positive weight")
        return value

    def without_filters(self) -> TrendingConfig:
        """The same config with the manipulation filters (rules 5-7) off."""
        return self.model_copy(update={"manipulation_filters": False})


@dataclass(frozen=True)
class TrendingItem:
    item_id: str
    score: float
    distinct_users: int  # accounts that engaged the item in the window (weight > 0 events)
    counted_users: int  # after the burst and lockstep rules: lockstep groups count once


@dataclass(frozen=True)
class TrendingResult:
    """The ranked list, and per rule how many events, pairs, accounts or items it discounted.

    `flagged` lists (user_id, item_id, rule) for the burst and lockstep rules, for the audit trail."""

    items: tuple[TrendingItem, ...]
    discounted: dict[str, int]
    as_of: datetime
    flagged: pl.DataFrame = field(repr=False)

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(),
            "items": [vars(item) for item in self.items],
            "discounted": dict(self.discounted),
        }


# -- inputs ---------------------------------------------------------------------------------------
def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _epoch_seconds(name: str, dtype: pl.DataType, what: str) -> pl.Expr:
    """Seconds since the epoch (float) from a datetime (naive = UTC) or a unix-seconds column."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(name).dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Float64)
    raise TrendingInputError(f"{what}: column {name!r} must be a datetime or unix seconds, got {dtype}")


def _read_events(events: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(events, pl.DataFrame):
        raise TrendingInputError(f"events: expected a polars DataFrame, got {type(events).__name__}")
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise TrendingInputError(f"events: missing column(s) {', '.join(missing)}; expected {', '.join(EVENT_COLUMNS)}")
    try:
        out = events.select(
            pl.col("event_id").cast(pl.Utf8),
            pl.col("user_id").cast(pl.Utf8),
            pl.col("item_id").cast(pl.Utf8),
            pl.col("type").cast(pl.Utf8),
            _epoch_seconds("ts", events.schema["ts"], "events").alias("ts"),
        )
    except pl.exceptions.PolarsError as exc:
        raise TrendingInputError(f"events: cannot read the columns as text ids and a timestamp: {exc}") from None
    nulls = [c for c in EVENT_COLUMNS if out.get_column(c).null_count()]
    if nulls:
        raise TrendingInputError(f"events: column(s) {', '.join(nulls)} have null values")
    return out


def _read_accounts(accounts: Mapping[str, datetime | None] | pl.DataFrame) -> pl.DataFrame:
    if isinstance(accounts, pl.DataFrame):
        if not {"user_id", "created_at"} <= set(accounts.columns):
            raise TrendingInputError("accounts_created_at: a frame needs columns user_id and created_at")
        frame = accounts.select("user_id", "created_at")
    elif isinstance(accounts, Mapping):
        users = list(accounts)
        created = [None if v is None else _aware(v).timestamp() for v in accounts.values()]
        return pl.DataFrame({"user_id": users, "created": created}, schema={"user_id": pl.Utf8, "created": pl.Float64})
    else:
        raise TrendingInputError(
            "accounts_created_at: expected a mapping user_id -> datetime or a polars frame, "
            f"got {type(accounts).__name__}"
        )
    return frame.select(
        pl.col("user_id").cast(pl.Utf8),
        _epoch_seconds("created_at", frame.schema["created_at"], "accounts_created_at").alias("created"),
    ).unique("user_id", keep="first")


def _catalog_mask(name: str, mask: np.ndarray | None, n_items: int) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n_items,):
        raise TrendingInputError(f"{name}: must be a bool array of shape ({n_items},) aligned with catalog_item_ids")
    return mask


# -- rules ------------------------------------------------------------------------------------------
def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each value."""
    z = values.astype(np.uint64, copy=True)
    z += np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _burst_pairs(pairs: pl.DataFrame, config: TrendingConfig) -> np.ndarray:
    """Bool per pair row (sorted by item, first_ts): a new account inside a burst on that item."""
    item = pairs.get_column("item_code").to_numpy()
    first_ts = pairs.get_column("first_ts").to_numpy()
    new = pairs.get_column("new_first").to_numpy()
    users_per_item = np.bincount(item)
    flagged = np.zeros(pairs.height, dtype=bool)
    rows = np.flatnonzero(new)
    if rows.size == 0:
        return flagged
    burst_seconds = config.burst_minutes * 60.0
    span = float(first_ts.max() - first_ts.min()) + burst_seconds + 1.0
    key = item[rows] * span + (first_ts[rows] - first_ts.min())  # new-account pairs, sorted by (item, ts)
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    # for each new-account engagement, how many new accounts engage the same item in [t, t + burst)
    end = np.searchsorted(key, key + burst_seconds, side="left")
    in_burst = end - np.arange(rows.size)
    trigger = (in_burst >= config.burst_min_accounts) & (
        in_burst > config.burst_new_account_share * users_per_item[item[rows]]
    )
    if not trigger.any():
        return flagged
    cover = np.zeros(rows.size + 1, dtype=np.int64)  # mark every row inside a triggering span
    np.add.at(cover, np.flatnonzero(trigger), 1)
    np.add.at(cover, end[trigger], -1)
    flagged[rows[np.cumsum(cover[:-1]) > 0]] = True
    return flagged


def _lockstep_groups(user: np.ndarray, item: np.ndarray, n_users: int, config: TrendingConfig) -> np.ndarray:
    """Group label per user (-1: none) for accounts in lockstep groups of at least lockstep_min_group."""
    labels = np.full(n_users, -1, dtype=np.int64)
    order = np.lexsort((item, user))
    user, item = user[order], item[order]
    degree = np.bincount(user, minlength=n_users)
    eligible = degree >= config.lockstep_min_items
    if eligible.sum() < config.lockstep_min_group:
        return labels
    keep = eligible[user]
    user, item = user[keep], item[keep]
    starts = np.concatenate(([0], np.cumsum(degree[eligible])[:-1]))
    members = np.flatnonzero(eligible)  # user code of each set, in order
    item_keys = item.astype(np.uint64)
    candidates = []
    for band in range(MINHASH_BANDS):
        band_key = np.zeros(members.size, dtype=np.uint64)
        for row in range(MINHASH_ROWS):
            seed = np.uint64((band * MINHASH_ROWS + row + 1) * 0x632BE59BD9B4E019 & 0xFFFFFFFFFFFFFFFF)
            signature = np.minimum.reduceat(_mix64(item_keys ^ seed), starts)
            band_key = _mix64(band_key ^ signature)
        _, first, inverse, counts = np.unique(band_key, return_index=True, return_inverse=True, return_counts=True)
        shared = counts[inverse] >= 2
        rep = first[inverse]
        pick = shared & (rep != np.arange(members.size))
        candidates.append(np.stack([np.flatnonzero(pick), rep[pick]], axis=1))
    pairs = np.unique(np.concatenate(candidates), axis=0)
    if pairs.size == 0:
        return labels
    set_size = degree[members]
    a, b = pairs[:, 0], pairs[:, 1]
    smaller, larger = np.minimum(set_size[a], set_size[b]), np.maximum(set_size[a], set_size[b])
    reachable = smaller >= config.lockstep_min_jaccard * larger
    a, b = a[reachable], b[reachable]  # Jaccard <= smaller / larger set: skip pairs that cannot link
    if a.size == 0:
        return labels
    # exact Jaccard of each candidate pair: expand both sets, key items by pair, count the overlap
    pair_of_a = np.repeat(np.arange(a.size), set_size[a])
    pair_of_b = np.repeat(np.arange(b.size), set_size[b])
    offset_a = np.arange(pair_of_a.size) - np.repeat(np.cumsum(set_size[a]) - set_size[a], set_size[a])
    offset_b = np.arange(pair_of_b.size) - np.repeat(np.cumsum(set_size[b]) - set_size[b], set_size[b])
    n_items = int(item.max()) + 1
    keys_a = pair_of_a * n_items + item[np.repeat(starts[a], set_size[a]) + offset_a]
    keys_b = pair_of_b * n_items + item[np.repeat(starts[b], set_size[b]) + offset_b]
    overlap = np.bincount(pair_of_a[np.isin(keys_a, keys_b)], minlength=a.size)
    jaccard = overlap / (set_size[a] + set_size[b] - overlap)
    linked = jaccard >= config.lockstep_min_jaccard
    if not linked.any():
        return labels
    graph = coo_matrix(
        (np.ones(int(linked.sum())), (a[linked], b[linked])), shape=(members.size, members.size)
    )
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    in_group = sizes[component] >= config.lockstep_min_group
    labels[members[in_group]] = component[in_group]
    return labels


# -- the list ---------------------------------------------------------------------------------------
def compute_trending(
    events: pl.DataFrame,
    accounts_created_at: Mapping[str, datetime | None] | pl.DataFrame,
    now: datetime,
    config: TrendingConfig | None = None,
    top_n: int = 50,
    catalog_item_ids: Sequence[str] | None = None,
    minor_safe: np.ndarray | None = None,
    blocked: np.ndarray | None = None,
) -> TrendingResult:
    """Rank items by de-duplicated, decayed, manipulation-filtered engagement (rules in the module doc).

    `events` has columns event_id, user_id, item_id, type, ts (datetime, naive = UTC, or unix
    seconds). With `catalog_item_ids`, only catalogue items are ranked, and `minor_safe` / `blocked`
    (bool arrays aligned with it) keep only minor-safe items / drop blocked ones.
    """
    config = config or TrendingConfig()
    if top_n < 1:
        raise TrendingInputError(f"top_n: must be >= 1, got {top_n}")
    if (minor_safe is not None or blocked is not None) and catalog_item_ids is None:
        raise TrendingInputError("minor_safe / blocked: need catalog_item_ids to align them with items")
    now = _aware(now)
    now_s = now.timestamp()
    window_start = now_s - config.window_hours * 3600.0
    filters = config.manipulation_filters
    discounted: dict[str, int] = {}

    frame = _read_events(events)
    deduped = frame.unique("event_id", keep="first", maintain_order=True)
    discounted["duplicate_event_id"] = frame.height - deduped.height
    frame = deduped
    future = frame.get_column("ts").to_numpy() > now_s
    old = frame.get_column("ts").to_numpy() < window_start
    discounted["future_events"] = int(future.sum())
    discounted["outside_window"] = int(old.sum())
    frame = frame.filter(pl.Series(~(future | old)))
    weights = pl.DataFrame(
        {"type": list(config.event_weights), "weight": list(config.event_weights.values())},
        schema={"type": pl.Utf8, "weight": pl.Float64},
    )
    frame = frame.join(weights, on="type", how="left")
    discounted["unknown_type"] = int(frame.get_column("weight").null_count())
    discounted["zero_weight_type"] = int((frame.get_column("weight") == 0).sum())
    frame = frame.filter(pl.col("weight") > 0)

    # rules 3 and 5: decayed value of each event, and the account's age when it happened
    accounts = _read_accounts(accounts_created_at)
    frame = frame.join(accounts, on="user_id", how="left")
    age_days = (pl.col("ts") - pl.col("created")) / 86400.0
    is_new = pl.when(pl.col("created").is_null()).then(pl.lit(config.unknown_account_is_new)).otherwise(
        age_days < config.new_account_days
    )
    account_weight = pl.when(is_new & pl.lit(filters)).then(config.new_account_weight).otherwise(1.0)
    decay = (-math.log(2) * (now_s - pl.col("ts")) / (config.half_life_hours * 3600.0)).exp()
    frame = frame.with_columns(
        (pl.col("weight") * decay).alias("value"),
        is_new.alias("new"),
        (pl.col("weight") * decay * account_weight).alias("adjusted"),
    )

    # rule 4: one row per (user, item): the strongest event; first engagement time for the burst rule
    pairs = (
        frame.group_by("user_id", "item_id")
        .agg(
            pl.col("value").max(),
            pl.col("adjusted").max(),
            pl.col("ts").min().alias("first_ts"),
            pl.col("new").sort_by("ts").first().alias("new_first"),
            pl.col("new").any().alias("new_any"),
            pl.len().alias("events"),
        )
        .with_columns(
            pl.col("item_id").rank("dense").cast(pl.Int64).sub(1).alias("item_code"),
            pl.col("user_id").rank("dense").cast(pl.Int64).sub(1).alias("user_code"),
        )
        .sort("item_code", "first_ts", "user_id")
    )
    discounted["repeat_engagement"] = int(frame.height - pairs.height)
    discounts_new = filters and config.new_account_weight < 1
    discounted["new_account"] = int(pairs.get_column("new_any").sum()) if discounts_new else 0

    burst = np.zeros(pairs.height, dtype=bool)
    if filters and config.burst_enabled and pairs.height:
        burst = _burst_pairs(pairs, config)
    discounted["burst"] = int(burst.sum())

    user_codes = pairs.get_column("user_code").to_numpy()
    n_users = int(user_codes.max()) + 1 if pairs.height else 0
    group = np.full(n_users, -1, dtype=np.int64)
    if filters and config.lockstep_enabled and pairs.height:
        group = _lockstep_groups(user_codes, pairs.get_column("item_code").to_numpy(), n_users, config)
    grouped = group[user_codes] >= 0 if pairs.height else np.zeros(0, dtype=bool)
    discounted["lockstep_accounts"] = int((group >= 0).sum())
    discounted["lockstep_groups"] = int(np.unique(group[group >= 0]).size)

    pairs = pairs.with_columns(pl.Series("grouped", grouped), pl.Series("group", group[user_codes]))
    pairs = pairs.with_columns(
        pl.when(pl.col("grouped"))
        .then(pl.lit("lockstep:") + pl.col("group").cast(pl.Utf8))
        .otherwise(pl.col("user_id"))
        .alias("actor"),
        pl.when(pl.Series(burst)).then(0.0).otherwise(pl.col("adjusted")).alias("contribution"),
        pl.Series("burst", burst),
    )
    actors = pairs.group_by("actor", "item_id").agg(pl.col("contribution").max())
    discounted["lockstep_merged"] = int(pairs.height - actors.height)
    per_item = (
        actors.group_by("item_id")
        .agg(pl.col("contribution").sum().alias("score"), (pl.col("contribution") > 0).sum().alias("counted_users"))
        .join(pairs.group_by("item_id").agg(pl.len().alias("distinct_users")), on="item_id")
    )

    # rule 8: eligibility
    if catalog_item_ids is not None:
        catalog_item_ids = [str(i) for i in catalog_item_ids]
        n_catalog = len(catalog_item_ids)
        minor_safe = _catalog_mask("minor_safe", minor_safe, n_catalog)
        blocked = _catalog_mask("blocked", blocked, n_catalog)
        catalog = pl.DataFrame(
            {
                "item_id": catalog_item_ids,
                "minor_safe": minor_safe if minor_safe is not None else np.ones(n_catalog, dtype=bool),
                "blocked": blocked if blocked is not None else np.zeros(n_catalog, dtype=bool),
            },
            schema={"item_id": pl.Utf8, "minor_safe": pl.Boolean, "blocked": pl.Boolean},
        ).unique("item_id", keep="first")
        per_item = per_item.join(catalog, on="item_id", how="left")
        unknown = per_item.get_column("blocked").is_null()
        discounted["not_in_catalog"] = int(unknown.sum())
        discounted["blocked_item"] = int(per_item.get_column("blocked").fill_null(False).sum())
        not_safe = ~per_item.get_column("minor_safe").fill_null(True)
        discounted["not_minor_safe"] = int(not_safe.sum()) if minor_safe is not None else 0
        per_item = per_item.filter(pl.col("blocked").is_not_null() & ~pl.col("blocked") & pl.col("minor_safe"))
    below = per_item.get_column("counted_users") < config.min_distinct_users
    discounted["below_min_users"] = int(below.sum())
    ranked = (
        per_item.filter(~below & (pl.col("score") > 0))
        .sort(["score", "item_id"], descending=[True, False])
        .head(top_n)
    )
    items = tuple(
        TrendingItem(item_id=row[0], score=float(row[1]), distinct_users=int(row[2]), counted_users=int(row[3]))
        for row in ranked.select("item_id", "score", "distinct_users", "counted_users").iter_rows()
    )
    flagged = pl.concat(
        [
            pairs.filter(pl.col("burst")).select("user_id", "item_id", pl.lit("burst").alias("rule")),
            pairs.filter(pl.col("grouped")).select("user_id", "item_id", pl.lit("lockstep").alias("rule")),
        ]
    )
    return TrendingResult(items=items, discounted=discounted, as_of=now, flagged=flagged)
