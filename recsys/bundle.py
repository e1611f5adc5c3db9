"""The model bundle: everything serving needs, as a directory of plain files, and its loader.

Files (no pickled code): items.parquet and users.parquet (user_id, age: only for the minors
rules, never a ranker input), item_ids.npy / user_ids.npy, item_factors.npy / user_factors.npy,
user_items.npz (binary CSR) with history_*.npy (each user's positives in time order),
seen_*.npy (every interaction of the training window at any rating: indptr by user index, items,
timestamps, ratings, each user's in time order; format 2), popularity.npy, item_stats.npz (the
ranker's per-item statistics), index/ (Faiss), ranker.pt (tensors + config) and manifest.json
(provenance, config, feature names, metrics), plus columns/ (recsys.columns: every per-item array
the request path reads, derived from those files), and optionally sequential/ (the second candidate
source: a SASRec+ model and a Faiss index over its item embeddings, `recsys.retrieval.sequential`;
absent when training switched it off). `ModelBundle.load` maps the .npy files, the columns and the
Faiss index read-only (mmap), so the serving workers of one host share one copy of a catalog's
pages; nothing per item becomes a Python object (ids -> rows are sorted arrays).

Format history: 1 had positives only, so nothing could exclude items a user rated below the
positive threshold; 2 adds seen_*.npy; 3 may carry sequential/ (and the ranker reads the
sequential source's features). Format-1 bundles still load (`ModelBundle.user_seen` falls back to
the positives and `seen_fallback` is True). A bundle written before columns/ existed gets them on
its first load.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.columns import Columns, ColumnsError, load_columns, map_array, write_columns
from recsys.evaluation import Histories
from recsys.idmap import IdIndex
from recsys.ranking.features import FEATURE_NAMES, FeatureConfig, ItemStats, build_features
from recsys.ranking.model import Ranker, load_ranker
from recsys.ranking.train import Candidates, featurise, list_top_k, retrieve, with_sequential
from recsys.retrieval.als import UserSolver
from recsys.retrieval.base import RetrievalError
from recsys.retrieval.index import ItemIndex
from recsys.retrieval.sequential import SequentialSource

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # 1: no seen_*.npy, loaded with the positives as the seen items
SEQUENTIAL_DIR = "sequential"  # format >= 3, optional: the sequential candidate source
MANIFEST = "manifest.json"
REQUIRED_FILES = (
    MANIFEST, "items.parquet", "users.parquet", "item_ids.npy", "user_ids.npy", "item_factors.npy",
    "user_factors.npy", "user_items.npz", "history_indptr.npy", "history_items.npy", "history_timestamps.npy",
    "popularity.npy", "item_stats.npz", "ranker.pt", "index",
)
SEEN_FILES = ("seen_indptr.npy", "seen_items.npy", "seen_timestamps.npy", "seen_ratings.npy")  # format >= 2


class BundleError(ValueError):
    """A bundle directory is missing a file or holds an inconsistent one; the message names it."""


@dataclass(frozen=True)
class BundleParts:
    """What training hands to `write_bundle`; arrays are in the bundle's item and user index order."""

    items: pl.DataFrame  # the schema's items frame, row i = item index i
    users: pl.DataFrame  # user_id, age of every known user (minors rules only)
    user_ids: np.ndarray  # str, row u of user_factors / history
    history: Histories  # positives of the training window, time order
    seen: Histories  # every interaction of the training window (any rating, with ratings), time order
    item_factors: np.ndarray
    user_factors: np.ndarray
    stats: ItemStats
    index: ItemIndex
    ranker: Ranker
    manifest: dict[str, Any]  # dataset, run_id, config, metrics...: completed with the rest here
    sequential: SequentialSource | None = None  # the second candidate source (None: switched off)


