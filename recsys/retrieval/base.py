"""The retrieval model interface: `fit` on a user x item matrix, `scores` for a batch of users.

Borrowed from implicit: one narrow interface, plain numpy/scipy in and out, one module per
algorithm. Adding a model is one class here-shaped plus one entry in `recsys.retrieval.MODELS`.
`FactorModel` adds the embeddings the Faiss index and the ranker's features are built from.
`HistoryRecommender` is the same interface for models that need the order or the time of each
positive (recency popularity, SASRec): `fit` takes the protocol's time-ordered `Histories`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
from scipy.sparse import csr_matrix

if TYPE_CHECKING:
    from recsys.evaluation import Histories


class RetrievalError(ValueError):
    """Bad retrieval input or configuration; the message names the argument or field."""


_Learnt = TypeVar("_Learnt")


def fitted(model: object, value: _Learnt | None) -> _Learnt:
    """`value`, a state `fit` learns, or an error naming the model when fit() has not run yet."""
    if value is None:
        raise RetrievalError(f"{type(model).__name__}: call fit() before scores()")
    return value


class Recommender(abc.ABC):
    """A model that learns from binary positives and scores every item for a user."""

    name: ClassVar[str]

    @abc.abstractmethod
    def fit(self, user_items: csr_matrix) -> Recommender:
        """Learn from a users x items matrix of positives (any value > 0 counts as one)."""

    @abc.abstractmethod
    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(user_idx), n_items); higher is better. Used for full ranking."""

    @staticmethod
    def _check_matrix(user_items: csr_matrix) -> csr_matrix:
        if not isinstance(user_items, csr_matrix):
            raise RetrievalError(f"user_items: expected a scipy csr_matrix, got {type(user_items).__name__}")
        if user_items.shape[0] == 0 or user_items.shape[1] == 0:
            raise RetrievalError(f"user_items: empty matrix of shape {user_items.shape}")
        binary = user_items.copy().astype(np.float32)
        binary.data[:] = 1.0
        binary.eliminate_zeros()
        return binary


class HistoryRecommender(abc.ABC):
    """A model that learns from time-ordered positives and scores every item for a user.

    `fit` takes `recsys.evaluation.Histories` (each user's positives in the protocol's order, with
    timestamps); user indices of `scores` are the rows of that history. Everything a matrix model
    learns from is `train.matrix()`, so any `Recommender` adapts (`recsys.retrieval.peers.FromMatrix`).
    """

    name: str  # a class attribute, or per instance for an adapter that takes its model's name

    @abc.abstractmethod
    def fit(self, train: Histories) -> HistoryRecommender:
        """Learn from each user's time-ordered positives."""

    @abc.abstractmethod
    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(user_idx), n_items); higher is better. Used for full ranking."""

    @staticmethod
    def _check_histories(train: Histories) -> Histories:
        if not hasattr(train, "indptr") or not hasattr(train, "timestamps"):
            raise RetrievalError(f"train: expected recsys.evaluation.Histories, got {type(train).__name__}")
        if train.n_users == 0 or train.n_items == 0:
            raise RetrievalError(f"train: empty histories ({train.n_users} users, {train.n_items} items)")
        return train


class FactorModel(Recommender):
    """A recommender whose score is an inner product of a user and an item vector."""

    user_factors: np.ndarray | None = None  # float32 (n_users, d)
    item_factors: np.ndarray | None = None  # float32 (n_items, d)

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        item_factors = fitted(self, self.item_factors)
        scores: np.ndarray = fitted(self, self.user_factors)[np.asarray(user_idx)] @ item_factors.T
        return scores

    @abc.abstractmethod
    def user_vector(self, history_idx: np.ndarray) -> np.ndarray:
        """A user's vector recomputed from a (possibly filtered) history of item indices."""
