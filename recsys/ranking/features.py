"""Ranker features of (user, candidate) pairs, computed identically in training and serving.

Inputs are only behavioural: the user's vector, the user's history of item indices (time order,
possibly filtered by the caller, e.g. after a deleted interest tag), the candidates with their
retrieval scores, and per-item statistics of the training window. No user attribute (age, gender,
occupation, ...) is an input, by construction: `build_features` never receives one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix

SECONDS_PER_DAY = 86_400.0

FEATURE_NAMES: list[str] = [
    "retrieval_score",  # inner product of user and item vectors
    "retrieval_score_gap",  # score minus the best candidate's score
    "retrieval_rank_log",  # log1p of the rank among the candidates, by retrieval score
    "item_log_popularity",  # log1p(positives in the window) minus its catalog mean
    "item_recent_log_popularity",  # log1p(positives in the window's last `recent_days`)
    "item_recency_log_days",  # log1p(days from the item's last positive to the window's end)
    "item_time_gap_days",  # item's mean positive time minus the mean over the user's recent items (days / 100)
    "item_release_year",  # (year - 1990) / 10; the catalog median when unknown
    "release_year_gap",  # item's release year minus the mean of the user's recent items (decades)
    "category_affinity",  # user's category distribution (history) dotted with the item's categories
    "primary_category_share",  # share of the user's history in the item's primary category
    "max_cosine_recent",  # max cosine of the item vector to the user's last `recent_items` items
    "mean_cosine_recent",  # mean of those cosines
    "cosine_last_item",  # cosine to the user's most recent item
    "history_log_length",  # log1p(history length)
    "popularity_gap",  # item log-popularity minus the mean over the user's history
    "sequential_score",  # the sequence model's logit of the item after the user's sequence (0: no such source)
    "sequential_score_gap",  # that logit minus the best candidate's
    "sequential_rank_log",  # log1p of the rank among the candidates, by the sequential logit
    "from_sequential",  # 1 when the sequential source retrieved the item (in its top-N), else 0
]
SEQUENTIAL_FEATURES = FEATURE_NAMES[-4:]  # zero when the bundle has no sequential source


class FeatureConfig(BaseModel):
    """Windows of the history and of time the features look at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recent_items: int = Field(default=20, ge=1)  # last N history items for the cosine and time features
    recent_days: float = Field(default=30.0, gt=0)  # window of `item_recent_log_popularity`


@dataclass(frozen=True)
class ItemStats:
    """Per-item arrays the features read, built once from the training window and saved in the bundle."""

    unit_factors: np.ndarray  # float32 (n_items, d), L2-normalised item vectors
    log_popularity: np.ndarray  # float32
    recent_log_popularity: np.ndarray  # float32
    recency_log_days: np.ndarray  # float32
    mean_time_days: np.ndarray  # float32, days before the window's end (the catalog mean when unseen)
    release_year: np.ndarray  # float32, decades since 1990
    category_codes: np.ndarray  # int32 (n_items, max_categories), -1 pads; column 0 is the primary
    n_categories: int

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n_categories"}
        np.savez(path, n_categories=np.int64(self.n_categories), **arrays)

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        with np.load(path, allow_pickle=False) as data:
            values = {f.name: data[f.name] for f in fields(cls) if f.name != "n_categories"}
            return cls(n_categories=int(data["n_categories"]), **values)


@dataclass(frozen=True)
class CategoryEncoding:
    """Categories of a catalog as codes: names, primary codes, a multi-hot matrix, padded code rows."""

    names: list[str]
    primary: np.ndarray  # int32 code of each item's first category
    multi_hot: csr_matrix  # float32 (n_items, n_categories)
    codes: np.ndarray  # int32 (n_items, max categories per item), list order (primary first), -1 pads


NO_CATEGORY = ""  # the name given to items without any category, so every primary code is valid


def encode_categories(categories: list[list[str] | None] | pl.Series) -> CategoryEncoding:
    """Codes in sorted name order; items without a category get the name `NO_CATEGORY`.
    Vectorised (polars), so a million-item catalog encodes in well under a second."""
    lists = pl.Series("categories", categories, dtype=pl.List(pl.Utf8))
    lists = lists.fill_null([]).list.drop_nulls().list.unique(maintain_order=True)
    empty = lists.list.len() == 0
    lists = pl.select(pl.when(empty).then(pl.lit([NO_CATEGORY])).otherwise(lists)).to_series()
    lengths = lists.list.len().to_numpy().astype(np.int64)
    flat = lists.explode().to_numpy().astype(str)
    unique_names, flat_codes = np.unique(flat, return_inverse=True)
    names = [str(n) for n in unique_names]
    if NO_CATEGORY in names and names[0] == NO_CATEGORY:  # keep the placeholder last, after real names
        order = names[1:] + [NO_CATEGORY]
        flat_codes = np.where(flat_codes == 0, len(names) - 1, flat_codes - 1)
        names = order
    n_items = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows = np.repeat(np.arange(n_items, dtype=np.int64), lengths)
    codes = np.full((n_items, max(1, int(lengths.max()) if n_items else 1)), -1, dtype=np.int32)
    codes[rows, np.arange(len(flat_codes)) - np.repeat(starts, lengths)] = flat_codes
    multi_hot = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, flat_codes.astype(np.int64))),
                           shape=(n_items, len(names)))
    primary = codes[:, 0].copy() if n_items else np.zeros(0, dtype=np.int32)
    return CategoryEncoding(names, primary.astype(np.int32), multi_hot, codes)


