"""Trending list without manipulation (Art. 11: hot lists are a key surface to manage; Art. 14 (draft 13): no
fake accounts, fake likes or shares, and no manipulated lists).

`compute_trending` turns engagement events into a ranked hot list. The attacker modelled is not one
burst but a patient operator: hundreds of accounts, created at any time, that like and share one
obscure item (perhaps with a few popular decoys) spread evenly over minutes, hours or the whole
window. What such accounts lack is a past: they engaged nothing, or next to nothing, before the
window. Each rule below is one function (`rule_*`), and `TRENDING_RULES` composes them in a declared
order, each entry naming the rule, its article and the `TrendingConfig` fields it reads (defaults in
brackets below; `TrendingResult.discounted` counts what each rule hit and `TrendingResult.flagged`
lists every discounted contribution as (user_id, item_id, rule)). The order is 1, 2, 3, the account
facts of 5, 5, 6, then 4 (one row per user and item), 7, 8, 9, 10:

1. Window: only events with `now - window_hours <= ts <= now` count; future timestamps are dropped
   (they would otherwise decay to more than their weight). A resent event_id counts once.
2. Event weights: each event is worth its type's weight (impression 0, click 1, like 2, share 3);
   zero-weight and unknown types carry no score.
3. Time decay: an event of age `a` hours is worth `weight * exp(-ln2 * a / half_life_hours)`.
4. Distinct users: a user counts at most once per item, by their single strongest event
   (largest decayed weight); repeating clicks, likes or shares adds nothing.
5. Account trust, from age and history. `prior_items` is the number of distinct items an account
   engaged before the window (the serving route passes its interactions in the model's training
   data plus the distinct items of its stored events before the window). An account's event is worth
   - `no_history_weight` [0] times as much when prior_items is 0, whatever the account's age and
     however its events are spread (rule "no_history");
   - `new_account_weight` [0.2] times as much when the account is younger than `new_account_days`
     [7] at the event; an account with no known creation time is new (`unknown_account_is_new`)
     (rule "new_account");
   - `thin_history_weight` [0.5] times as much when 0 < prior_items < `history_min_items` [5]
     (rule "thin_history").
   Unknown prior_items (the mapping form of `accounts`, a frame without the column, or a null):
   with `unknown_history="empty_if_new"` [default] it counts as no history only for an account that
   is new at `now` or has no known creation time; an older account's unknown history is not judged
   (the history rules 5 and 6 leave it alone). "empty" always counts it as no history,
   "established" never does.
6. Concentration: an account whose whole activity, prior_items plus the distinct items it engaged
   in the window, is at most `concentration_max_items` [3] items is worth `concentration_weight`
   [0.1] times as much (rule "concentration"): a real user browses.
   The factors of rules 5 and 6 multiply. An account discounted by rule 5 or 6 at an event is
   untrusted for that event. An account worth nothing at all its events (no history, by default)
   is left out of rules 7-9: it lifts nothing, and adding such accounts can never drag real
   accounts into a burst or a group, or change any score.
7. Burst: when, for one item, the untrusted accounts that first engaged it within any
   `burst_minutes` [60] span are at least `burst_min_accounts` [5] and more than
   `burst_new_account_share` [0.5] of all accounts engaging the item in the window, those accounts'
   weight on that item is zeroed (rule "burst").
8. Co-engagement groups count as one user per item (the group's strongest contribution):
   - lockstep: accounts whose engaged-item sets in the window are near-identical (Jaccard >=
     `lockstep_min_jaccard` [0.8], each set >= `lockstep_min_items` [3] items), linked into groups
     of at least `lockstep_min_group` [20] accounts, trusted or not (rule "lockstep");
   - clusters: untrusted accounts that engaged fewer than `lockstep_min_items` items in the window
     (1- and 2-item sets), grouped by their exact item set, in groups of at least
     `cluster_min_group` [10] accounts (rule "cluster"). Trusted accounts with one or two items in
     the window are not grouped: many real users open the app once and like the item everyone
     talks about.
9. Untrusted cap: untrusted contributions may make up at most `untrusted_max_share` [0.5] of an
   item's score: score = T + min(U, T * s / (1 - s)), T and U the sums of the trusted and the
   untrusted contributions (after rules 7-8). An item that only untrusted accounts engaged scores 0;
   the untrusted contributions of a capped item are flagged (rule "untrusted_cap"). 1 switches it off.
10. Eligibility: items outside the catalogue, blocked items, and (for a minors' list) items that
   are not minor-safe are left out; an item needs `min_distinct_users` users with a positive
   contribution (after rules 4-8; a group counts once).
The score of an item is the sum of its users' contributions; ties break by item id.
`manipulation_filters=False` switches rules 5-9 off at once (for comparison in audits and tests).
Near-identical sets are found with MinHash banding (16 bands of 4 rows: a pair at Jaccard 0.8 is
a candidate with probability > 0.999), then every candidate pair is checked exactly.

Known limit: an account older than `new_account_days` with at least `history_min_items` items of
history is trusted. 200 such accounts liking one item look exactly like 200 real users doing so,
and the list lets them count (unless they move in lockstep on 3+ items); the defence there is the
cost of building such accounts and the audit trail of `flagged` and the event store.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EVENT_COLUMNS = ("event_id", "user_id", "item_id", "type", "ts")
DEFAULT_EVENT_WEIGHTS = {"impression": 0.0, "click": 1.0, "like": 2.0, "share": 3.0}
# every rule that can discount a (user, item) contribution, as named in `TrendingResult.flagged`
FLAG_RULES = ("no_history", "new_account", "thin_history", "concentration", "burst", "lockstep", "cluster",
              "untrusted_cap")
MINHASH_BANDS = 16
MINHASH_ROWS = 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)

Accounts = Mapping[str, datetime | None] | pl.DataFrame


class TrendingInputError(ValueError):
    """Events, accounts or masks that cannot be read; the message names the column or argument."""


class TrendingConfig(BaseModel):
    """Knobs of the trending list; every rule in the module docstring reads its values from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    half_life_hours: float = Field(default=6.0, gt=0)
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    min_distinct_users: int = Field(default=3, ge=1)
    manipulation_filters: bool = True  # master switch of rules 5-9
    # rule 5: account age and history
    no_history_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    new_account_days: float = Field(default=7.0, ge=0)
    new_account_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    unknown_account_is_new: bool = True
    history_min_items: int = Field(default=5, ge=0)  # fewer prior items (but > 0): thin history
    thin_history_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    unknown_history: Literal["empty_if_new", "empty", "established"] = "empty_if_new"
    # rule 6: concentration (0 switches it off)
    concentration_max_items: int = Field(default=3, ge=0)
    concentration_weight: float = Field(default=0.1, ge=0.0, le=1.0)
    # rule 7: burst
    burst_enabled: bool = True
    burst_minutes: float = Field(default=60.0, gt=0)
    burst_new_account_share: float = Field(default=0.5, ge=0.0, lt=1.0)
    burst_min_accounts: int = Field(default=5, ge=1)
    # rule 8: co-engagement groups
    lockstep_enabled: bool = True
    lockstep_min_jaccard: float = Field(default=0.8, gt=0.0, le=1.0)
    lockstep_min_items: int = Field(default=3, ge=1)
    lockstep_min_group: int = Field(default=20, ge=2)
    cluster_enabled: bool = True
    cluster_min_group: int = Field(default=10, ge=2)
    # rule 9: share of an item's score that untrusted accounts may make up (1: no cap)
    untrusted_max_share: float = Field(default=0.5, ge=0.0, le=1.0)

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
        """The same config with the manipulation filters (rules 5-9) off."""
        return self.model_copy(update={"manipulation_filters": False})


