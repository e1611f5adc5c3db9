"""A seeded, vectorised synthetic catalog for tests and scale benchmarks.

It has what the policy pipeline must cope with: categories of uneven size, a Zipf popularity
skew, users with favourite categories, minors, items that duplicate another item's content,
flagged items, algorithm-generated (synthetic) items, a small mainstream editorial pool and age
ratings consistent with the minor-safe and flagged labels.
One million items and 100k users take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.datasets.labels import MINOR_SAFE_MAX_RATING
from recsys.schema import Dataset

START_TIMESTAMP = 1_700_000_000  # 2023-11-14, so runs are reproducible whatever today is
SPAN_SECONDS = 180 * 24 * 3600
AGE_RATING_STREAM = 0xA6E  # second seed word of the age-rating generator


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator; shares are fractions of the item (or user) count."""

    n_users: int = 1_000
    n_items: int = 5_000
    n_categories: int = 24
    interactions_per_user: float = 20.0
    popularity_exponent: float = 0.9  # Zipf exponent of item popularity
    favourite_share: float = 0.75  # share of a user's interactions in their two favourite categories
    minor_share: float = 0.1
    duplicate_share: float = 0.01
    flagged_share: float = 0.005
    synthetic_share: float = 0.02
    mainstream_share: float = 0.002
    unsafe_category_every: int = 6  # every 6th category is not minor-safe
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_categories"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_items < self.n_categories:
            raise ValueError(f"n_items ({self.n_items}) must be >= n_categories ({self.n_categories})")


def category_names(n: int) -> list[str]:
    return [f"cat{c:02d}" for c in range(n)]


def generate(config: SyntheticConfig) -> Dataset:
    rng = np.random.default_rng(config.seed)
    items, item_category, cdf, category_start = _items(config, rng)
    users, favourites = _users(config, rng)
    interactions = _interactions(config, rng, item_category, cdf, category_start, favourites)
    return Dataset.from_frames("synthetic", interactions, items, users)


