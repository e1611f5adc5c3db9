"""RP3beta (Paudel et al., ACM TiiS 2017; the tuned form of Dacrema et al., RecSys 2019).

A three-step random walk user -> item -> user -> item on the bipartite graph of positives, with
transition probabilities raised to `alpha` and the landing item's popularity discounted by
`beta`:

    W[i, j] = sum_u P_iu[i, u]^alpha * P_ui[u, j]^alpha / pop(j)^beta,   W[i, i] = 0,

P_ui the user's row of positives normalised to sum 1 (1 / |items of u|), P_iu the item's column
normalised likewise (1 / pop(i)); only the `neighbours` largest entries of each row i are kept.
A user's scores are the sum of the rows of W of their positives: X W. alpha = 1, beta = 0 is P3,
the plain three-step walk. Rows are built in blocks (`BLOCK` source items at a time, dense), so
memory is BLOCK x n_items plus the kept entries.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix, diags

from recsys.retrieval.base import Recommender, fitted

BLOCK = 1024


class RP3betaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=1.0, gt=0.0)  # exponent on the transition probabilities
    beta: float = Field(default=0.3, ge=0.0)  # popularity discount of the landing item
    neighbours: int = Field(default=100, ge=1)  # entries kept per row of W


class RP3beta(Recommender):
    """Popularity-discounted three-step random walk item-item model (see the module doc)."""

    name = "rp3beta"

    def __init__(self, config: RP3betaConfig | None = None):
        self.config = config or RP3betaConfig()
        self.similarity: csr_matrix | None = None  # W, items x items
        self.user_items: csr_matrix | None = None

    def fit(self, user_items: csr_matrix) -> RP3beta:
        binary = self._check_matrix(user_items)
        config = self.config
        user_degree = np.asarray(binary.sum(axis=1)).ravel()
        popularity = np.asarray(binary.sum(axis=0)).ravel()
        p_ui = (diags(1.0 / np.maximum(user_degree, 1)) @ binary).tocsr()
        p_iu = (diags(1.0 / np.maximum(popularity, 1)) @ binary.T.tocsr()).tocsr()
        if config.alpha != 1.0:
            p_ui.data **= config.alpha
            p_iu.data **= config.alpha
        discount = np.where(popularity > 0, np.maximum(popularity, 1) ** -config.beta, 0.0)
        n_items = binary.shape[1]
        k = min(config.neighbours, n_items)
        rows, cols, vals = [], [], []
        for start in range(0, n_items, BLOCK):
            stop = min(start + BLOCK, n_items)
            block = (p_iu[start:stop] @ p_ui).toarray() * discount[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if k < n_items:
                top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            else:
                top = np.tile(np.arange(n_items), (stop - start, 1))
            values = np.take_along_axis(block, top, axis=1)
            keep = values > 0
            rows.append(np.broadcast_to(np.arange(start, stop)[:, None], top.shape)[keep])
            cols.append(top[keep])
            vals.append(values[keep])
        self.similarity = csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(n_items, n_items))
        self.user_items = binary
        return self

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        similarity, user_items = fitted(self, self.similarity), fitted(self, self.user_items)
        return np.asarray((user_items[np.asarray(user_idx)] @ similarity).todense(), dtype=np.float32)