@dataclass(frozen=True)
class TrendingItem:
    item_id: str
    score: float
    distinct_users: int  # accounts that engaged the item in the window (weight > 0 events)
    counted_users: int  # with a positive contribution after rules 5-8: a group counts once


@dataclass(frozen=True)
class TrendingResult:
    """The ranked list, and per rule how many events, pairs, accounts or items it discounted.

    `flagged` lists (user_id, item_id, rule) for every contribution a manipulation rule (5-9)
    discounted, one row per rule that applied (rule names in `FLAG_RULES`); for each of those rules
    `discounted[rule]` is its number of rows. `discounted` also counts dropped events
    (duplicate_event_id, future_events, outside_window, unknown_type, zero_weight_type),
    repeat_engagement (events beyond a user's strongest per item), lockstep_accounts /
    lockstep_groups, cluster_accounts / cluster_groups, group_merged (pairs folded into a group),
    untrusted_cap_items, and the eligibility rule's items."""

    items: tuple[TrendingItem, ...]
    discounted: dict[str, int]
    as_of: datetime
    flagged: pl.DataFrame = field(repr=False)

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]

    def to_dict(self) -> dict[str, Any]:
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
    if dtype == pl.Null or dtype.is_numeric():
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


_ACCOUNT_SCHEMA = {"user_id": pl.Utf8, "created": pl.Float64, "prior": pl.Int64}