def write_bundle(directory: Path, parts: BundleParts) -> Path:
    """Write `parts` as a bundle directory (replacing one that exists); return the directory."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    parts.items.write_parquet(directory / "items.parquet")
    parts.users.select("user_id", "age").write_parquet(directory / "users.parquet")
    np.save(directory / "item_ids.npy", parts.items.get_column("item_id").to_numpy().astype(str), allow_pickle=False)
    np.save(directory / "user_ids.npy", np.asarray(parts.user_ids).astype(str), allow_pickle=False)
    np.save(directory / "item_factors.npy", np.asarray(parts.item_factors, dtype=np.float32))
    np.save(directory / "user_factors.npy", np.asarray(parts.user_factors, dtype=np.float32))
    sp.save_npz(directory / "user_items.npz", parts.history.matrix())
    np.save(directory / "history_indptr.npy", parts.history.indptr.astype(np.int64))
    np.save(directory / "history_items.npy", parts.history.items.astype(np.int64))
    np.save(directory / "history_timestamps.npy", parts.history.timestamps.astype(np.int64))
    seen = parts.seen
    if seen.n_users != parts.history.n_users or seen.n_items != parts.history.n_items:
        raise BundleError(f"seen: {seen.n_users} users x {seen.n_items} items, the history has "
                          f"{parts.history.n_users} x {parts.history.n_items}")
    ratings = seen.ratings if seen.ratings is not None else np.full(len(seen.items), np.nan, dtype=np.float32)
    np.save(directory / "seen_indptr.npy", seen.indptr.astype(np.int64))
    np.save(directory / "seen_items.npy", seen.items.astype(np.int64))
    np.save(directory / "seen_timestamps.npy", seen.timestamps.astype(np.int64))
    np.save(directory / "seen_ratings.npy", np.asarray(ratings, dtype=np.float32))
    popularity = np.bincount(parts.history.items, minlength=parts.history.n_items).astype(np.float32)
    np.save(directory / "popularity.npy", popularity)
    parts.stats.save(directory / "item_stats.npz")
    parts.index.save(directory / "index")
    parts.ranker.save(directory / "ranker.pt")
    if parts.sequential is not None:
        if parts.sequential.index.n_items != len(parts.items):
            raise BundleError(f"sequential: its index has {parts.sequential.index.n_items} items, the bundle {len(parts.items)}")
        parts.sequential.with_user_queries(parts.history).save(directory / SEQUENTIAL_DIR)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "index_build_id": parts.index.build_id,
        "index": parts.index.params,
        "feature_names": list(parts.ranker.feature_names),
        "ranker_kind": parts.ranker.kind,
        "n_items": int(len(parts.items)),
        "n_users": int(len(parts.user_ids)),
        "sequential": None if parts.sequential is None else {
            "kind": "sasrec", "n_candidates": parts.sequential.n_candidates, "index": parts.sequential.index.params,
            "config": parts.sequential.model.config.model_dump(mode="json")},
        **parts.manifest,
    }
    write_manifest(directory, manifest)
    write_columns(directory)
    return directory


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


_thread_state = threading.local()


def single_thread_inference() -> None:
    """torch and Faiss compute with one thread in the calling thread. One request is small: an
    intra-op pool per worker only contends for the cores. Call it in every thread that serves
    requests: OpenMP settings are per thread, and a request thread left at the default spun two
    OpenMP threads per op, which put 24 ms on the ranker's p99 with two workers on two cores
    (measured; the main thread's `torch.set_num_threads(1)` did not reach it)."""
    if getattr(_thread_state, "single", False):
        return
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    _thread_state.single = True


@dataclass
class ModelBundle:
    """A loaded bundle: per-item and per-user arrays, the index, the ranker and the feature builder."""

    path: Path
    manifest: dict[str, Any]
    item_ids: np.ndarray  # str
    user_ids: np.ndarray  # str
    item_index: IdIndex  # item id -> item index
    user_index: IdIndex  # user id -> user row, users with a non-empty history only
    columns: Columns  # the mapped per-item arrays (titles, categories, labels, popularity orders...)
    item_category: np.ndarray  # int32 primary category code
    category_names: list[str]
    content_code: np.ndarray  # int64, equal codes = same content
    minor_safe: np.ndarray
    mainstream: np.ndarray
    synthetic: np.ndarray
    flagged: np.ndarray
    popularity: np.ndarray  # float32 positives per item in the training window
    item_factors: np.ndarray
    user_factors: np.ndarray
    history: Histories  # positives, time order
    seen: Histories  # every interaction at any rating, time order (format 1: the positives, ratings nan)
    seen_fallback: bool  # True for a format-1 bundle: `seen` is only the positives
    stats: ItemStats
    index: ItemIndex
    ranker: Ranker
    feature_config: FeatureConfig
    n_candidates: int
    sequential: SequentialSource | None = None  # the second candidate source, when trained with one
    _solver: UserSolver | None = field(default=None, repr=False)
    _items: pl.DataFrame | None = field(default=None, repr=False)
    _users: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def items(self) -> pl.DataFrame:
        """The items frame (every column of the dataset), read on first use: the request path
        reads `columns` instead, so a serving worker never holds it."""
        if self._items is None:
            self._items = pl.read_parquet(self.path / "items.parquet")
        return self._items

    @property
    def users(self) -> pl.DataFrame:
        """user_id, age of every known user, read on first use (minors rules and tools only)."""
        if self._users is None:
            self._users = pl.read_parquet(self.path / "users.parquet")
        return self._users

    def item_column(self, name: str) -> pl.Series | None:
        """One column of the items frame (None when there is no such column), read alone."""
        if self._items is not None:
            return self._items.get_column(name) if name in self._items.columns else None
        if name not in pl.read_parquet_schema(self.path / "items.parquet"):
            return None
        return pl.read_parquet(self.path / "items.parquet", columns=[name]).get_column(name)

    @property
    def item_categories(self) -> sp.csr_matrix:
        """Multi-hot (n_items, n_categories) float32 of every category of each item."""
        codes = np.asarray(self.columns.category_codes)
        rows, slots = np.nonzero(codes >= 0)
        return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, codes[rows, slots].astype(np.int64))),
                             shape=(len(codes), len(self.category_names)))

    @property
    def feature_names(self) -> list[str]:
        return list(self.ranker.feature_names)

    @property
    def recency_log_days(self) -> np.ndarray:
        return self.stats.recency_log_days

    @classmethod
    def load(cls, path: Path, serving: bool = True) -> ModelBundle:
        """Load a bundle directory. `serving=True` pins torch to one thread (one request, one core)."""
        path = Path(path)
        missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
        if missing:
            raise BundleError(f"{path}: not a model bundle, missing {', '.join(missing)}")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path / MANIFEST}: not valid JSON ({exc})") from None
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version not in READABLE_VERSIONS:
            raise BundleError(f"{path / MANIFEST}: format_version {version!r}, expected one of {READABLE_VERSIONS}")
        missing = [name for name in SEEN_FILES if not (path / name).exists()] if version >= 2 else []
        if missing:
            raise BundleError(f"{path}: format_version {version} bundle missing {', '.join(missing)}")
        if serving:
            single_thread_inference()
        item_ids = map_array(path / "item_ids.npy")
        user_ids = map_array(path / "user_ids.npy")
        item_factors = map_array(path / "item_factors.npy")
        user_factors = map_array(path / "user_factors.npy")
        indptr = map_array(path / "history_indptr.npy")
        history = Histories(
            indptr,
            map_array(path / "history_items.npy"),
            map_array(path / "history_timestamps.npy"),
            len(item_ids),
        )
        if version >= 2:
            seen_indptr = map_array(path / "seen_indptr.npy")
            seen_ratings = map_array(path / "seen_ratings.npy")
            seen = Histories(
                seen_indptr,
                map_array(path / "seen_items.npy"),
                map_array(path / "seen_timestamps.npy"),
                len(item_ids),
                seen_ratings,
            )
            if len(seen_indptr) - 1 != len(user_ids):
                raise BundleError(f"{path / 'seen_indptr.npy'}: {len(seen_indptr) - 1} rows, expected {len(user_ids)}")
            for name, values in (("seen_items.npy", seen.items), ("seen_timestamps.npy", seen.timestamps),
                                 ("seen_ratings.npy", seen_ratings)):
                if len(values) != seen_indptr[-1]:
                    raise BundleError(f"{path / name}: {len(values)} entries, expected {seen_indptr[-1]}")
        else:  # format 1 knew only the positives
            seen = Histories(history.indptr, history.items, history.timestamps, history.n_items,
                             np.full(len(history.items), np.nan, dtype=np.float32))
        for name, rows, expected in (
            ("item_factors.npy", len(item_factors), len(item_ids)),
            ("user_factors.npy", len(user_factors), len(user_ids)),
            ("history_indptr.npy", len(indptr) - 1, len(user_ids)),
        ):
            if rows != expected:
                raise BundleError(f"{path / name}: {rows} rows, expected {expected}")
        try:
            columns = load_columns(path, len(item_ids))
        except ColumnsError as exc:
            raise BundleError(str(exc)) from None
        ranker = load_ranker(path / "ranker.pt")
        if ranker.feature_names != manifest.get("feature_names"):
            raise BundleError(f"{path / 'ranker.pt'}: feature names differ from {MANIFEST}")
        if ranker.feature_names != FEATURE_NAMES:
            raise BundleError(f"{path / 'ranker.pt'}: trained on features {ranker.feature_names}, this code builds {FEATURE_NAMES}")
        index = ItemIndex.load(path / "index", mmap=True)
        if index.n_items != len(item_ids):
            raise BundleError(f"{path / 'index'}: {index.n_items} items, expected {len(item_ids)}")

        sequential = None
        if (path / SEQUENTIAL_DIR).exists():
            try:
                sequential = SequentialSource.load(path / SEQUENTIAL_DIR)
            except RetrievalError as exc:
                raise BundleError(str(exc)) from None
            if sequential.index.n_items != len(item_ids):
                raise BundleError(f"{path / SEQUENTIAL_DIR}: {sequential.index.n_items} items, expected {len(item_ids)}")
            if sequential.user_queries is not None and len(sequential.user_queries) != len(user_ids):
                raise BundleError(f"{path / SEQUENTIAL_DIR}: {len(sequential.user_queries)} user queries, "
                                  f"expected {len(user_ids)}")

        return cls(
            path=path,
            manifest=manifest,
            item_ids=item_ids,
            user_ids=user_ids,
            item_index=columns.item_index,
            user_index=columns.user_index,
            columns=columns,
            item_category=columns.category_codes[:, 0],
            category_names=columns.category_names,
            content_code=columns.content_code,
            minor_safe=columns.minor_safe,
            mainstream=columns.mainstream,
            synthetic=columns.synthetic,
            flagged=columns.flagged,
            popularity=map_array(path / "popularity.npy"),
            item_factors=item_factors,
            user_factors=user_factors,
            history=history,
            seen=seen,
            seen_fallback=version < 2,
            stats=columns.stats,
            index=index,
            ranker=ranker,
            feature_config=FeatureConfig(**manifest.get("feature_config", {})),
            n_candidates=int(manifest.get("n_candidates", 200)),
            sequential=sequential,
        )

    # -- the request path -------------------------------------------------------------------
    def user_history(self, user_idx: int) -> np.ndarray:
        """The user's positives of the training window, oldest first."""
        return self.history.of(int(user_idx))

    def user_seen(self, user_idx: int) -> np.ndarray:
        """Every item the user interacted with in the training window, at ANY rating (sorted,
        distinct int64 item indices): the items a personalised list must not show again. Items
        rated below the positive threshold are in it (they are never in `user_history`).

        A format-1 bundle (no seen_*.npy, `seen_fallback` True) knew only the positives: this
        then returns the positive history, and low-rated items cannot be excluded; retrain.
        """
        user = int(user_idx)
        return np.union1d(self.seen.of(user), self.history.of(user)).astype(np.int64, copy=False)

    def user_vector(self, history_idx: np.ndarray) -> np.ndarray:
        """ALS vector recomputed in closed form from a (possibly filtered) history."""
        if self._solver is None:
            retrieval = self.manifest["retrieval"]
            self._solver = UserSolver(self.item_factors, retrieval["regularization"], retrieval["alpha"])
        return self._solver.solve(history_idx)

    def stored_sequence_query(self, user_idx: int) -> np.ndarray | None:
        """The sequential source's query for a bundle user's stored history: precomputed at
        training when the bundle holds it, else encoded now."""
        if self.sequential is not None and self.sequential.user_queries is not None:
            if not len(self.user_history(user_idx)):
                return None
            stored: np.ndarray = self.sequential.user_queries[int(user_idx)]
            return stored
        return self.sequence_query(self.user_history(user_idx))

    def sequence_query(self, sequence: np.ndarray) -> np.ndarray | None:
        """The sequential source's query for a user's item sequence (oldest first), None without
        that source or without a sequence."""
        if self.sequential is None or not len(sequence):
            return None
        return self.sequential.query(sequence)

    def features(self, user_vector: np.ndarray, history_idx: np.ndarray, cand_idx: np.ndarray,
                 retrieval_scores: np.ndarray, sequence_query: np.ndarray | None = None,
                 from_sequential: np.ndarray | None = None) -> np.ndarray:
        """The ranker's feature matrix for one request (same code as training): `sequence_query`
        (from `sequence_query`) gives the sequential scores, `from_sequential` marks the candidates
        that source retrieved."""
        sequential_scores = None
        if sequence_query is not None and self.sequential is not None:
            sequential_scores = self.sequential.item_vectors()[np.asarray(cand_idx, dtype=np.int64)] @ sequence_query
        return build_features(self.stats, user_vector, history_idx, cand_idx, retrieval_scores, self.feature_config,
                              sequential_scores, from_sequential)

    def recommend(self, user_idx: np.ndarray, k: int = 10, n_candidates: int | None = None,
                  exclude_seen: bool = True) -> np.ndarray:
        """Two-stage top-k for users of the bundle: Faiss top-N with every seen item (any rating,
        `user_seen`) excluded, then the ranker. `exclude_seen=False` excludes only the positive
        history (the published protocol's rule, for comparison with peers; never for serving).

        Returns (len(user_idx), k) item indices, -1 where fewer than k items are left.
        """
        users = np.asarray(user_idx, dtype=np.int64)
        n = max(int(n_candidates or self.n_candidates), k)
        exclude = self.seen if exclude_seen else None
        return self.rank(self.candidates(self.history, users, n, exclude), k)

    def candidates(self, histories: Histories, users: np.ndarray, n: int, exclude: Histories | None) -> Candidates:
        """Both sources' candidates for bundle users whose training history is `histories`: Faiss
        top-n over the ALS vectors, then the sequential source's top items (when the bundle has
        it), `histories` and `exclude` items removed; as serving merges them."""
        candidates = retrieve(self.index.search, self.user_factors, histories, users, n, exclude=exclude)
        if self.sequential is None:
            return candidates
        return with_sequential(candidates, self.item_factors, self.user_factors, self.sequential, histories, exclude)

    def rank(self, candidates: Candidates, k: int) -> np.ndarray:
        """Second stage for retrieved candidates of bundle users: features, ranker, top-k."""
        features, mask = featurise(self.stats, self.user_factors, self.history, candidates, self.feature_config)
        scores = np.full(mask.shape, -np.inf, dtype=np.float32)
        if mask.any():
            scores[mask] = self.ranker.score(features[mask])
        return list_top_k(scores, candidates, k)

    def popular(self, k: int) -> np.ndarray:
        """The k most popular items (ties by index): the list for users without a history."""
        return np.asarray(self.columns.popular_order[:k])
