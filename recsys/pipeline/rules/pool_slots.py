"""`PoolSlots`: items from a named pool (e.g. the editorial mainstream pool) on given page positions.

Two forms of one rule:
- fixed slots (`count` None): every listed position is filled from the pool;
- flexible slots (`count` = n): at least n of the listed positions are, whichever ones suit the
  list best. The search fills the page left to right with the best-ranked row the rules allow and
  turns to the pool only when the positions left could no longer hold the n pool items, so the
  pool items are the ones the user's ranker scores highest and they sit where the ranking puts them
  (for this rule alone that is the arrangement of highest expected DCG: the best n-of-pool set,
  in score order).
When that bounded search cannot place them, the pool items take the places of the page found
without this rule, latest listed position first, wherever every other rule still holds
(`PoolCountCheck.substitute`), so the flexible form never makes another rule give way.
When the pool is short, the earliest slots (or as many items as the pool has) stay hard and the
rest give way from the start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recsys.pipeline.rules.base import BoundConstraint, ConstraintRule, RequestView, Slots
from recsys.pipeline.slate import Violation

__all__ = ["PoolCheck", "PoolCountCheck", "PoolSlots"]


@dataclass(frozen=True)
class PoolSlots(ConstraintRule):
    """These 0-based page positions take items from pool `pool` (a `CandidateSet.pools` mask): all
    of them, or, with `count`, at least `count` of them.

    A pinned position is exempt (a pinned pool item counts towards `count`); a position beyond the
    page length is not part of this page, and `count` shrinks to the positions the page has."""

    positions: tuple[int, ...]
    pool: str
    name: str = "pool_slots"
    count: int | None = None  # None: every position; else at least this many of them
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positions = tuple(sorted({int(p) for p in self.positions}))
        if positions and positions[0] < 0:
            raise ValueError(f"PoolSlots.positions must be >= 0 (0-based page positions), got {positions}")
        if self.count is not None and not 1 <= self.count <= len(positions):
            raise ValueError(f"PoolSlots.count must be in 1..{len(positions)} (the positions listed), got {self.count}")
        object.__setattr__(self, "positions", positions)

    def bind(self, view: RequestView) -> BoundConstraint | None:
        on_page = [p for p in self.positions if p < view.length]
        free = [p for p in on_page if p not in view.fixed]
        if not free:
            return None
        mask = view.candidates.pools.get(self.pool)
        if mask is None:
            mask = np.zeros(len(view.candidates), dtype=bool)  # an absent pool has no eligible item
        if self.count is None:
            return PoolCheck(self, mask, free)
        pinned = sum(1 for p in on_page if p in view.fixed and mask[view.fixed[p]])
        needed = min(self.count, len(on_page)) - pinned
        needed = min(needed, len(free))
        if needed <= 0:
            return None
        if needed == len(free):  # no choice left: every free position is a pool slot
            return PoolCheck(self, mask, free)
        return PoolCountCheck(self, mask, free, needed)


class PoolCheck(BoundConstraint):
    """A fixed-slot `PoolSlots` bound to one page: which rows the pool holds, the slots it governs."""

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

    def shown(self, rows: Sequence[int]) -> list[int]:
        """Positions of the final `rows` whose pool item this rule placed (the picks it shows)."""
        return [p for p in self.positions if p < len(rows) and self.mask[rows[p]]]

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


class PoolCountCheck(BoundConstraint):
    """A flexible `PoolSlots` bound to one page: at least `needed` of the free `positions` hold a
    pool row. A non-pool row may take such a position while the positions after it can still hold
    the pool items not yet placed."""

    rule: PoolSlots
    restrict_mask: np.ndarray
    substitutable = True  # which positions hold the pool items is free: any the page can spare

    def __init__(self, rule: PoolSlots, mask: np.ndarray, positions: list[int], needed: int,
                 origin: BoundConstraint | None = None) -> None:
        self.rule = rule
        self.origin = origin if origin is not None else self
        self.restrict_mask = mask
        self.mask: list[bool] = mask.tolist()
        self.keys = self.mask
        self.positions = positions
        self.needed = needed
        self._set = frozenset(positions)
        # What may go at a position depends on the pool rows placed at earlier listed positions:
        # the search's memo must see all of them.
        self.span = positions[-1] + 1

    def _have(self, pos: int, slots: Slots) -> int:
        placed = (slots[q] for q in self.positions if q < pos)
        return sum(1 for row in placed if row is not None and self.mask[row])

    def allows(self, pos: int, row: int, slots: Slots) -> bool:
        return self.mask[row] or not self.forces_mask(pos, slots)

    def forces_mask(self, pos: int, slots: Slots) -> bool:
        """A pool row is owed here: the listed positions after `pos` cannot hold what is still owed."""
        if pos not in self._set:
            return False
        after = sum(1 for q in self.positions if q > pos)
        return self.needed - self._have(pos, slots) > after

    def shown(self, rows: Sequence[int]) -> list[int]:
        """Positions of the final `rows` whose pool item this rule counts: the first `needed` pool
        items of its positions (a pool item beyond them is there on its own ranking)."""
        return [p for p in self.positions if p < len(rows) and self.mask[rows[p]]][: self.needed]

    def allows_ahead(self, pos: int, row: int, slots: Slots) -> bool:
        return True  # only `allows` (every earlier position filled) knows what is still owed

    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        on_page = [p for p in self.positions if p < len(rows)]
        have = sum(1 for p in on_page if self.mask[rows[p]])
        missing = min(self.needed, len(on_page)) - have
        if missing <= 0:
            return []
        others = [p for p in on_page if not self.mask[rows[p]]][-missing:]
        return [Violation(self.rule.name, p, f"only {have} of the {self.needed} required items of positions "
                          f"{[q + 1 for q in self.positions]} from pool {self.rule.pool!r}") for p in others]

    def substitute(self, slots: list[int | None], ranks: dict[int, int], spare: Sequence[tuple[int, int]],
                   keep: Sequence[BoundConstraint], prefer: Sequence[BoundConstraint]) -> bool:
        """The count met on a page the search filled without it: each pool item still owed is the
        best-ranked spare pool row that fits, in place of the row at the latest listed position
        that can take it (where the list loses least). A pool row of the replaced row's own
        category always fits dispersal and category caps, and one of a category the page lacks
        fits them on a first page, so the substitution nearly always succeeds where the bounded
        search ran out of nodes; a replacement is only made where every check of `keep` holds."""
        pool = [(rank, row) for rank, row in spare if self.mask[row]]
        owed = self.needed - self._have(len(slots), slots)
        while owed > 0:
            placed = self._substitute_one(slots, ranks, pool, (*keep, *prefer)) or self._substitute_one(
                slots, ranks, pool, keep)
            if not placed:
                return False
            owed -= 1
        return True

    def _substitute_one(self, slots: list[int | None], ranks: dict[int, int], pool: list[tuple[int, int]],
                        checks: Sequence[BoundConstraint]) -> bool:
        """Put the best pool row that fits at the latest listed non-pool position that takes one."""
        for pos in reversed(self.positions):
            here = slots[pos]
            if here is None or self.mask[here]:
                continue
            slots[pos] = None
            for i, (rank, row) in enumerate(pool):
                if all(c.allows_ahead(pos, row, slots) for c in checks):
                    slots[pos] = row
                    ranks[pos] = rank
                    del pool[i]
                    return True
            slots[pos] = here
        return False

    def reduce(self, supply_total: int) -> list[tuple[BoundConstraint, bool]] | None:
        # Fewer eligible pool items than required: as many as there are stay hard, the rest soft.
        if supply_total >= self.needed:
            return None
        out: list[tuple[BoundConstraint, bool]] = [
            (PoolCountCheck(self.rule, self.restrict_mask, self.positions, self.needed, self.origin), False)]
        if supply_total:
            out.insert(0, (PoolCountCheck(self.rule, self.restrict_mask, self.positions, supply_total, self.origin), True))
        return out