def item_stats(
    item_factors: np.ndarray,
    history_items: np.ndarray,
    history_timestamps: np.ndarray,
    codes: np.ndarray,
    n_categories: int,
    release_year: np.ndarray,
    config: FeatureConfig,
) -> ItemStats:
    """Statistics of every item over one training window (the positives given)."""
    n_items = len(item_factors)
    factors = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    unit = factors / np.maximum(norms, 1e-12)
    end = float(history_timestamps.max()) if len(history_timestamps) else 0.0
    counts = np.bincount(history_items, minlength=n_items).astype(np.float64)
    log_pop = np.log1p(counts)
    recent = history_timestamps >= end - config.recent_days * SECONDS_PER_DAY
    recent_counts = np.bincount(history_items[recent], minlength=n_items)
    last = np.full(n_items, -np.inf)
    np.maximum.at(last, history_items, history_timestamps.astype(np.float64))
    seen = counts > 0
    first_time = float(history_timestamps.min()) if len(history_timestamps) else 0.0
    last_days = (end - np.where(seen, last, first_time)) / SECONDS_PER_DAY
    time_sum = np.bincount(history_items, weights=history_timestamps.astype(np.float64), minlength=n_items)
    mean_days = (end - np.where(seen, time_sum / np.maximum(counts, 1), 0.0)) / SECONDS_PER_DAY
    if seen.any():
        mean_days = np.where(seen, mean_days, mean_days[seen].mean())
    year = np.asarray(release_year, dtype=np.float64)
    known = np.isfinite(year)
    year = np.where(known, year, np.median(year[known]) if known.any() else 1990.0)
    return ItemStats(
        unit_factors=np.ascontiguousarray(unit, dtype=np.float32),
        log_popularity=(log_pop - log_pop.mean()).astype(np.float32),
        recent_log_popularity=np.log1p(recent_counts).astype(np.float32),
        recency_log_days=np.log1p(np.maximum(last_days, 0.0)).astype(np.float32),
        mean_time_days=mean_days.astype(np.float32),
        release_year=((year - 1990.0) / 10.0).astype(np.float32),
        category_codes=np.ascontiguousarray(codes, dtype=np.int32),
        n_categories=int(n_categories),
    )


def _score_rank(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score minus the best, log1p of the rank by score) among one request's candidates."""
    rank = np.empty(len(scores), dtype=np.float32)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores), dtype=np.float32)
    return scores - scores.max(), np.log1p(rank)


def build_features(
    stats: ItemStats,
    user_vector: np.ndarray,
    history_idx: np.ndarray,
    cand_idx: np.ndarray,
    retrieval_scores: np.ndarray,
    config: FeatureConfig,
    sequential_scores: np.ndarray | None = None,
    from_sequential: np.ndarray | None = None,
) -> np.ndarray:
    """Feature matrix (len(cand_idx), len(FEATURE_NAMES)) float32 for one request.

    `history_idx` is the history the model may see (time order, oldest first); `retrieval_scores`
    (ALS) and `sequential_scores` (the sequence model's logits, None without that source) align
    with `cand_idx`; `from_sequential` marks the candidates the sequential source retrieved.
    `user_vector` is accepted for rankers that read it; the features here reach it through
    `retrieval_scores`. Training (`recsys.ranking.train.featurise`) and serving
    (`ModelBundle.features`) both call this function, so the ranker sees the same features.
    """
    cand = np.asarray(cand_idx, dtype=np.int64)
    history = np.asarray(history_idx, dtype=np.int64)
    scores = np.asarray(retrieval_scores, dtype=np.float32)
    n = len(cand)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    recent = history[-config.recent_items :]

    out[:, 0] = scores
    out[:, 1], out[:, 2] = _score_rank(scores)
    if sequential_scores is not None:
        sequential = np.asarray(sequential_scores, dtype=np.float32)
        out[:, 16] = sequential
        out[:, 17], out[:, 18] = _score_rank(sequential)
    if from_sequential is not None:
        out[:, 19] = np.asarray(from_sequential, dtype=np.float32)
    log_pop = stats.log_popularity[cand]
    out[:, 3] = log_pop
    out[:, 4] = stats.recent_log_popularity[cand]
    out[:, 5] = stats.recency_log_days[cand]
    year = stats.release_year[cand]
    out[:, 7] = year
    out[:, 14] = np.log1p(len(history))
    if len(history) == 0:
        return out
    out[:, 6] = (stats.mean_time_days[recent].mean() - stats.mean_time_days[cand]) / 100.0
    out[:, 8] = year - stats.release_year[recent].mean()

    history_codes = stats.category_codes[history]
    counts = np.bincount(history_codes[history_codes >= 0], minlength=stats.n_categories + 1).astype(np.float32)
    distribution = counts / max(counts.sum(), 1.0)
    distribution[-1] = 0.0  # the -1 padding indexes this last slot
    cand_codes = stats.category_codes[cand]
    out[:, 9] = distribution[cand_codes].sum(axis=1)
    out[:, 10] = distribution[cand_codes[:, 0]]

    cosines = stats.unit_factors[cand] @ stats.unit_factors[recent].T
    out[:, 11] = cosines.max(axis=1)
    out[:, 12] = cosines.mean(axis=1)
    out[:, 13] = cosines[:, -1]
    out[:, 15] = log_pop - stats.log_popularity[history].mean()
    return out