def _items(
    config: SyntheticConfig, rng: np.random.Generator
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    n, n_cat = config.n_items, config.n_categories
    # Category sizes follow a mild skew; items are laid out sorted by category.
    category_weights = 1.0 / np.arange(1, n_cat + 1) ** 0.5
    category = np.sort(rng.choice(n_cat, size=n, p=category_weights / category_weights.sum()))
    category[:n_cat] = np.arange(n_cat)  # every category has at least one item
    category.sort()
    popularity = 1.0 / rng.permutation(np.arange(1, n + 1)) ** config.popularity_exponent
    # Within-category cumulative popularity, offset by the category index, so that one
    # searchsorted(cdf, category + u) draws an item of `category` by popularity.
    category_start = np.searchsorted(category, np.arange(n_cat + 1))
    totals = np.add.reduceat(popularity, category_start[:-1])
    cumulative = np.cumsum(popularity)
    before = np.concatenate([[0.0], cumulative[category_start[1:-1] - 1]])
    cdf = category + (cumulative - before[category]) / totals[category]

    item_number = np.arange(n)
    content = item_number.copy()
    duplicates = rng.random(n) < config.duplicate_share
    # A duplicate repeats the content of another item of its category (a re-upload).
    span = category_start[category + 1] - category_start[category]
    content[duplicates] = category_start[category[duplicates]] + rng.integers(0, span[duplicates])
    names = np.array(category_names(n_cat))
    secondary = np.where(rng.random(n) < 0.3, rng.integers(0, n_cat, n), -1)
    unsafe_category = (category % config.unsafe_category_every) == config.unsafe_category_every - 1
    # Same draws, in the same order, as before age ratings existed: the other columns do not change.
    release_year = rng.integers(1990, 2024, n).astype(np.int32)
    minor_safe = ~unsafe_category & (rng.random(n) > 0.02)
    mainstream = rng.random(n) < config.mainstream_share
    synthetic = rng.random(n) < config.synthetic_share
    flagged = rng.random(n) < config.flagged_share
    age_rating = _age_ratings(config, unsafe_category, minor_safe, flagged)
    frame = pl.DataFrame(
        {
            "item_id": item_number,
            "content": content,
            "primary": names[category],
            "secondary": pl.Series(names[np.maximum(secondary, 0)], dtype=pl.Utf8).scatter(
                np.flatnonzero(secondary < 0), None
            ),
            "release_year": release_year,
            "minor_safe": age_rating <= MINOR_SAFE_MAX_RATING,
            "age_rating": age_rating,
            "mainstream": mainstream,
            "synthetic": synthetic,
            "flagged": flagged,
        }
    )
    frame = frame.with_columns(
        item_id=pl.format("i{}", pl.col("item_id")),
        title=pl.format("{} story {}", pl.col("primary"), pl.col("content")),
        content_key=pl.format("c{}", pl.col("content")),
        categories=pl.concat_list("primary", "secondary").list.drop_nulls().list.unique(maintain_order=True),
    ).select(
        "item_id", "title", "categories", "release_year", "content_key",
        "minor_safe", "age_rating", "mainstream", "synthetic", "flagged",
    )
    return frame, category, cdf, category_start


def _age_ratings(
    config: SyntheticConfig, unsafe_category: np.ndarray, minor_safe: np.ndarray, flagged: np.ndarray
) -> np.ndarray:
    """Age ratings consistent with the other labels, so that minor_safe == (age_rating == 0).

    minor-safe items are rated 0 (all ages); items of an unsafe category 16 or 18; the other
    items that are not minor-safe 8, 12 or 16; flagged items (illegal or harmful) 18, and so are
    never minor-safe. Drawn from a generator of their own (seeded from `config.seed`), so adding
    them left every other column of a seeded catalog unchanged.
    """
    rng = np.random.default_rng([config.seed, AGE_RATING_STREAM])
    n = len(minor_safe)
    adult_category = np.array([16, 18], dtype=np.int8)[rng.integers(0, 2, n)]
    older_minors = np.array([8, 12, 16], dtype=np.int8)[rng.integers(0, 3, n)]
    rating = np.where(minor_safe, 0, np.where(unsafe_category, adult_category, older_minors)).astype(np.int8)
    rating[flagged] = 18
    return rating


def _users(config: SyntheticConfig, rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    n = config.n_users
    minor = rng.random(n) < config.minor_share
    age = np.where(minor, rng.integers(6, 18, n), rng.integers(18, 75, n)).astype(np.int32)
    favourites = rng.integers(0, config.n_categories, size=(n, 2))
    users = pl.DataFrame({"user_id": np.arange(n), "age": age}).with_columns(
        user_id=pl.format("u{}", pl.col("user_id"))
    )
    return users, favourites


def _interactions(config: SyntheticConfig, rng: np.random.Generator, item_category: np.ndarray, cdf: np.ndarray,
                  category_start: np.ndarray, favourites: np.ndarray) -> pl.DataFrame:
    n_users = config.n_users
    counts = np.maximum(1, rng.poisson(config.interactions_per_user, n_users))
    user = np.repeat(np.arange(n_users), counts)
    total = user.size
    # Each interaction picks a category: a favourite with favourite_share, else by catalog share.
    pick_favourite = rng.random(total) < config.favourite_share
    which = rng.integers(0, 2, total)
    catalog_share = np.diff(category_start) / len(item_category)
    random_category = rng.choice(config.n_categories, size=total, p=catalog_share)
    category = np.where(pick_favourite, favourites[user, which], random_category)
    draw = category + rng.random(total)
    item = np.minimum(np.searchsorted(cdf, draw), len(cdf) - 1)
    # Ratings are higher inside a user's favourite categories.
    base = np.where(pick_favourite, 3.8, 2.8)
    rating = np.clip(np.rint(base + rng.normal(0, 1.0, total)), 1, 5).astype(np.float32)
    timestamp = START_TIMESTAMP + rng.integers(0, SPAN_SECONDS, total)
    frame = pl.DataFrame({"user": user, "item": item, "timestamp": timestamp, "rating": rating})
    frame = frame.unique(subset=["user", "item"], keep="first", maintain_order=True)
    return frame.select(
        user_id=pl.format("u{}", pl.col("user")),
        item_id=pl.format("i{}", pl.col("item")),
        timestamp=pl.col("timestamp").cast(pl.Int64),
        rating=pl.col("rating"),
    )
