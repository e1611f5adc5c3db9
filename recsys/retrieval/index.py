"""Faiss inner-product index over item vectors: exact below a size threshold, approximate above.

`build_index(kind="auto")` picks an exact IndexFlatIP below `flat_max_items` items and an IVF
index above it, whose `nprobe` is raised until recall@`recall_k` against exact search reaches the
target on sample queries; the measured recall is recorded in the params. HNSW is available by name,
its `efSearch` calibrated the same way (starting from `hnsw_ef_search`). Every
index carries a `build_id` (short hash of its bytes and params) that serving puts in each log line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.retrieval.base import RetrievalError

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
INDEX_FILE = "index.faiss"
PARAMS_FILE = "index.json"
TRAIN_POINTS_PER_LIST = 64  # IVF k-means training sample per cell
BISECTION_ROUNDS = 3  # refinements of nprobe after doubling overshoots


class IndexConfig(BaseModel):
    """How the item index is built; `kind="auto"` chooses flat or IVF by catalog size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IndexKind = "auto"
    flat_max_items: int = Field(default=100_000, ge=1)  # auto: exact search up to this many items
    target_recall: float = Field(default=0.95, gt=0.0, le=1.0)  # IVF: nprobe is raised until reached
    recall_k: int = Field(default=100, ge=1)  # the k recall is calibrated at (training: its n_candidates)
    sample_queries: int = Field(default=500, ge=1)
    nlist: int | None = Field(default=None, ge=1)  # IVF cells; None: about 4 sqrt(n)
    kmeans_iterations: int = Field(default=10, ge=1)  # IVF quantizer training; recall is calibrated anyway
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef_search: int = Field(default=128, ge=1)  # the starting efSearch; raised until target_recall
    seed: int = 0


