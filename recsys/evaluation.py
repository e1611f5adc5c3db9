"""The offline evaluation protocol (docs/DESIGN.md) and its metrics, for any model that ranks items.

Protocol: positives are ratings >= 4; each user's positives are sorted by time (ties by item id)
and the last ceil(0.2 n) go to test. Every item is ranked; Recall@10 = hits / min(10, |test|),
NDCG@10 with binary relevance and ideal DCG over min(10, |test|), both averaged over users with a
test item. Validation splits are carved from train with the same function (`split_by_time`), so
tuning never sees test.

Two exclusion rules say which items leave the ranking (`RULES`); every model is reported under both:

- "seen" (primary, `unseen_*` metric names): the served reality. Every item the user rated at ANY
  value strictly before their first held-out positive is known to the service, which never shows
  it again, so it is excluded. "Before" is the protocol's order: (timestamp, item tie order), the
  order the positives are split in, so every train positive is before and the held-out positive
  itself is not. Nothing rated at or after that point is excluded (no leak from the future).
- "positives" (the published protocol, metric names without prefix): only the user's train
  positives are excluded, so the numbers compare with peers that use the same protocol.

Items rated below the positive threshold are never positives (not train, not test); under "seen"
they are known items, like a real feed knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from recsys.schema import Dataset

MIN_RATING = 4.0
TEST_SHARE = 0.2
K = 10

EXCLUDE_SEEN = "seen"  # primary: every item rated (any value) before the first held-out positive
EXCLUDE_POSITIVES = "positives"  # the published protocol: the train positives only
RULES = (EXCLUDE_SEEN, EXCLUDE_POSITIVES)
RULE_PREFIX = {EXCLUDE_SEEN: "unseen_", EXCLUDE_POSITIVES: ""}
"""Metric names per rule: `unseen_ndcg_at_10` ranks unseen items only (served reality); `ndcg_at_10`
keeps its historical meaning (train positives excluded, comparable with published numbers)."""


class EvaluationError(ValueError):
    """Bad evaluation input; the message names the argument."""


# -- per-user, time-ordered sequences --------------------------------------------------------------


@dataclass(frozen=True)
class Histories:
    """Per-user item sequences in time order (CSR-like): user u owns items[indptr[u]:indptr[u+1]]."""

    indptr: np.ndarray  # int64, n_users + 1
    items: np.ndarray  # int64 item indices
    timestamps: np.ndarray  # int64 unix seconds, aligned with items
    n_items: int
    ratings: np.ndarray | None = None  # float32, aligned with items (interaction histories); None for positives

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def ratings_of(self, user: int) -> np.ndarray:
        """The ratings aligned with `of(user)` (raises when this history carries none)."""
        if self.ratings is None:
            raise EvaluationError("ratings: this history holds positives only, without ratings")
        return self.ratings[self.indptr[user] : self.indptr[user + 1]]

    def matrix(self) -> csr_matrix:
        """Binary user x item matrix (float32 ones), column indices sorted."""
        data = np.ones(len(self.items), dtype=np.float32)
        out = csr_matrix((data, self.items, self.indptr), shape=(self.n_users, self.n_items))
        out.sum_duplicates()
        out.sort_indices()
        return out


def held_out_count(n: np.ndarray, share: float) -> np.ndarray:
    """ceil(share * n) in exact integer arithmetic (0.2 * 15 is 3.0000000000000004 in floats)."""
    fraction = Fraction(share).limit_denominator(1_000_000)
    if not 0 <= fraction <= 1:
        raise EvaluationError(f"share: expected a fraction in [0, 1], got {share}")
    n = np.asarray(n, dtype=np.int64)
    return -((-n * fraction.numerator) // fraction.denominator)


def split_by_time(histories: Histories, share: float = TEST_SHARE) -> tuple[Histories, Histories]:
    """Per user, the last ceil(share * n) items (in time order) go to the second part."""
    lengths = histories.lengths
    held = held_out_count(lengths, share)
    position = np.arange(len(histories.items)) - np.repeat(histories.indptr[:-1], lengths)
    to_held = position >= np.repeat(lengths - held, lengths)
    return _subset(histories, ~to_held), _subset(histories, to_held)


def _subset(histories: Histories, keep: np.ndarray) -> Histories:
    owner = np.repeat(np.arange(histories.n_users), histories.lengths)
    counts = np.bincount(owner[keep], minlength=histories.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ratings = None if histories.ratings is None else histories.ratings[keep]
    return Histories(indptr, histories.items[keep], histories.timestamps[keep], histories.n_items, ratings)


def before_first(events: Histories, held_out: Histories, tie_rank: np.ndarray) -> Histories:
    """Per user, the events of `events` strictly before the user's first `held_out` item, in the
    protocol's order (timestamp, then the item's tie rank); every event of a user without a
    held-out item. `held_out` must be in that order (as `split_by_time` leaves it)."""
    if events.n_users != held_out.n_users:
        raise EvaluationError(f"events: {events.n_users} users but held_out has {held_out.n_users}")
    owner = np.repeat(np.arange(events.n_users), events.lengths)
    has = held_out.lengths > 0
    first = held_out.indptr[:-1][has]
    cut_time = np.full(events.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    cut_rank = np.full(events.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    cut_time[has] = held_out.timestamps[first]
    cut_rank[has] = tie_rank[held_out.items[first]]
    time, rank = events.timestamps, tie_rank[events.items]
    keep = (time < cut_time[owner]) | ((time == cut_time[owner]) & (rank < cut_rank[owner]))
    return _subset(events, keep)


def item_tie_order(item_ids: np.ndarray) -> np.ndarray:
    """Rank of each item id in natural order: numeric when every id is an integer, else lexicographic."""
    ids = np.asarray(item_ids).astype(str)
    try:
        keys = ids.astype(np.int64)
    except ValueError:
        keys = ids
    order = np.argsort(keys, kind="stable")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


@dataclass(frozen=True)
class Split:
    """The protocol's train/test split of one dataset's positives, encoded as indices.

    Items are indexed in the dataset's item order (the whole catalog is ranked); users are every
    user with at least one positive, in order of first appearance in the dataset's users frame.
    """

    user_ids: np.ndarray  # str
    item_ids: np.ndarray  # str
    train: Histories
    test: Histories
    # Every interaction (any rating, with ratings) strictly before the user's first test item: what
    # the service knows at the cut (the "seen" rule). None: only the positives are known (train).
    seen: Histories | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def known(self) -> Histories:
        """The interactions the service knows at the cut (`seen`, or the train positives without it)."""
        return self.seen if self.seen is not None else self.train

    def exclusion(self, rule: str = EXCLUDE_SEEN) -> csr_matrix:
        """Binary users x items matrix of the items `rule` removes from each user's ranking: the
        train positives ("positives"), or with them every known interaction ("seen")."""
        if rule not in RULES:
            raise EvaluationError(f"rule: expected one of {RULES}, got {rule!r}")
        if rule == EXCLUDE_POSITIVES or self.seen is None:
            return self.train.matrix()
        both = self.seen.matrix() + self.train.matrix()  # train positives precede the cut; union for safety
        both.data[:] = 1.0
        return both

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def test_users(self) -> np.ndarray:
        return np.flatnonzero(self.test.lengths > 0)


def interaction_histories(dataset: Dataset, user_ids: np.ndarray, item_ids: np.ndarray) -> Histories:
    """Every interaction (any rating) of `user_ids`, indexed like them and `item_ids`, each user's in
    the protocol's order (timestamp, ties by item id), ratings kept. Repeated (user, item) events
    are all kept; interactions of other users or unknown items are dropped."""
    user_ids = np.asarray(user_ids).astype(str)
    item_ids = np.asarray(item_ids).astype(str)
    user_index = pl.DataFrame({"user_id": user_ids, "u": np.arange(len(user_ids), dtype=np.int64)})
    item_index = pl.DataFrame({"item_id": item_ids, "i": np.arange(len(item_ids), dtype=np.int64)})
    coded = dataset.interactions.select("user_id", "item_id", "timestamp", "rating")
    coded = coded.join(user_index, on="user_id").join(item_index, on="item_id")
    user = coded.get_column("u").to_numpy()
    item = coded.get_column("i").to_numpy()
    timestamp = coded.get_column("timestamp").to_numpy().astype(np.int64)
    rating = coded.get_column("rating").cast(pl.Float32).to_numpy()
    order = np.lexsort((rating, item_tie_order(item_ids)[item], timestamp, user))
    counts = np.bincount(user, minlength=len(user_ids))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Histories(indptr, item[order].astype(np.int64), timestamp[order], len(item_ids),
                     rating[order].astype(np.float32))


def positive_histories(
    dataset: Dataset, min_rating: float = MIN_RATING
) -> tuple[np.ndarray, np.ndarray, Histories]:
    """(user_ids, item_ids, histories) of the positives, each user's sorted by time, ties by item id."""
    item_ids = dataset.items.get_column("item_id").to_numpy().astype(str)
    positives = dataset.interactions.filter(pl.col("rating") >= min_rating)
    known_users = dataset.users.get_column("user_id")
    seen = positives.get_column("user_id").unique(maintain_order=True)
    candidates = pl.concat([known_users, seen.filter(~seen.is_in(known_users))])
    has_positive = candidates.is_in(positives.get_column("user_id").unique())
    user_ids = candidates.filter(has_positive).to_numpy().astype(str)
    user_index = pl.DataFrame({"user_id": user_ids, "u": np.arange(len(user_ids), dtype=np.int64)})
    item_index = pl.DataFrame({"item_id": item_ids, "i": np.arange(len(item_ids), dtype=np.int64)})
    coded = positives.join(user_index, on="user_id").join(item_index, on="item_id")
    # One event per (user, item): the earliest positive rating.
    coded = coded.sort("timestamp").unique(subset=["u", "i"], keep="first")
    user = coded.get_column("u").to_numpy()
    item = coded.get_column("i").to_numpy()
    timestamp = coded.get_column("timestamp").to_numpy().astype(np.int64)
    order = np.lexsort((item_tie_order(item_ids)[item], timestamp, user))
    counts = np.bincount(user, minlength=len(user_ids))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return user_ids, item_ids, Histories(indptr, item[order], timestamp[order], len(item_ids))


