"""`PoolSlots`: given page positions are filled from a named pool (e.g. the mainstream pool on the
front screen); when the pool is short, its earliest slots stay hard and the rest give way first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recsys.pipeline.rules.base import BoundConstraint, ConstraintRule, RequestView, Slots
from recsys.pipeline.slate import Violation

__all__ = ["PoolCheck", "PoolSlots"]


@dataclass(frozen=True)
class PoolSlots(ConstraintRule):
    """These 0-based page positions must be filled from pool `pool` (a `CandidateSet.pools` mask).

    A pinned position is exempt; a position beyond the page length is not part of this page."""

    positions: tuple[int, ...]
    pool: str
    name: str = "pool_slots"
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positions = tuple(sorted({int(p) for p in self.positions}))
        if positions and positions[0] < 0:
            raise ValueError(f"PoolSlots.positions must be >= 0 (0-based page positions), got {positions}")
        object.__setattr__(self, "positions", positions)

    def bind(self, view: RequestView) -> BoundConstraint | None:
        positions = [p for p in self.positions if p < view.length and p not in view.fixed]
        if not positions:
            return None
        mask = view.candidates.pools.get(self.pool)
        if mask is None:
            mask = np.zeros(len(view.candidates), dtype=bool)  # an absent pool has no eligible item
        return PoolCheck(self, mask, positions)


class PoolCheck(BoundConstraint):
    """A `PoolSlots` bound to one page: which rows the pool holds, and the slots it still governs."""

    rule: PoolSlots
    restrict_mask: np.ndarray

    def __init__(
        self, rule: PoolSlots, mask: np.ndarray, positions: list[int], origin: BoundConstraint | None = None
    ) -> None:
        self.rule = rule
        self.origin = origin if origin is not None else self
        self.restrict_mask = mask
        self.mask: list[bool] = mask.tolist()
        self.keys = self.mask
        self.positions = positions
        self.restricted = frozenset(positions)

    def allows(self, pos: int, row: int, slots: Slots) -> bool:
        return pos not in self.restricted or self.mask[row]

    def capacity_ok(self, pos: int, free_left: Sequence[int], supply: Mapping[object, int]) -> bool:
        needed = sum(1 for p in free_left if p in self.restricted)
        return supply.get(True, 0) >= needed

    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        return [
            Violation(self.rule.name, p, f"filled from outside pool {self.rule.pool!r}")
            for p in self.positions
            if p < len(rows) and not self.mask[rows[p]]
        ]

    def reduce(self, supply_total: int) -> list[tuple[BoundConstraint, bool]] | None:
        # Fewer eligible pool items than slots: keep the earliest slots hard, the rest soft.
        if supply_total >= len(self.positions):
            return None
        head = self.positions[:supply_total]
        tail = self.positions[supply_total:]
        out: list[tuple[BoundConstraint, bool]] = [(PoolCheck(self.rule, self.restrict_mask, tail, self.origin), False)]
        if head:
            out.insert(0, (PoolCheck(self.rule, self.restrict_mask, head, self.origin), True))
        return out