def _read_accounts(accounts: Accounts) -> pl.DataFrame:
    """user_id, created (epoch seconds or null), prior (distinct items before the window, or null)."""
    if isinstance(accounts, Mapping):
        users = [str(u) for u in accounts]
        created = [None if v is None else _aware(v).timestamp() for v in accounts.values()]
        frame = pl.DataFrame({"user_id": users, "created": created, "prior": [None] * len(users)},
                             schema=_ACCOUNT_SCHEMA)
        return frame.unique("user_id", keep="first", maintain_order=True)
    if not isinstance(accounts, pl.DataFrame):
        raise TrendingInputError(
            "accounts: expected a mapping user_id -> created_at or a polars frame with columns user_id, "
            f"created_at and optionally prior_items, got {type(accounts).__name__}"
        )
    if not {"user_id", "created_at"} <= set(accounts.columns):
        raise TrendingInputError("accounts: a frame needs columns user_id and created_at (prior_items optional)")
    if "prior_items" in accounts.columns:
        dtype = accounts.schema["prior_items"]
        if not (dtype == pl.Null or dtype.is_integer() or dtype.is_float()):
            raise TrendingInputError(f"accounts: column 'prior_items' must be a count (int), got {dtype}")
        prior = pl.col("prior_items").cast(pl.Float64).floor().cast(pl.Int64)
    else:
        prior = pl.lit(None, dtype=pl.Int64)
    frame = accounts.select(
        pl.col("user_id").cast(pl.Utf8),
        _epoch_seconds("created_at", accounts.schema["created_at"], "accounts").alias("created"),
        prior.alias("prior"),
    )
    if frame.get_column("user_id").null_count():
        raise TrendingInputError("accounts: column 'user_id' has null values")
    if (frame.get_column("prior").fill_null(0) < 0).any():
        raise TrendingInputError("accounts: column 'prior_items' must be >= 0")
    return frame.unique("user_id", keep="first", maintain_order=True)


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


def _burst_pairs(item: np.ndarray, first_ts: np.ndarray, suspect: np.ndarray, counted: np.ndarray,
                 config: TrendingConfig) -> np.ndarray:
    """Bool per pair row: an untrusted account inside a burst on that item.

    `suspect`: untrusted at its first engagement of the item; `counted`: the pair takes part at all
    (accounts worth nothing are left out, also of the item's account count)."""
    flagged = np.zeros(item.size, dtype=bool)
    users_per_item = np.bincount(item[counted], minlength=int(item.max()) + 1)
    rows = np.flatnonzero(suspect & counted)
    if rows.size == 0:
        return flagged
    burst_seconds = config.burst_minutes * 60.0
    span = float(first_ts.max() - first_ts.min()) + burst_seconds + 1.0
    key = item[rows] * span + (first_ts[rows] - first_ts.min())  # suspect pairs, sorted by (item, ts)
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    # for each suspect engagement, how many suspect accounts engage the same item in [t, t + burst)
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
    if user.size == 0:
        return labels
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


def _cluster_groups(pairs: pl.DataFrame, n_users: int, config: TrendingConfig) -> np.ndarray:
    """Group label per user (-1: none): untrusted accounts with the same small (< lockstep_min_items)
    engaged-item set in the window, in groups of at least cluster_min_group."""
    labels = np.full(n_users, -1, dtype=np.int64)
    sets = (
        pairs.filter(pl.col("cluster_candidate"))
        .group_by("user_code")
        .agg(pl.col("item_code").sort().cast(pl.Utf8).str.join(",").alias("item_set"))
    )
    if sets.height < config.cluster_min_group:
        return labels
    sets = sets.with_columns(pl.len().over("item_set").alias("size")).filter(pl.col("size") >= config.cluster_min_group)
    if sets.height:
        group = sets.get_column("item_set").rank("dense").cast(pl.Int64).to_numpy() - 1
        labels[sets.get_column("user_code").to_numpy()] = group
    return labels


# -- the rules, one function each, composed in a declared order -------------------------------------
_EMPTY_LABELS = np.zeros(0, dtype=np.int64)


