"""`Dispersal`: in any window of consecutive positions, at most so many items share a value of an
item attribute (category by default), counting the previous page's last positions too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from recsys.pipeline.rules.base import BoundConstraint, ConstraintRule, RequestView, Slots, check_attribute
from recsys.pipeline.slate import Violation, position_label

__all__ = ["Dispersal", "DispersalCheck"]


@dataclass(frozen=True)
class Dispersal(ConstraintRule):
    """In any `window` consecutive positions at most `max_per_window` items share an `attribute`
    value; with `across_pages`, the previous page's trailing values count too."""

    window: int
    max_per_window: int
    attribute: str = "category"
    across_pages: bool = True
    name: str = "dispersal"
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if int(self.window) < 2:
            raise ValueError(f"Dispersal.window must be >= 2, got {self.window}")
        if not 1 <= int(self.max_per_window) < int(self.window):
            raise ValueError(
                f"Dispersal.max_per_window must be in 1..window-1 ({int(self.window) - 1}), got {self.max_per_window}"
            )
        check_attribute(self.attribute, "Dispersal")

    def bind(self, view: RequestView) -> BoundConstraint:
        trailing = list(view.context.trailing(self.attribute)) if self.across_pages else []
        return DispersalCheck(self, view.candidates.attribute(self.attribute).tolist(), trailing, view)


class DispersalCheck(BoundConstraint):
    """A `Dispersal` bound to one page: each row's attribute value, and the trailing values before it."""

    rule: Dispersal

    def __init__(self, rule: Dispersal, values: list[int], trailing: list[int], view: RequestView) -> None:
        self.rule = rule
        self.origin = self
        self.values = self.keys = values
        self.window = int(rule.window)
        self.span = self.window - 1
        self.limit = int(rule.max_per_window)
        self.trailing = trailing[-(self.window - 1) :] if trailing else []
        self.length = view.length
        self.label = view.context.label
        # Positions whose windows reach a pinned position to their right need the full check.
        fixed = view.fixed
        self.look_right = [False] * view.length
        for q in fixed:
            for p in range(max(0, q - self.window + 1), min(q, view.length)):
                self.look_right[p] = True

    def _value(self, q: int, slots: Slots) -> int | None:
        if q < 0:
            t = len(self.trailing) + q
            return self.trailing[t] if t >= 0 else None
        row = slots[q]
        return None if row is None else self.values[row]

    def allows(self, pos: int, row: int, slots: Slots) -> bool:
        value = self.values[row]
        w = self.window
        if not self.look_right[pos]:
            # Everything left of pos is placed, nothing right of it: only the window ending here.
            lo = pos - w + 1
            values = self.values
            count = 0
            for r in slots[max(lo, 0) : pos]:
                if r is not None and values[r] == value:  # always placed: every position left of pos is filled
                    count += 1
            if lo < 0 and self.trailing:
                count += self.trailing[lo:].count(value)
            return count < self.limit
        return self.allows_ahead(pos, row, slots)

    def allows_ahead(self, pos: int, row: int, slots: Slots) -> bool:
        # Every window containing pos, as a sliding sum over positions pos-w+1 .. pos+w-1.
        value = self.values[row]
        w, limit = self.window, self.limit
        lo, hi = pos - w + 1, min(pos + w - 1, self.length - 1)
        hits = [1 if q == pos or self._value(q, slots) == value else 0 for q in range(lo, hi + 1)]
        count = sum(hits[:w])
        if count > limit:
            return False
        for start in range(1, pos - lo + 1):
            end = start + w - 1
            count += (hits[end] if end < len(hits) else 0) - hits[start - 1]
            if count > limit:
                return False
        return True

    def capacity_ok(self, pos: int, free_left: Sequence[int], supply: Mapping[object, int]) -> bool:
        span = self.length - pos
        w, m = self.window, self.limit
        cap = m * (span // w) + min(m, span % w)  # most positions one value can take in the span
        return sum(min(n, cap) for n in supply.values()) >= len(free_left)

    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        out: list[Violation] = []
        w, m = self.window, self.limit
        seq = list(self.trailing) + [self.values[r] for r in rows]
        base = len(self.trailing)
        for pos in range(len(rows)):
            end = base + pos
            value = seq[end]
            count = seq[max(0, end - w + 1) : end + 1].count(value)
            if count > m:
                where = " (counting the previous page)" if end - w + 1 < base else ""
                out.append(
                    Violation(
                        self.rule.name,
                        pos,
                        f"{count} items with {self.rule.attribute} {self.label(self.rule.attribute, value)} in the {w} "
                        f"positions ending at {position_label(pos)}{where}; "
                        f"limit {m}",
                    )
                )
        return out
