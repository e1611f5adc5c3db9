"""Recency popularity: the most popular items of the last N days before the user's request.

MostPopular counts every training positive, including those made months after the moment the
user is recommended to. This baseline counts, for each user, the training positives (of every
user) in the `days` days up to that user's request time, which is the time of the user's last
training positive (the protocol splits each user's positives in time, so the user's next positive,
the one to predict, comes right after it). Ties (items without a positive in the window) are
broken by the popularity up to the request time, so a short window still ranks the whole catalog.

`reference="global"` instead counts the `days` days before the last training positive of anyone,
the same list for everyone (the "trending now" of a global cut); `days=None` counts all time.
Everything is vectorised: one cumulative sum of per-interval item counts gives every user's counts
up to any time (`_counts_up_to`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix

from recsys.evaluation import Histories
from recsys.retrieval.base import HistoryRecommender, fitted

DAY = 86_400


class RecencyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: float | None = Field(default=30.0, gt=0.0)  # the window; None: all time (MostPopular up to the request)
    reference: Literal["user", "global"] = "user"  # whose request time ends the window


class RecencyPopular(HistoryRecommender):
    """Popularity over the `days` days before each user's request time (see the module doc)."""

    name = "recency"

    def __init__(self, config: RecencyConfig | None = None):
        self.config = config or RecencyConfig()
        self.request_time: np.ndarray | None = None  # int64 per user
        self._times: np.ndarray | None = None  # every training positive's time, sorted
        self._items: np.ndarray | None = None  # its item, aligned
        self.n_items = 0

    def fit(self, train: Histories) -> RecencyPopular:
        train = self._check_histories(train)
        order = np.argsort(train.timestamps, kind="stable")
        self._times = train.timestamps[order].astype(np.int64)
        self._items = train.items[order].astype(np.int64)
        self.n_items = train.n_items
        latest = int(self._times[-1]) if len(self._times) else 0
        if self.config.reference == "global":
            self.request_time = np.full(train.n_users, latest, dtype=np.int64)
        else:
            last = np.full(train.n_users, latest, dtype=np.int64)  # users without a positive: the global cut
            has = train.lengths > 0
            last[has] = train.timestamps[train.indptr[1:][has] - 1]  # histories are in time order
            self.request_time = last
        return self

    def _counts_up_to(self, times: np.ndarray) -> np.ndarray:
        """(len(times), n_items) float64: training positives per item with timestamp <= times[r]."""
        order = np.argsort(times, kind="stable")
        ends = np.searchsorted(fitted(self, self._times), times[order], side="right")  # events before each sorted query
        n_events = int(ends[-1]) if len(ends) else 0
        # Event e (in time order) first counts for the first sorted query whose end exceeds it.
        first_row = np.searchsorted(ends, np.arange(n_events), side="right")
        increments = csr_matrix((np.ones(n_events), (first_row, fitted(self, self._items)[:n_events])),
                                shape=(len(times), self.n_items))
        counts = np.cumsum(increments.toarray(), axis=0)
        out: np.ndarray = np.empty_like(counts)
        out[order] = counts
        return out

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        end = fitted(self, self.request_time)[np.asarray(user_idx, dtype=np.int64)]
        upto = self._counts_up_to(end)
        if self.config.days is None:
            return upto.astype(np.float32)
        window = upto - self._counts_up_to(end - int(round(self.config.days * DAY)))
        # Ties inside the window broken by popularity up to the request (a fraction below one).
        scores: np.ndarray = (window + upto / (upto.max(axis=1, keepdims=True) + 1.0)).astype(np.float32)
        return scores
