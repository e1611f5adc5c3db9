"""A bundle's serving columns: every per-item array the request path reads, as .npy files under
columns/ that each serving worker maps read-only, so the workers of one host share one copy.

Written once, when the bundle is written (training) or, for a bundle trained before columns existed,
by the first load (into a private folder renamed into place, so workers starting together never
see a half-written one). Everything here is derived from the bundle's own files: items.parquet,
item_ids.npy, user_ids.npy, history_indptr.npy, popularity.npy and item_stats.npz.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl

from recsys.datasets.labels import ensure_age_rating
from recsys.idmap import IdIndex
from recsys.ranking.features import ItemStats, encode_categories

COLUMNS_DIR = "columns"
COLUMNS_MANIFEST = "columns.json"
COLUMNS_VERSION = 1
LABELS = ("minor_safe", "mainstream", "synthetic", "flagged")
STATS_PREFIX = "stats_"


class ColumnsError(ValueError):
    """The columns of a bundle cannot be written or read; the message names the file."""


@dataclass(frozen=True)
class Columns:
    """The mapped columns of one bundle, each indexed by item index (or a user's row)."""

    category_names: list[str]
    item_id_sorted: np.ndarray  # str, ascending: with item_id_rows, the id -> item index lookup
    item_id_rows: np.ndarray  # int64
    user_id_sorted: np.ndarray  # str, users with a non-empty history only
    user_id_rows: np.ndarray  # int64
    titles: np.ndarray  # str
    category_codes: np.ndarray  # int32 (n_items, max categories), primary first, -1 pads
    content_code: np.ndarray  # int64, equal codes = same content
    age_rating: np.ndarray  # int8
    minor_safe: np.ndarray  # bool
    mainstream: np.ndarray  # bool
    synthetic: np.ndarray  # bool
    flagged: np.ndarray  # bool
    popular_order: np.ndarray  # int64 item indices, most popular first (ties by index)
    popular_rank: np.ndarray  # int64 rank of each item in popular_order
    category_rank: np.ndarray  # int64 rank by popularity within the item's primary category
    mainstream_order: np.ndarray  # int64 the editorial pool, most popular first
    popularity_score: np.ndarray  # float32 in [0, 1], log-scaled popularity
    stats: ItemStats  # the ranker's per-item statistics

    @property
    def item_index(self) -> IdIndex:
        return IdIndex(self.item_id_sorted, self.item_id_rows)

    @property
    def user_index(self) -> IdIndex:
        return IdIndex(self.user_id_sorted, self.user_id_rows)


_ARRAY_FIELDS = [f.name for f in fields(Columns) if f.name not in ("category_names", "stats")]
_STATS_FIELDS = [f.name for f in fields(ItemStats) if f.name != "n_categories"]


def popularity_orders(popularity: np.ndarray, primary_category: np.ndarray, mainstream: np.ndarray) -> dict[str, np.ndarray]:
    """The popularity orders the non-personalised sources read: overall, within each primary
    category and of the editorial pool, plus a log-scaled score in [0, 1]."""
    popularity = np.asarray(popularity, dtype=np.float32)
    # Ties in popularity are broken by item index, so the order is deterministic.
    popular_order = np.lexsort((np.arange(len(popularity)), -popularity)).astype(np.int64)
    popular_rank = np.empty_like(popular_order)
    popular_rank[popular_order] = np.arange(len(popular_order))
    category_rank = np.empty(len(primary_category), dtype=np.int64)
    ordered_categories = primary_category[popular_order]
    for code in np.unique(primary_category):
        members = popular_order[ordered_categories == code]
        category_rank[members] = np.arange(len(members))
    log_pop = np.log1p(popularity)
    return {
        "popular_order": popular_order,
        "popular_rank": popular_rank,
        "category_rank": category_rank,
        "mainstream_order": popular_order[mainstream[popular_order]],
        "popularity_score": (log_pop / max(float(log_pop.max()) if len(log_pop) else 0.0, 1e-9)).astype(np.float32),
    }


def derive_columns(bundle_dir: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(category names, arrays by file stem) computed from the bundle's files."""
    bundle_dir = Path(bundle_dir)
    items = pl.read_parquet(bundle_dir / "items.parquet")
    item_ids = np.load(bundle_dir / "item_ids.npy", allow_pickle=False)
    user_ids = np.load(bundle_dir / "user_ids.npy", allow_pickle=False)
    lengths = np.diff(np.load(bundle_dir / "history_indptr.npy", allow_pickle=False))
    categories = encode_categories(items.get_column("categories"))
    content_keys = items.get_column("content_key").fill_null(items.get_column("item_id")).to_numpy().astype(str)
    _, content_code = np.unique(content_keys, return_inverse=True)
    arrays: dict[str, np.ndarray] = {}
    arrays["item_id_sorted"], arrays["item_id_rows"] = IdIndex.arrays(item_ids)
    arrays["user_id_sorted"], arrays["user_id_rows"] = IdIndex.arrays(user_ids, keep=lengths > 0)
    arrays["titles"] = items.get_column("title").to_numpy().astype(str)
    arrays["category_codes"] = categories.codes.astype(np.int32)
    arrays["content_code"] = content_code.astype(np.int64)
    # a bundle trained before age ratings gets the dataset's documented fallback
    arrays["age_rating"] = ensure_age_rating(items).get_column("age_rating").to_numpy().astype(np.int8)
    for name in LABELS:
        arrays[name] = items.get_column(name).fill_null(False).to_numpy().astype(bool)
    popularity = np.load(bundle_dir / "popularity.npy", allow_pickle=False)
    arrays.update(popularity_orders(popularity, categories.primary, arrays["mainstream"]))
    stats = ItemStats.load(bundle_dir / "item_stats.npz")
    for name in _STATS_FIELDS:
        arrays[STATS_PREFIX + name] = np.asarray(getattr(stats, name))
    arrays["stats_n_categories"] = np.asarray(stats.n_categories, dtype=np.int64)
    return categories.names, arrays


def write_columns(bundle_dir: Path) -> Path:
    """Derive and write `bundle_dir/columns/` unless a complete one exists; return its path. The
    files go to a private folder first, renamed into place in one step (a concurrent writer's
    finished copy wins; this one is discarded). ColumnsError naming the folder when it cannot."""
    bundle_dir = Path(bundle_dir)
    target = bundle_dir / COLUMNS_DIR
    if _complete(target):
        return target
    try:
        staging = Path(tempfile.mkdtemp(prefix=".columns-", dir=bundle_dir))
    except OSError as exc:
        raise ColumnsError(f"{target}: cannot write the serving columns ({exc.strerror}); "
                           "make the bundle directory writable or retrain the model") from None
    try:
        names, arrays = derive_columns(bundle_dir)
        for name, values in arrays.items():
            np.save(staging / f"{name}.npy", values, allow_pickle=False)
        manifest = {"version": COLUMNS_VERSION, "n_items": int(len(arrays["titles"])), "category_names": names}
        (staging / COLUMNS_MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not _complete(target):  # leftovers of an interrupted write: replace them
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _complete(target: Path) -> bool:
    try:
        return bool(json.loads((target / COLUMNS_MANIFEST).read_text()).get("version") == COLUMNS_VERSION)
    except (OSError, ValueError, AttributeError):
        return False


def map_array(path: Path) -> np.ndarray:
    """The .npy file at `path` mapped read-only (shared with every process mapping it); an empty
    array, which cannot be mapped, is read instead.

    Returned as a plain ndarray view of the mapping (same pages, still read-only), not the
    `np.memmap` subclass: every index into a memmap runs its Python-level `__getitem__` and
    `__array_finalize__` (~1 us each), and the request path indexes these arrays ~150 times per list."""
    try:
        mapped: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # "cannot mmap an empty file" and the like: nothing to share
        read: np.ndarray = np.load(path, allow_pickle=False)
        return read
    view: np.ndarray = mapped.view(np.ndarray)
    return view


def load_columns(bundle_dir: Path, n_items: int) -> Columns:
    """Map the columns of `bundle_dir` (written first when missing). ColumnsError names a file
    that is missing or of the wrong length."""
    target = write_columns(bundle_dir)
    manifest = json.loads((target / COLUMNS_MANIFEST).read_text())
    arrays: dict[str, np.ndarray] = {}
    for name in [*_ARRAY_FIELDS, *(STATS_PREFIX + s for s in _STATS_FIELDS), "stats_n_categories"]:
        path = target / f"{name}.npy"
        if not path.exists():
            raise ColumnsError(f"{path}: missing; delete {target} to rewrite the columns, or retrain")
        arrays[name] = map_array(path)
    per_item = [name for name in arrays if name not in ("item_id_sorted", "item_id_rows", "user_id_sorted",
                                                         "user_id_rows", "mainstream_order", "stats_n_categories")]
    for name in [*per_item, "item_id_sorted"]:
        if len(arrays[name]) != n_items:
            raise ColumnsError(f"{target / name}.npy: {len(arrays[name])} rows, expected {n_items}")
    stats = ItemStats(n_categories=int(arrays.pop("stats_n_categories")),
                      **{s: arrays.pop(STATS_PREFIX + s) for s in _STATS_FIELDS})
    return Columns(category_names=list(manifest["category_names"]), stats=stats,
                   **{name: arrays[name] for name in _ARRAY_FIELDS})
