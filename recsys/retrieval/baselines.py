"""Reference baselines for the protocol: MostPopular, ItemKNN (cosine item-item) and EASE.

They score every item for full-ranking evaluation; none produces embeddings, so the Faiss stage
and the ranker are built on a `FactorModel` (ALS) and these serve as yardsticks.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix

from recsys.retrieval.base import Recommender, RetrievalError, fitted

EASE_MAX_ITEMS = 40_000  # a dense n_items^2 float64 inverse beyond this needs > 12 GB


class MostPopular(Recommender):
    """Scores each item by its number of positives: the same list for every user."""

    name = "popular"

    def __init__(self) -> None:
        self.popularity: np.ndarray | None = None

    def fit(self, user_items: csr_matrix) -> MostPopular:
        binary = self._check_matrix(user_items)
        self.popularity = np.asarray(binary.sum(axis=0), dtype=np.float32).ravel()
        return self

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        popularity = fitted(self, self.popularity)
        return np.broadcast_to(popularity, (len(user_idx), len(popularity))).copy()


class ItemKNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    neighbours: int = Field(default=200, ge=1)  # most similar items kept per item (tuned on validation)
    shrinkage: float = Field(default=0.0, ge=0.0)  # damps similarities of rarely co-rated pairs


class ItemKNN(Recommender):
    """Cosine item-item neighbourhood: score(u, j) = sum of sim(j, i) over the user's items i that
    are among candidate j's `neighbours` most similar items (chosen over the basket-side variant on
    the validation split)."""

    name = "itemknn"

    def __init__(self, config: ItemKNNConfig | None = None):
        self.config = config or ItemKNNConfig()
        self.similarity: csr_matrix | None = None
        self.user_items: csr_matrix | None = None

    def fit(self, user_items: csr_matrix) -> ItemKNN:
        binary = self._check_matrix(user_items)
        co = (binary.T @ binary).tocsr().astype(np.float32)
        norms = np.sqrt(co.diagonal())
        co.setdiag(0.0)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        denominator = norms[rows] * norms[co.indices] + self.config.shrinkage
        co.data = co.data / np.maximum(denominator, 1e-12)
        self.similarity = _top_per_row(co, self.config.neighbours)
        self.user_items = binary
        return self

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        similarity, user_items = fitted(self, self.similarity), fitted(self, self.user_items)
        # similarity row j holds j's neighbours, so the user's items hit it through the transpose.
        return np.asarray((user_items[np.asarray(user_idx)] @ similarity.T).todense(), dtype=np.float32)


def _top_per_row(matrix: csr_matrix, k: int) -> csr_matrix:
    """Keep the k largest entries of each row."""
    indptr, indices, data = [0], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        values = matrix.data[start:end]
        keep = np.argpartition(-values, k - 1)[:k] if len(values) > k else np.arange(len(values))
        indices.append(matrix.indices[start:end][keep])
        data.append(values[keep])
        indptr.append(indptr[-1] + len(keep))
    return csr_matrix(
        (np.concatenate(data) if data else [], np.concatenate(indices) if indices else [], indptr),
        shape=matrix.shape,
        dtype=np.float32,
    )


class EASEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regularization: float = Field(default=500.0, gt=0.0)  # the lambda of Steck (2019)


class EASE(Recommender):
    """Embarrassingly shallow autoencoder: B = I - P / diag(P), P = (X'X + lambda I)^-1, diag(B) = 0."""

    name = "ease"

    def __init__(self, config: EASEConfig | None = None):
        self.config = config or EASEConfig()
        self.weights: np.ndarray | None = None
        self.user_items: csr_matrix | None = None

    def fit(self, user_items: csr_matrix) -> EASE:
        binary = self._check_matrix(user_items)
        n_items = binary.shape[1]
        if n_items > EASE_MAX_ITEMS:
            raise RetrievalError(f"EASE: {n_items} items exceed the dense limit of {EASE_MAX_ITEMS}; use ALS or ItemKNN")
        gram = np.asarray((binary.T @ binary).todense(), dtype=np.float64)
        gram[np.diag_indices(n_items)] += self.config.regularization
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        weights[np.diag_indices(n_items)] = 0.0
        self.weights = weights.astype(np.float32)
        self.user_items = binary
        return self

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        weights, user_items = fitted(self, self.weights), fitted(self, self.user_items)
        return np.asarray(user_items[np.asarray(user_idx)] @ weights, dtype=np.float32)