def protocol_split(dataset: Dataset, min_rating: float = MIN_RATING, test_share: float = TEST_SHARE) -> Split:
    """The protocol's split of `dataset`: per user, the last ceil(test_share * n) positives to test;
    `seen` holds every interaction (any rating) strictly before the user's first test positive."""
    user_ids, item_ids, histories = positive_histories(dataset, min_rating)
    if not len(histories.items):
        raise EvaluationError(f"{dataset.name}: no interaction has rating >= {min_rating}")
    train, test = split_by_time(histories, test_share)
    seen = before_first(interaction_histories(dataset, user_ids, item_ids), test, item_tie_order(item_ids))
    return Split(user_ids, item_ids, train, test, seen)


def validation_split(split: Split, share: float = TEST_SHARE) -> Split:
    """Carve a validation split from train exactly as test was carved from all positives; its
    `seen` is the part of the split's `seen` before each user's first validation positive."""
    inner, validation = split_by_time(split.train, share)
    seen = None if split.seen is None else before_first(split.seen, validation, item_tie_order(split.item_ids))
    return Split(split.user_ids, split.item_ids, inner, validation, seen)


# -- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserMetrics:
    """Per-user metric values of the evaluated users (users with a test item), in `users` order."""

    users: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    genres: np.ndarray  # distinct primary categories in the top k (nan when unknown)