@dataclass
class TrendingState:
    """What the rules pass along: the events (one row per event, rules 1-6), then the engagements
    (one row per user and item, rules 4 and 7-9), then the items (rules 9-10), and the counts of what
    each rule discounted. Each rule reads the config and the columns earlier rules made."""

    config: TrendingConfig
    now_s: float
    accounts: pl.DataFrame
    catalog: pl.DataFrame | None  # item_id, minor_safe, blocked; None: no catalogue given
    events: pl.DataFrame
    discounted: dict[str, int] = field(default_factory=dict)
    pairs: pl.DataFrame = field(default_factory=pl.DataFrame)
    actors: pl.DataFrame = field(default_factory=pl.DataFrame)
    per_item: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def filters(self) -> bool:
        """The manipulation filters (rules 5-9) are on."""
        return self.config.manipulation_filters

    @property
    def window_start_s(self) -> float:
        return self.now_s - self.config.window_hours * 3600.0

    def user_codes(self) -> np.ndarray:
        return self.pairs.get_column("user_code").to_numpy()

    def n_users(self) -> int:
        return int(self.user_codes().max()) + 1 if self.pairs.height else 0

    def label_pairs(self, name: str, labels: np.ndarray) -> None:
        """Add a per-pair column from a per-user group label array (-1: no group)."""
        self.pairs = self.pairs.with_columns(
            pl.Series(name, labels[self.user_codes()] if self.pairs.height else _EMPTY_LABELS)
        )


@dataclass(frozen=True)
class TrendingRule:
    """One rule of the hot list: its name (as in `TrendingResult.discounted` / `flagged` where it
    discounts), the article it implements, the `TrendingConfig` fields it reads, and the function."""

    name: str
    article: str
    parameters: tuple[str, ...]
    apply: Callable[[TrendingState], None]

    @property
    def summary(self) -> str:
        """The first paragraph of the rule function's docstring: what the rule does, in words."""
        doc = (self.apply.__doc__ or self.name).strip()
        return " ".join(doc.split("\n\n")[0].split())


# rule 1 ------------------------------------------------------------------------------------------
def rule_window(state: TrendingState) -> None:
    """Only events with now - window_hours <= ts <= now count; future timestamps are dropped, and a
    resent event_id counts once."""
    frame = state.events
    deduped = frame.unique("event_id", keep="first", maintain_order=True)
    state.discounted["duplicate_event_id"] = frame.height - deduped.height
    ts = deduped.get_column("ts").to_numpy()
    future, old = ts > state.now_s, ts < state.window_start_s
    state.discounted["future_events"] = int(future.sum())
    state.discounted["outside_window"] = int(old.sum())
    state.events = deduped.filter(pl.Series(~(future | old)))


# rule 2 ------------------------------------------------------------------------------------------
def rule_event_weights(state: TrendingState) -> None:
    """Each event is worth its type's weight; zero-weight and unknown types carry no score."""
    weights = state.config.event_weights
    table = pl.DataFrame(
        {"type": list(weights), "weight": list(weights.values())}, schema={"type": pl.Utf8, "weight": pl.Float64}
    )
    frame = state.events.join(table, on="type", how="left")
    state.discounted["unknown_type"] = int(frame.get_column("weight").null_count())
    state.discounted["zero_weight_type"] = int((frame.get_column("weight") == 0).sum())
    state.events = frame.filter(pl.col("weight") > 0)


# rule 3 ------------------------------------------------------------------------------------------
def rule_time_decay(state: TrendingState) -> None:
    """An event of age a hours is worth weight * exp(-ln2 * a / half_life_hours)."""
    decay = (-math.log(2) * (state.now_s - pl.col("ts")) / (state.config.half_life_hours * 3600.0)).exp()
    state.events = state.events.with_columns((pl.col("weight") * decay).alias("value"))


# rule 5, its inputs -------------------------------------------------------------------------------
def rule_account_facts(state: TrendingState) -> None:
    """Each event's account: its age at the event, and the distinct items it engaged before the
    window (unknown history is judged by unknown_history: empty for new accounts by default)."""
    config = state.config
    frame = state.events.join(state.accounts, on="user_id", how="left")
    created_unknown = pl.col("created").is_null()
    young_at_event = pl.when(created_unknown).then(pl.lit(config.unknown_account_is_new)).otherwise(
        (pl.col("ts") - pl.col("created")) / 86400.0 < config.new_account_days
    )
    young_now = pl.when(created_unknown).then(pl.lit(config.unknown_account_is_new)).otherwise(
        (state.now_s - pl.col("created")) / 86400.0 < config.new_account_days
    )
    unknown_is_empty = {"empty": pl.lit(True), "established": pl.lit(False), "empty_if_new": young_now}
    prior = (
        pl.when(pl.col("prior").is_not_null()).then(pl.col("prior"))
        .when(unknown_is_empty[config.unknown_history]).then(pl.lit(0, dtype=pl.Int64))
        .otherwise(pl.lit(None, dtype=pl.Int64))
    )
    state.events = frame.with_columns(prior.alias("prior"), young_at_event.alias("young"))


def _flag_events(state: TrendingState, rule: str, condition: pl.Expr) -> None:
    """Mark the events `rule` discounts (never when the manipulation filters are off)."""
    state.events = state.events.with_columns((pl.lit(state.filters) & condition).fill_null(False).alias(rule))


