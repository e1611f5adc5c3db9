"""Rules of the constraint engine that act on a user's whole session and on their feedback: a cap
on one category's share of the session (against information cocoons) and a score penalty for the
categories a user asked to see fewer of. Registered in the one rule registry (`rules/registry.py`
`RULE_TYPES`), so `rule_from_config` builds them by name.

- `SessionShareCap` (constraint, relaxable): after this page, no value of `attribute` holds more
  than `max_share` of the session's positions (the earlier pages' counts are given). With fewer
  than `min_positions` positions in the session so far, the cap is counted as if there were
  `min_positions` (a short session is not held to an impossible share: 1 item of 1 is 100%).
- `CategoryPenalty` (score): candidates of the given categories lose `strength` times the spread of
  this request's scores, so they sink below most others without being removed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.rules.base import BoundConstraint, ConstraintRule, RequestView, ScoreRule, Slots
from recsys.pipeline.slate import Violation

__all__ = ["CategoryPenalty", "SessionShareCap", "session_limit"]


def session_limit(max_share: float, positions: int, min_positions: int) -> int:
    """How many of `positions` session positions one value may hold: floor(max_share * n), with n
    at least `min_positions`, and at least 1."""
    n = max(int(positions), int(min_positions))
    return max(1, math.floor(max_share * n + 1e-9))


@dataclass(frozen=True)
class SessionShareCap(ConstraintRule):
    """At most `max_share` of the session's positions share one `attribute` value, counting the
    earlier pages' values (`prior`: (value, count) pairs) and this page."""

    max_share: float
    prior: tuple[tuple[int, int], ...] = ()
    attribute: str = "category"
    min_positions: int = 10
    name: str = "session_diversity"
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0.0 < float(self.max_share) <= 1.0:
            raise ValueError(f"SessionShareCap.max_share must be in (0, 1], got {self.max_share}")
        if int(self.min_positions) < 1:
            raise ValueError(f"SessionShareCap.min_positions must be >= 1, got {self.min_positions}")
        prior = tuple(sorted((int(v), int(c)) for v, c in dict(self.prior).items() if int(c) > 0))
        if any(c < 0 for _, c in prior):
            raise ValueError("SessionShareCap.prior counts must be >= 0")
        object.__setattr__(self, "prior", prior)

    @classmethod
    def for_session(cls, earlier_values: Sequence[int], max_share: float, **fields: Any) -> SessionShareCap:
        """The rule for a page that follows pages showing `earlier_values` (in any order)."""
        return cls(max_share=max_share, prior=tuple(Counter(int(v) for v in earlier_values).items()), **fields)

    @property
    def prior_total(self) -> int:
        return sum(c for _, c in self.prior)

    def bind(self, view: RequestView) -> BoundConstraint | None:
        return _SessionShareCheck(self, view.candidates.attribute(self.attribute).tolist(), view)


class _SessionShareCheck(BoundConstraint):
    rule: SessionShareCap

    def __init__(self, rule: SessionShareCap, values: list[int], view: RequestView) -> None:
        self.rule = rule
        self.origin = self
        self.values = self.keys = values
        self.prior: dict[object, int] = dict(rule.prior)  # value -> count on the session's earlier pages
        self.length = view.length
        self.limit = session_limit(rule.max_share, rule.prior_total + view.length, rule.min_positions)
        self.label = view.context.label
        self._placed_key: tuple[int | None, ...] | None = None  # the slots the counts below were taken from
        self._placed: Counter[int] = Counter()

    def _count(self, value: int, pos: int, slots: Slots) -> int:
        """The session's items with `value`, earlier pages and the slots placed, pos excluded."""
        key = tuple(slots)
        if key != self._placed_key:  # the engine asks many rows for one arrangement: count it once
            self._placed = Counter(self.values[r] for r in slots if r is not None)
            self._placed_key = key
        here = slots[pos] if pos < len(slots) else None
        own = 1 if here is not None and self.values[here] == value else 0
        return self.prior.get(value, 0) + self._placed[value] - own

    def allows(self, pos: int, row: int, slots: Slots) -> bool:
        return self._count(self.values[row], pos, slots) < self.limit

    def capacity_ok(self, pos: int, free_left: Sequence[int], supply: Mapping[object, int]) -> bool:
        room = sum(min(n, max(0, self.limit - self.prior.get(value, 0))) for value, n in supply.items())
        return room >= len(free_left)

    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        rule = self.rule
        total = rule.prior_total + len(rows)
        limit = session_limit(rule.max_share, total, rule.min_positions)
        counts = dict(self.prior)
        out: list[Violation] = []
        for pos, row in enumerate(rows):
            value = self.values[row]
            counts[value] = counts.get(value, 0) + 1
            if counts[value] > limit:
                out.append(Violation(rule.name, pos, f"{counts[value]} of the session's {total} positions have "
                                     f"{rule.attribute} {self.label(rule.attribute, value)}; limit {limit} "
                                     f"({rule.max_share:.0%} of the session)"))
        return out


@dataclass(frozen=True)
class CategoryPenalty(ScoreRule):
    """Candidates of `categories` lose `strength` x (max - min of this request's scores)."""

    categories: frozenset[int]
    strength: float = 0.5
    name: str = "fewer_like_this"

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", frozenset(int(c) for c in self.categories))
        if not (np.isfinite(self.strength) and 0.0 <= float(self.strength) <= 10.0):
            raise ValueError(f"CategoryPenalty.strength must be in 0..10, got {self.strength}")

    def adjust(self, scores: np.ndarray, candidates: CandidateSet) -> None:
        if not self.categories or not len(scores):
            return
        hit = np.isin(candidates.category, np.fromiter(self.categories, dtype=np.int64))
        finite = scores[np.isfinite(scores)]
        spread = float(finite.max() - finite.min()) if len(finite) else 0.0
        scores[hit] -= float(self.strength) * (spread if spread > 0 else 1.0)