@dataclass
class ItemIndex:
    """A built Faiss index plus the params it was built with (kind, sizes, nprobe, measured recall)."""

    index: faiss.Index
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def build_id(self) -> str:
        return str(self.params["build_id"])

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item indices), each (n_queries, k), best first; -1 pads when fewer items exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise RetrievalError(f"queries: expected shape (n, {self.index.d}), got {queries.shape}")
        if k < 1:
            raise RetrievalError(f"k: expected >= 1, got {k}")
        return self.index.search(queries, min(int(k), self.n_items))

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        (directory / PARAMS_FILE).write_text(json.dumps(self.params, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> ItemIndex:
        """Read a saved index. `mmap=True` maps the vectors and inverted lists read-only from the
        file instead of copying them (Faiss IO_FLAG_MMAP_IFC), so every process serving the same
        file shares its pages; the index must then not be modified (serving never does)."""
        directory = Path(directory)
        for name in (INDEX_FILE, PARAMS_FILE):
            if not (directory / name).exists():
                raise RetrievalError(f"{directory / name}: missing index file")
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(directory / INDEX_FILE), flags)
        except RuntimeError as exc:
            raise RetrievalError(f"{directory / INDEX_FILE}: unreadable Faiss index ({str(exc).splitlines()[0]})") from None
        params = json.loads((directory / PARAMS_FILE).read_text())
        _apply_search_params(index, params)
        return cls(index, params)


def build_index(
    item_factors: np.ndarray,
    kind: IndexKind | None = None,
    config: IndexConfig | None = None,
    sample_queries: np.ndarray | None = None,
) -> ItemIndex:
    """Index `item_factors` for inner-product search. `sample_queries` (e.g. user vectors) calibrate
    IVF's nprobe; without them, sampled item vectors serve as queries."""
    config = config or IndexConfig()
    if kind is not None:
        config = config.model_copy(update={"kind": kind})
    vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise RetrievalError(f"item_factors: expected a non-empty 2-d array, got shape {vectors.shape}")
    n, d = vectors.shape
    chosen = config.kind
    if chosen == "auto":
        chosen = "flat" if n <= config.flat_max_items else "ivf"
    params: dict[str, Any] = {"kind": chosen, "n_items": n, "dim": d, "requested": config.kind}
    index: faiss.Index
    if chosen == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(vectors)
        params["recall"] = 1.0
    elif chosen == "hnsw":
        index = hnsw = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = config.hnsw_ef_construction
        hnsw.add(vectors)
        queries = _queries(vectors, sample_queries, config)
        k = min(config.recall_k, n)
        exact_scores, _ = _exact(vectors, queries, k)

        def recall_at(ef: int) -> float:
            hnsw.hnsw.efSearch = ef
            return _recall_by_score(hnsw.search(queries, k)[0], exact_scores)

        # efSearch below k cannot return k results; the ceiling keeps a hopeless target bounded.
        ef, recall = _calibrate(recall_at, max(config.hnsw_ef_search, k), max(4096, k), config.target_recall)
        hnsw.hnsw.efSearch = ef
        params.update(hnsw_m=config.hnsw_m, ef_construction=config.hnsw_ef_construction, ef_search=ef, recall=recall,
                      recall_k=k, target_recall=config.target_recall, calibration_queries=len(queries))
    elif chosen == "ivf":
        index, params = _build_ivf(vectors, config, _queries(vectors, sample_queries, config), params)
    else:
        raise RetrievalError(f"index kind: expected one of auto, flat, hnsw, ivf; got {config.kind!r}")
    params["build_id"] = _build_id(index, params)
    return ItemIndex(index, params)


def _build_ivf(vectors: np.ndarray, config: IndexConfig, queries: np.ndarray,
               params: dict[str, Any]) -> tuple[faiss.IndexIVFFlat, dict[str, Any]]:
    n, d = vectors.shape
    nlist = config.nlist or max(1, int(round(4 * math.sqrt(n))))
    nlist = min(nlist, n)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = config.seed
    index.cp.niter = config.kmeans_iterations
    rng = np.random.default_rng(config.seed)
    # k-means needs ~39 points per cell to be stable; more only costs time.
    sample = TRAIN_POINTS_PER_LIST * nlist
    train = vectors if n <= sample else vectors[rng.choice(n, sample, replace=False)]
    index.train(train)
    index.add(vectors)
    k = min(config.recall_k, n)
    exact_scores, _ = _exact(vectors, queries, k)

    def recall_at(nprobe: int) -> float:
        index.nprobe = nprobe
        return _recall_by_score(index.search(queries, k)[0], exact_scores)

    nprobe, recall = _calibrate(recall_at, 1, nlist, config.target_recall)
    index.nprobe = nprobe
    params.update(nlist=nlist, nprobe=nprobe, recall=recall, recall_k=k, target_recall=config.target_recall,
                  calibration_queries=len(queries))
    return index, params


def _calibrate(recall_at: Callable[[int], float], start: int, ceiling: int, target: float) -> tuple[int, float]:
    """The smallest search breadth (nprobe, efSearch) from `start` whose recall meets `target`:
    double until it is met (or `ceiling` is reached), then bisect down a few rounds. Each probe is
    one batched search of the sample queries."""
    value, recall = start, recall_at(start)
    while recall < target and value < ceiling:
        value = min(ceiling, value * 2)
        recall = recall_at(value)
    low = max(start, value // 2) if value > start else start
    for _ in range(BISECTION_ROUNDS):
        if value - low <= 1 or recall < target:
            break
        middle = (low + value) // 2
        middle_recall = recall_at(middle)
        if middle_recall >= target:
            value, recall = middle, middle_recall
        else:
            low = middle
    return value, recall


def _queries(vectors: np.ndarray, sample: np.ndarray | None, config: IndexConfig) -> np.ndarray:
    rng = np.random.default_rng(config.seed)
    source = vectors if sample is None or len(sample) == 0 else np.ascontiguousarray(sample, dtype=np.float32)
    if source.shape[1] != vectors.shape[1]:
        raise RetrievalError(f"sample_queries: expected dimension {vectors.shape[1]}, got {source.shape[1]}")
    take = min(config.sample_queries, len(source))
    return np.ascontiguousarray(source[rng.choice(len(source), take, replace=False)], dtype=np.float32)


def _exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)


def _recall_by_score(found_scores: np.ndarray, exact_scores: np.ndarray) -> float:
    """Share of the exact top-k matched by the approximate top-k, ties counted as matches: a result
    scoring at least the exact k-th score is as good as any exact one (items with equal scores,
    e.g. the zero vectors of items never interacted with, would otherwise count as misses)."""
    kth = exact_scores[:, -1:]
    tolerance = 1e-5 * np.maximum(1.0, np.abs(kth))
    return float(np.mean(found_scores >= kth - tolerance))


def _recall(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    k = min(k, len(vectors))
    exact_scores, _ = _exact(vectors, queries, k)
    return _recall_by_score(index.search(queries, k)[0], exact_scores)


def _apply_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    if params.get("kind") == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    elif params.get("kind") == "hnsw":
        # faiss.read_index hands back the concrete subclass (IndexHNSWFlat); its stubs say Index.
        index.hnsw.efSearch = int(params["ef_search"])  # type: ignore[attr-defined]


def _build_id(index: faiss.Index, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(faiss.serialize_index(index).tobytes())
    digest.update(json.dumps({k: v for k, v in params.items() if k != "build_id"}, sort_keys=True).encode())
    return digest.hexdigest()[:12]