# rule 5 ------------------------------------------------------------------------------------------
def rule_no_history(state: TrendingState) -> None:
    """An account that engaged nothing before the window is worth no_history_weight times as much,
    whatever its age and however its events are spread."""
    _flag_events(state, "no_history", pl.col("prior") == 0)


def rule_new_account(state: TrendingState) -> None:
    """An account younger than new_account_days at the event (or of unknown creation time, with
    unknown_account_is_new) is worth new_account_weight times as much."""
    _flag_events(state, "new_account", pl.col("young"))


def rule_thin_history(state: TrendingState) -> None:
    """An account with fewer than history_min_items (but some) items before the window is worth
    thin_history_weight times as much."""
    _flag_events(state, "thin_history", (pl.col("prior") > 0) & (pl.col("prior") < state.config.history_min_items))


# rule 6 ------------------------------------------------------------------------------------------
def rule_concentration(state: TrendingState) -> None:
    """An account whose whole activity (items before the window plus distinct items in it) is at most
    concentration_max_items items is worth concentration_weight times as much: a real user browses."""
    window_items = pl.col("item_id").n_unique().over("user_id")
    _flag_events(state, "concentration", pl.col("prior") + window_items <= state.config.concentration_max_items)


# rules 5-6, combined -----------------------------------------------------------------------------
def rule_account_trust(state: TrendingState) -> None:
    """The discounts of rules 5 and 6 multiply; an account discounted at an event is untrusted for
    that event, and an account worth nothing at all its events is left out of rules 7-9."""
    config = state.config
    factors = [
        pl.when(pl.col(rule)).then(weight).otherwise(1.0)
        for rule, weight in (
            ("no_history", config.no_history_weight),
            ("new_account", config.new_account_weight),
            ("thin_history", config.thin_history_weight),
            ("concentration", config.concentration_weight),
        )
    ]
    factor = functools.reduce(operator.mul, factors)
    untrusted = functools.reduce(operator.or_, [pl.col(r) for r in ("no_history", "new_account", "thin_history", "concentration")])
    frame = state.events.with_columns(untrusted.alias("untrusted"))
    frame = frame.with_columns((pl.col("value") * factor).alias("adjusted"))
    state.events = frame.with_columns(
        pl.when(pl.col("untrusted")).then(0.0).otherwise(pl.col("adjusted")).alias("trusted"),
        (pl.col("adjusted").max().over("user_id") > 0).alias("live"),  # worth something at some event
        pl.col("untrusted").any().over("user_id").alias("untrusted_account"),
    )


# rule 4 ------------------------------------------------------------------------------------------
def rule_distinct_users(state: TrendingState) -> None:
    """A user counts at most once per item, by their single strongest event (largest decayed
    weight); repeating clicks, likes or shares adds nothing."""
    frame = state.events
    state.pairs = (
        frame.group_by("user_id", "item_id")
        .agg(
            pl.col("value").max(),
            pl.col("adjusted").max(),
            pl.col("trusted").max(),
            pl.col("ts").min().alias("first_ts"),
            pl.col("untrusted").sort_by("ts").first().alias("untrusted_first"),
            pl.col("new_account").any(),
            pl.col("no_history", "thin_history", "concentration", "live", "untrusted_account").first(),
        )
        .with_columns(
            pl.col("item_id").rank("dense").cast(pl.Int64).sub(1).alias("item_code"),
            pl.col("user_id").rank("dense").cast(pl.Int64).sub(1).alias("user_code"),
            pl.len().over("user_id").alias("window_items"),
        )
        .sort("item_code", "first_ts", "user_id")
    )
    state.discounted["repeat_engagement"] = int(frame.height - state.pairs.height)


# rule 7 ------------------------------------------------------------------------------------------
def rule_burst(state: TrendingState) -> None:
    """When the untrusted accounts that first engaged an item within any burst_minutes span are at
    least burst_min_accounts and more than burst_new_account_share of the item's accounts, their
    weight on that item is zeroed."""
    pairs = state.pairs
    burst = np.zeros(pairs.height, dtype=bool)
    if state.filters and state.config.burst_enabled and pairs.height:
        burst = _burst_pairs(
            pairs.get_column("item_code").to_numpy(), pairs.get_column("first_ts").to_numpy(),
            pairs.get_column("untrusted_first").to_numpy(), pairs.get_column("live").to_numpy(), state.config,
        )
    state.pairs = pairs.with_columns(pl.Series("burst", burst))


