"""A user's negative feedback as the served path applies it (Provisions Art. 17 (draft 15): users can
act on the recommendations they get; the 2024-25 "not interested" campaign).

`FeedbackSignals.of(catalog, user, now, policy)` turns the user's stored feedback (public item ids,
`served.query.Feedback`) into catalog arrays once per request:

- `items`/`contents`: every rejected item and its content key; the filters stage removes both,
  so a content duplicate of a rejected item (the same work under another listing) goes too;
- `categories`: the primary categories of "fewer like this" feedback still in its period
  (`PolicyConfig.feedback.fewer_like_this_days`), down-weighted in the score phase.

An item the loaded model does not know is skipped: it cannot be served anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from compliance.policy import PolicyConfig
from served.catalog import Catalog
from served.query import UserState

NOT_INTERESTED = "not_interested"
FEWER_LIKE_THIS = "fewer_like_this"
KINDS = (NOT_INTERESTED, FEWER_LIKE_THIS)

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class FeedbackSignals:
    items: np.ndarray = field(default_factory=lambda: _EMPTY)  # catalog indices the user rejected
    contents: np.ndarray = field(default_factory=lambda: _EMPTY)  # their content keys
    categories: tuple[int, ...] = ()  # primary category codes down-weighted now

    @classmethod
    def of(cls, catalog: Catalog, user: UserState, now: datetime, policy: PolicyConfig) -> FeedbackSignals:
        if not user.feedback:
            return NO_FEEDBACK
        index = catalog.bundle.item_index
        codes = {name: code for code, name in enumerate(catalog.category_names)}
        period = timedelta(days=policy.feedback.fewer_like_this_days)
        items = np.asarray(sorted({int(index[f.item_id]) for f in user.feedback if f.item_id in index}), dtype=np.int64)
        categories = sorted({
            codes[f.category] for f in user.feedback
            if f.kind == FEWER_LIKE_THIS and f.category in codes and now < f.created_at + period
        })
        return cls(items=items, contents=np.unique(catalog.content[items]) if len(items) else _EMPTY,
                   categories=tuple(categories))

    def excludes(self, items: np.ndarray, content: np.ndarray) -> np.ndarray:
        """Bool mask over candidate `items` (catalog indices): rejected, or a content duplicate of one."""
        if not len(self.items):
            return np.zeros(len(items), dtype=bool)
        return np.isin(items, self.items) | np.isin(content[items], self.contents)

    def eligible(self, content: np.ndarray) -> np.ndarray:
        """Bool mask over the whole catalog: not rejected, not a content duplicate of a rejected item."""
        if not len(self.items):
            return np.ones(len(content), dtype=bool)
        return ~np.isin(content, self.contents)


NO_FEEDBACK = FeedbackSignals()
