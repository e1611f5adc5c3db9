"""`Boost`: an affine change of the scores of one category or one item before selection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.rules.base import ScoreRule

__all__ = ["Boost"]


@dataclass(frozen=True)
class Boost(ScoreRule):
    """Scores of one category (or one item) become ``score * factor + offset`` before selection."""

    category: int | None = None
    factor: float = 1.0
    item: int | None = None
    offset: float = 0.0
    name: str = "boost"

    def __post_init__(self) -> None:
        if (self.category is None) == (self.item is None):
            raise ValueError("Boost needs exactly one of category or item")
        if not (np.isfinite(self.factor) and np.isfinite(self.offset)):
            raise ValueError(f"Boost.factor and Boost.offset must be finite, got {self.factor}, {self.offset}")

    def adjust(self, scores: np.ndarray, candidates: CandidateSet) -> None:
        hit = candidates.category == self.category if self.item is None else candidates.item == self.item
        scores[hit] = scores[hit] * self.factor + self.offset