# rule 8 ------------------------------------------------------------------------------------------
def rule_lockstep(state: TrendingState) -> None:
    """Accounts whose engaged-item sets in the window are near-identical (Jaccard >=
    lockstep_min_jaccard, each >= lockstep_min_items items), linked into groups of at least
    lockstep_min_group, count as one user per item."""
    n_users = state.n_users()
    labels = np.full(n_users, -1, dtype=np.int64)
    if state.filters and state.config.lockstep_enabled and state.pairs.height:
        live = state.pairs.get_column("live").to_numpy()
        items = state.pairs.get_column("item_code").to_numpy()
        labels = _lockstep_groups(state.user_codes()[live], items[live], n_users, state.config)
    state.discounted["lockstep_accounts"] = int((labels >= 0).sum())
    state.discounted["lockstep_groups"] = int(np.unique(labels[labels >= 0]).size)
    state.label_pairs("lockstep", labels)


def rule_cluster(state: TrendingState) -> None:
    """Untrusted accounts that engaged fewer than lockstep_min_items items in the window, with the
    same item set, in groups of at least cluster_min_group, count as one user per item."""
    n_users = state.n_users()
    labels = np.full(n_users, -1, dtype=np.int64)
    if state.filters and state.config.cluster_enabled and state.pairs.height:
        candidate = (
            pl.col("live") & pl.col("untrusted_account") & (pl.col("window_items") < state.config.lockstep_min_items)
        )
        labels = _cluster_groups(state.pairs.with_columns(candidate.alias("cluster_candidate")), n_users, state.config)
    state.discounted["cluster_accounts"] = int((labels >= 0).sum())
    state.discounted["cluster_groups"] = int(np.unique(labels[labels >= 0]).size)
    state.label_pairs("cluster", labels)


def rule_groups_count_once(state: TrendingState) -> None:
    """A lockstep group or a cluster is one actor per item, worth its strongest contribution; a
    burst contribution is worth nothing."""
    pairs = state.pairs.with_columns(
        pl.when(pl.col("lockstep") >= 0).then(pl.lit("lockstep:") + pl.col("lockstep").cast(pl.Utf8))
        .when(pl.col("cluster") >= 0).then(pl.lit("cluster:") + pl.col("cluster").cast(pl.Utf8))
        .otherwise(pl.col("user_id"))
        .alias("actor"),
        pl.when(pl.col("burst")).then(0.0).otherwise(pl.col("adjusted")).alias("contribution"),
        pl.when(pl.col("burst")).then(0.0).otherwise(pl.col("trusted")).alias("trusted_contribution"),
    )
    state.actors = (
        pairs.group_by("actor", "item_id")
        .agg(pl.col("contribution").max(), pl.col("trusted_contribution").max())
        .sort("item_id", "actor")  # a fixed order: rule 9 sums in it, so a list recomputes to the same bits
    )
    state.discounted["group_merged"] = int(pairs.height - state.actors.height)
    state.pairs = pairs


# rule 9 ------------------------------------------------------------------------------------------
def rule_untrusted_cap(state: TrendingState) -> None:
    """Untrusted contributions make up at most untrusted_max_share of an item's score: score = T +
    min(U, T * s / (1 - s)); an item only untrusted accounts engaged scores 0."""
    share = state.config.untrusted_max_share if state.filters else 1.0
    ratio = math.inf if share >= 1.0 else share / (1.0 - share)
    per_item = (
        state.actors.group_by("item_id", maintain_order=True)
        .agg(
            pl.col("trusted_contribution").sum().alias("trusted"),
            (pl.col("contribution") - pl.col("trusted_contribution")).clip(lower_bound=0.0).sum().alias("untrusted"),
            (pl.col("contribution") > 0).sum().alias("counted_users"),
        )
        .join(state.pairs.group_by("item_id").agg(pl.len().alias("distinct_users")), on="item_id")
    )
    allowed = pl.col("trusted") * ratio if math.isfinite(ratio) else pl.lit(math.inf)
    per_item = per_item.with_columns(
        (pl.col("trusted") + pl.min_horizontal(pl.col("untrusted"), allowed)).alias("score"),
        (pl.col("untrusted") > allowed * (1 + 1e-12)).alias("capped"),
        pl.lit(True).alias("eligible"),  # rule 10 narrows it
    )
    capped_items = per_item.filter(pl.col("capped")).select("item_id")
    state.discounted["untrusted_cap_items"] = capped_items.height
    state.pairs = state.pairs.with_columns(
        (pl.col("item_id").is_in(capped_items.get_column("item_id").implode())
         & (pl.col("contribution") > pl.col("trusted_contribution"))).alias("untrusted_cap")
    )
    state.per_item = per_item