def _hits(top_items: np.ndarray, users: np.ndarray, test: Histories) -> np.ndarray:
    """Boolean (n_users, k): is top_items[r, j] a test item of users[r]."""
    n_items = np.int64(test.n_items)
    test_users = np.repeat(np.arange(test.n_users, dtype=np.int64), test.lengths)
    test_keys = test_users * n_items + test.items
    keys = users.astype(np.int64)[:, None] * n_items + top_items
    return np.isin(keys, test_keys) & (top_items >= 0)


def ranking_metrics(top_items: np.ndarray, users: np.ndarray, test: Histories, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(recall@k, ndcg@k) per user, for ranked lists `top_items` (rows align with `users`; -1 = empty).

    Recall@k = hits / min(k, |test|); NDCG@k: binary gains, DCG over the first k ranks, ideal DCG
    over min(k, |test|) ranks. Users without a test item get nan.
    """
    top_items = np.asarray(top_items)
    if top_items.ndim != 2:
        raise EvaluationError(f"top_items: expected a 2-d array (users, k), got shape {top_items.shape}")
    if len(top_items) != len(users):
        raise EvaluationError(f"top_items: {len(top_items)} rows but {len(users)} users")
    top = top_items[:, :k]
    _check_distinct(top)
    hits = _hits(top, np.asarray(users), test)
    n_test = test.lengths[users]
    ideal_count = np.minimum(k, n_test)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts[: hits.shape[1]]
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_count]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n_test > 0, hits.sum(axis=1) / np.maximum(ideal_count, 1), np.nan)
        ndcg = np.where(n_test > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
    return recall, ndcg


def _check_distinct(top: np.ndarray) -> None:
    if top.shape[1] < 2:
        return
    ordered = np.sort(top, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise EvaluationError(f"top_items: row {row} repeats an item; a ranked list holds distinct items")


def candidate_recall(candidates: np.ndarray, users: np.ndarray, test: Histories) -> float:
    """Retrieval recall of a candidate stage: per user, the share of test positives inside the
    candidates (hits / |test|, no cap), averaged over users with a test item."""
    users = np.asarray(users)
    keep = test.lengths[users] > 0
    if not keep.any():
        return float("nan")
    hits = _hits(np.asarray(candidates)[keep], users[keep], test).sum(axis=1)
    return float(np.mean(hits / test.lengths[users[keep]]))


def genres_in_top(top_items: np.ndarray, item_category: np.ndarray | None) -> np.ndarray:
    """Distinct primary categories among each row's items (padding -1 ignored)."""
    if item_category is None:
        return np.full(len(top_items), np.nan)
    categories = np.where(top_items >= 0, item_category[np.maximum(top_items, 0)], -1)
    ordered = np.sort(categories, axis=1)
    distinct = (ordered[:, 1:] != ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    counts: np.ndarray = distinct.sum(axis=1) + (ordered[:, 0] >= 0)
    return counts


def summarize(top_items: np.ndarray, users: np.ndarray, split: Split, item_category: np.ndarray | None = None, k: int = K) -> dict[str, float]:
    """The protocol's table row for ranked lists of the evaluated users."""
    recall, ndcg = ranking_metrics(top_items, users, split.test, k)
    top = np.asarray(top_items)[:, :k]
    shown = np.unique(top[top >= 0])
    return {
        f"recall_at_{k}": float(np.nanmean(recall)),
        f"ndcg_at_{k}": float(np.nanmean(ndcg)),
        f"catalog_coverage_at_{k}": len(shown) / split.n_items,
        f"genres_at_{k}": float(np.mean(genres_in_top(top, item_category))) if item_category is not None else float("nan"),
        "users": float(len(users)),
    }


def summarize_rules(lists: Mapping[str, np.ndarray], users: np.ndarray, split: Split,
                    item_category: np.ndarray | None = None, k: int = K) -> dict[str, float]:
    """One table row from ranked lists per exclusion rule (keys of `lists`, see `RULES`): each
    rule's `summarize` under its `RULE_PREFIX` (`unseen_ndcg_at_10`, `ndcg_at_10`, ...), "users" once."""
    unknown = set(lists) - set(RULES)
    if unknown:
        raise EvaluationError(f"lists: unknown rule(s) {sorted(unknown)}; expected {RULES}")
    row: dict[str, float] = {}
    for rule in RULES:
        if rule in lists:
            for name, value in summarize(lists[rule], users, split, item_category, k).items():
                row[name if name == "users" else RULE_PREFIX[rule] + name] = value
    return row


# -- evaluating a model -------------------------------------------------------------------------


class Scorer(Protocol):
    """Anything that scores every item for a batch of users (e.g. a retrieval `Recommender`)."""

    def scores(self, user_idx: np.ndarray) -> np.ndarray: ...


TopK = Callable[[np.ndarray, int], np.ndarray]
"""(user indices, k) -> (n_users, k) ranked item indices, the items of the rule excluded; -1 pads."""


def top_k_from_scores(scores: np.ndarray, exclude: csr_matrix, k: int) -> np.ndarray:
    """Top-k item indices per row of dense `scores`, the items of the aligned `exclude` rows removed."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    rows, cols = exclude.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = _order_rows(part, part_scores)
    top = np.take_along_axis(part, order, axis=1)
    return np.where(np.take_along_axis(part_scores, order, axis=1) == -np.inf, -1, top)


def _order_rows(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row: indices sorting by score descending, ties by item index ascending (deterministic)."""
    order = np.argsort(items, axis=1, kind="stable")
    by_score = np.argsort(-np.take_along_axis(scores, order, axis=1), axis=1, kind="stable")
    return np.take_along_axis(order, by_score, axis=1)


SCORE_BUDGET = 1 << 25  # dense scores held at once (128 MB of float32): bounds the batch on big catalogs


def scorer_top_k(model: Scorer, train: csr_matrix, batch_size: int | None = None) -> TopK:
    """Full ranking for a dense scorer: every item scored, the items of row u of `train` (the train
    positives, or `Split.exclusion(rule)`) excluded for user u."""
    if batch_size is None:
        batch_size = max(1, min(1024, SCORE_BUDGET // max(1, train.shape[1])))

    def top_k(users: np.ndarray, k: int) -> np.ndarray:
        out = []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            out.append(top_k_from_scores(model.scores(batch), train[batch], k))
        return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)

    return top_k


def evaluate(top_k: TopK | Mapping[str, TopK], split: Split, item_category: np.ndarray | None = None,
             k: int = K) -> dict[str, float]:
    """Rank for every user with a test item and return the protocol's metrics. A mapping rule ->
    top-k gives every rule's metrics (`summarize_rules`); a single top-k is taken to exclude the
    train positives and gives the unprefixed names only."""
    users = split.test_users()
    if callable(top_k):
        return summarize(top_k(users, k), users, split, item_category, k)
    return summarize_rules({rule: make(users, k) for rule, make in top_k.items()}, users, split, item_category, k)


def evaluate_scorer(model: Scorer, split: Split, item_category: np.ndarray | None = None, k: int = K,
                    rules: tuple[str, ...] = RULES) -> dict[str, float]:
    """`evaluate` for a dense scorer under each of `rules` (default both: `unseen_*` and the
    unprefixed positives-only names)."""
    return evaluate({rule: scorer_top_k(model, split.exclusion(rule)) for rule in rules}, split, item_category, k)
