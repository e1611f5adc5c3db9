"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the `implicit` library.

Confidence on a positive is 1 + alpha * r (r = 1 for a binary positive); unobserved pairs have
confidence 1 and preference 0. `UserSolver` recomputes one user's vector in closed form from a
history of item indices, so serving can refresh a user whose history was filtered.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from recsys.retrieval.base import FactorModel, RetrievalError, fitted


class ALSConfig(BaseModel):
    """Hyper-parameters of ALS; defaults are the protocol's reference setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factors: int = Field(default=256, ge=1, le=4096)
    regularization: float = Field(default=30.0, ge=0.0)
    alpha: float = Field(default=10.0, ge=0.0)
    iterations: int = Field(default=20, ge=1, le=1000)
    use_cg: bool = True  # conjugate gradient: much faster than Cholesky for large `factors`
    threads: int = Field(default=2, ge=0)  # 0: every core
    seed: int = 0
    show_progress: bool = False


GRAM_BLOCK_ROWS = 65_536  # item vectors per block of the Gram matrix


class UserSolver:
    """Closed-form ALS user vector given fixed item factors: (YtCuY + reg I)^-1 YtCu p_u.

    YtCuY = YtY + alpha * F'F over the history's item vectors F. Short histories use the Woodbury
    identity with the precomputed (YtY + reg I)^-1, a (h x h) solve instead of (d x d).
    """

    def __init__(self, item_factors: np.ndarray, regularization: float, alpha: float):
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.alpha = float(alpha)
        d = self.item_factors.shape[1]
        # Summed over blocks of rows: a float64 copy of every item vector at once would be a
        # transient of twice the (possibly mapped, shared) factors in each serving worker.
        gram = np.zeros((d, d), dtype=np.float64)
        for start in range(0, len(self.item_factors), GRAM_BLOCK_ROWS):
            block = self.item_factors[start : start + GRAM_BLOCK_ROWS].astype(np.float64)
            gram += block.T @ block
        self.base: np.ndarray = gram + float(regularization) * np.eye(d)
        self.base_inverse: np.ndarray = np.linalg.inv(self.base)

    def solve(self, history_idx: np.ndarray) -> np.ndarray:
        """The float32 vector of a user whose positives are `history_idx` (zeros when empty)."""
        history = np.unique(np.asarray(history_idx, dtype=np.int64))
        d = self.item_factors.shape[1]
        if not len(history):
            return np.zeros(d, dtype=np.float32)
        if history[0] < 0 or history[-1] >= len(self.item_factors):
            raise RetrievalError(f"history_idx: item indices must be in [0, {len(self.item_factors)})")
        factors = self.item_factors[history].astype(np.float64)
        b: np.ndarray = (1.0 + self.alpha) * factors.sum(axis=0)
        if self.alpha == 0.0:
            vector: np.ndarray = (self.base_inverse @ b).astype(np.float32)
            return vector
        if len(history) < d // 2:
            projected = self.base_inverse @ factors.T  # (d, h)
            inner = np.eye(len(history)) / self.alpha + factors @ projected
            z: np.ndarray = self.base_inverse @ b
            return (z - projected @ np.linalg.solve(inner, factors @ z)).astype(np.float32)
        a = self.base + self.alpha * (factors.T @ factors)
        return np.linalg.solve(a, b).astype(np.float32)


class ALS(FactorModel):
    """Matrix factorisation of binary positives with confidence weights, via implicit's CPU solver."""

    name = "als"

    def __init__(self, config: ALSConfig | None = None):
        self.config = config or ALSConfig()
        self._solver: UserSolver | None = None

    def fit(self, user_items: csr_matrix) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares

        binary = self._check_matrix(user_items)
        config = self.config
        confidence = binary.copy()
        confidence.data = 1.0 + config.alpha * confidence.data
        # implicit parallelises itself; a multi-threaded BLAS underneath would oversubscribe the cores.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=config.factors,
                regularization=config.regularization,
                alpha=1.0,  # confidence is already 1 + alpha * r; implicit would multiply again
                iterations=config.iterations,
                use_cg=config.use_cg,
                calculate_training_loss=False,
                num_threads=config.threads,
                random_state=config.seed,
            )
            model.fit(confidence, show_progress=config.show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._solver = None
        return self

    def user_vector(self, history_idx: np.ndarray) -> np.ndarray:
        item_factors = fitted(self, self.item_factors)
        if self._solver is None:
            self._solver = UserSolver(item_factors, self.config.regularization, self.config.alpha)
        return self._solver.solve(history_idx)