# rule 10 -----------------------------------------------------------------------------------------
def _exclude(state: TrendingState, rule: str, excluded: pl.Expr) -> None:
    """Count the items of the window `rule` excludes (each eligibility rule counts over every item,
    whatever the others exclude) and mark them ineligible."""
    state.discounted[rule] = int(state.per_item.select(excluded.sum()).item())
    state.per_item = state.per_item.with_columns(pl.col("eligible") & ~excluded)


def rule_catalogue(state: TrendingState) -> None:
    """With a catalogue, only its items are ranked."""
    if state.catalog is None:
        return
    state.per_item = state.per_item.join(state.catalog, on="item_id", how="left")
    _exclude(state, "not_in_catalog", pl.col("blocked").is_null())


def rule_safety(state: TrendingState) -> None:
    """Blocked items (flagged, feature library, manual blocks, above the audience's age band) are
    left out."""
    if state.catalog is not None:
        _exclude(state, "blocked_item", pl.col("blocked").fill_null(False))


def rule_minors(state: TrendingState) -> None:
    """A minors' list leaves out items that are not minor-safe."""
    if state.catalog is None:
        return
    _exclude(state, "not_minor_safe", ~pl.col("minor_safe").fill_null(True))  # all safe without a minors' mask


def rule_min_distinct_users(state: TrendingState) -> None:
    """An item needs min_distinct_users users with a positive contribution (a group counts once)."""
    below = pl.col("eligible") & (pl.col("counted_users") < state.config.min_distinct_users)
    _exclude(state, "below_min_users", below)


# The declared order. Articles (final numbering, draft alias): Art. 11: hot lists are a key surface;
# Art. 14 (draft 13): no fake accounts or manipulated lists; Art. 18 (draft 16): minors.
TRENDING_RULES: tuple[TrendingRule, ...] = (
    TrendingRule("window", "Art. 11, Art. 14 (draft 13)", ("window_hours",), rule_window),
    TrendingRule("event_weights", "Art. 11", ("event_weights",), rule_event_weights),
    TrendingRule("time_decay", "Art. 11", ("half_life_hours",), rule_time_decay),
    TrendingRule("account_facts", "Art. 14 (draft 13)", ("new_account_days", "unknown_account_is_new", "unknown_history"),
                 rule_account_facts),
    TrendingRule("no_history", "Art. 14 (draft 13)", ("manipulation_filters", "no_history_weight"), rule_no_history),
    TrendingRule("new_account", "Art. 14 (draft 13)", ("manipulation_filters", "new_account_days", "new_account_weight"),
                 rule_new_account),
    TrendingRule("thin_history", "Art. 14 (draft 13)", ("manipulation_filters", "history_min_items", "thin_history_weight"),
                 rule_thin_history),
    TrendingRule("concentration", "Art. 14 (draft 13)", ("manipulation_filters", "concentration_max_items",
                                              "concentration_weight"), rule_concentration),
    TrendingRule("account_trust", "Art. 14 (draft 13)", ("manipulation_filters", "no_history_weight", "new_account_weight",
                                              "thin_history_weight", "concentration_weight"), rule_account_trust),
    TrendingRule("distinct_users", "Art. 14 (draft 13)", (), rule_distinct_users),
    TrendingRule("burst", "Art. 14 (draft 13)", ("manipulation_filters", "burst_enabled", "burst_minutes", "burst_min_accounts",
                                      "burst_new_account_share"), rule_burst),
    TrendingRule("lockstep", "Art. 14 (draft 13)", ("manipulation_filters", "lockstep_enabled", "lockstep_min_jaccard",
                                         "lockstep_min_items", "lockstep_min_group"), rule_lockstep),
    TrendingRule("cluster", "Art. 14 (draft 13)", ("manipulation_filters", "cluster_enabled", "lockstep_min_items",
                                        "cluster_min_group"), rule_cluster),
    TrendingRule("groups_count_once", "Art. 14 (draft 13)", (), rule_groups_count_once),
    TrendingRule("untrusted_cap", "Art. 14 (draft 13)", ("manipulation_filters", "untrusted_max_share"), rule_untrusted_cap),
    TrendingRule("not_in_catalog", "Art. 11", (), rule_catalogue),
    TrendingRule("blocked_item", "Art. 11", (), rule_safety),
    TrendingRule("not_minor_safe", "Art. 18 (draft 16)", (), rule_minors),
    TrendingRule("below_min_users", "Art. 11, Art. 14 (draft 13)", ("min_distinct_users",), rule_min_distinct_users),
)


def describe_rules(config: TrendingConfig) -> list[dict[str, Any]]:
    """The rules in the order applied, as published (transparency page): name, article, what the rule
    does, and the values of the config fields it reads."""
    values = config.model_dump()
    return [
        {"rule": rule.name, "article": rule.article, "what": rule.summary,
         "parameters": {name: values[name] for name in rule.parameters}}
        for rule in TRENDING_RULES
    ]


def _rank(state: TrendingState, top_n: int) -> tuple[TrendingItem, ...]:
    """Items with a positive score, best first; ties break by item id."""
    ranked = (
        state.per_item.filter(pl.col("eligible") & (pl.col("score") > 0))
        .sort(["score", "item_id"], descending=[True, False])
        .head(top_n)
    )
    return tuple(
        TrendingItem(item_id=row[0], score=float(row[1]), distinct_users=int(row[2]), counted_users=int(row[3]))
        for row in ranked.select("item_id", "score", "distinct_users", "counted_users").iter_rows()
    )


_FLAG_ROWS: dict[str, pl.Expr] = {
    "no_history": pl.col("no_history"),
    "new_account": pl.col("new_account"),
    "thin_history": pl.col("thin_history"),
    "concentration": pl.col("concentration"),
    "burst": pl.col("burst"),
    "lockstep": pl.col("lockstep") >= 0,
    "cluster": pl.col("cluster") >= 0,
    "untrusted_cap": pl.col("untrusted_cap"),
}


def _flagged(pairs: pl.DataFrame) -> pl.DataFrame:
    """(user_id, item_id, rule) for every contribution a manipulation rule discounted."""
    return pl.concat(
        [pairs.filter(rows).select("user_id", "item_id", pl.lit(rule).alias("rule")) for rule, rows in _FLAG_ROWS.items()]
    )


def _catalog_frame(catalog_item_ids: Sequence[str], minor_safe: np.ndarray | None,
                   blocked: np.ndarray | None) -> pl.DataFrame:
    item_ids = [str(i) for i in catalog_item_ids]
    n_catalog = len(item_ids)
    minor_safe = _catalog_mask("minor_safe", minor_safe, n_catalog)
    blocked = _catalog_mask("blocked", blocked, n_catalog)
    return pl.DataFrame(
        {
            "item_id": item_ids,
            "minor_safe": minor_safe if minor_safe is not None else np.ones(n_catalog, dtype=bool),
            "blocked": blocked if blocked is not None else np.zeros(n_catalog, dtype=bool),
        },
        schema={"item_id": pl.Utf8, "minor_safe": pl.Boolean, "blocked": pl.Boolean},
    ).unique("item_id", keep="first")


# -- the list ---------------------------------------------------------------------------------------
def compute_trending(
    events: pl.DataFrame,
    accounts: Accounts,
    now: datetime,
    config: TrendingConfig | None = None,
    top_n: int = 50,
    catalog_item_ids: Sequence[str] | None = None,
    minor_safe: np.ndarray | None = None,
    blocked: np.ndarray | None = None,
) -> TrendingResult:
    """Rank items by de-duplicated, decayed, manipulation-filtered engagement: `TRENDING_RULES` in order.

    `events` has columns event_id, user_id, item_id, type, ts (datetime, naive = UTC, or unix
    seconds). `accounts` is a mapping user_id -> created_at (datetime or None; history unknown), or
    a polars frame with columns user_id, created_at (datetime, unix seconds or null) and optionally
    prior_items (distinct items the account engaged before the window; null = unknown); accounts
    missing from it have unknown creation time and history. With `catalog_item_ids`, only catalogue
    items are ranked, and `minor_safe` / `blocked` (bool arrays aligned with it) keep only
    minor-safe items / drop blocked ones.
    """
    config = config or TrendingConfig()
    if top_n < 1:
        raise TrendingInputError(f"top_n: must be >= 1, got {top_n}")
    if (minor_safe is not None or blocked is not None) and catalog_item_ids is None:
        raise TrendingInputError("minor_safe / blocked: need catalog_item_ids to align them with items")
    now = _aware(now)
    frame = _read_events(events)
    state = TrendingState(
        config=config,
        now_s=now.timestamp(),
        accounts=_read_accounts(accounts),
        catalog=None if catalog_item_ids is None else _catalog_frame(catalog_item_ids, minor_safe, blocked),
        events=frame,
    )
    for rule in TRENDING_RULES:
        rule.apply(state)
    flagged = _flagged(state.pairs)
    counts = dict(flagged.get_column("rule").value_counts().iter_rows()) if flagged.height else {}
    state.discounted.update({rule: int(counts.get(rule, 0)) for rule in FLAG_RULES})
    return TrendingResult(items=_rank(state, top_n), discounted=state.discounted, as_of=now, flagged=flagged)
