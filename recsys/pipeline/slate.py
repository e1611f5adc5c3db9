"""A page of the session: what it must respect from earlier pages (`SlateContext`) and what the
engine returns for it (`Slate`, with every unmet rule as a `Violation` and every removed candidate
as a `Dropped` record, so callers can log them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import SupportsInt

import numpy as np

from recsys.pipeline.candidates import CandidateSet, int_set, int_tuple

__all__ = ["SLATE_SIZE", "SLOT_PINNED", "SLOT_RANKED", "Dropped", "Slate", "SlateContext", "Violation", "position_label"]

SLOT_PINNED = "pinned"
SLOT_RANKED = "ranked"
SLATE_SIZE = "slate_size"  # rule name on the violation reported when fewer than k positions are filled


def position_label(pos: int) -> str:
    """A 0-based page position as a person reads it."""
    return f"position {pos + 1}"


@dataclass(frozen=True, init=False)
class SlateContext:
    """What this page must respect from earlier pages of the same session.

    `served_items`/`served_contents` are excluded from this page; `trailing_categories` are the
    categories of the previous page's last positions (oldest first), so dispersal windows continue
    across the page boundary; `trailing_attributes` does the same for other dispersal attributes.
    `position_offset` is the absolute position of this page's first slot. `labels` maps an
    attribute name to a function giving the public name of one of its codes (an item index to the
    item's public id, a category code to its name); violation texts use it, and name positions
    1-based, as a person reads a page. The integer inputs may be any iterables or integer arrays;
    they are stored as frozensets and tuples.
    """

    served_items: frozenset[int]
    served_contents: frozenset[int]
    trailing_categories: tuple[int, ...]
    position_offset: int
    trailing_attributes: Mapping[str, tuple[int, ...]]
    labels: Mapping[str, Callable[[int], str]] = field(compare=False)
    served_values: Mapping[str, frozenset[int]]

    def __init__(
        self,
        served_items: Iterable[SupportsInt] | None = (),
        served_contents: Iterable[SupportsInt] | None = (),
        trailing_categories: Iterable[SupportsInt] | None = (),
        position_offset: SupportsInt = 0,
        trailing_attributes: Mapping[str, Iterable[SupportsInt]] | None = None,
        labels: Mapping[str, Callable[[int], str]] | None = None,
        served_values: Mapping[str, Iterable[SupportsInt]] | None = None,
    ) -> None:
        items = int_set(served_items, "SlateContext.served_items")
        contents = int_set(served_contents, "SlateContext.served_contents")
        categories = int_tuple(trailing_categories, "SlateContext.trailing_categories")
        trailing = {
            str(k): int_tuple(v, f"SlateContext.trailing_attributes[{k!r}]")
            for k, v in dict(trailing_attributes or {}).items()
        }
        served = {str(k): int_set(v, f"SlateContext.served_values[{k!r}]") for k, v in dict(served_values or {}).items()}
        offset = int(position_offset)
        if offset < 0:
            raise ValueError(f"SlateContext.position_offset must be >= 0, got {position_offset}")
        object.__setattr__(self, "served_items", items)
        object.__setattr__(self, "served_contents", contents)
        object.__setattr__(self, "trailing_categories", categories)
        object.__setattr__(self, "position_offset", offset)
        object.__setattr__(self, "trailing_attributes", trailing)
        object.__setattr__(self, "labels", labels if labels is not None else {})
        object.__setattr__(self, "served_values", served)

    def label(self, attribute: str, value: int) -> str:
        """The public name of `value` of `attribute` (the code itself when no label is given)."""
        name = self.labels.get(attribute)
        return str(value) if name is None else name(int(value))

    def trailing(self, attribute: str) -> tuple[int, ...]:
        """Trailing values of `attribute` from the previous page, oldest first."""
        if attribute == "category" and "category" not in self.trailing_attributes:
            return self.trailing_categories
        return self.trailing_attributes.get(attribute, ())

    def after(self, slate: Slate, candidates: CandidateSet, keep_trailing: int = 32) -> SlateContext:
        """The context for the next page of the same session, once `slate` has been served."""
        rows = slate.indices
        trailing = {
            name: (values + tuple(candidates.attribute(name)[rows].tolist()))[-keep_trailing:]
            for name, values in self.trailing_attributes.items()
        }
        return SlateContext(
            served_items=self.served_items | frozenset(candidates.item[rows].tolist()),
            served_contents=self.served_contents | frozenset(candidates.content[rows].tolist()),
            trailing_categories=(self.trailing_categories + tuple(candidates.category[rows].tolist()))[-keep_trailing:],
            position_offset=self.position_offset + len(rows),
            trailing_attributes=trailing,
            labels=self.labels,
            served_values={name: values | frozenset(candidates.attribute(name)[rows].tolist())
                           for name, values in self.served_values.items()},
        )


@dataclass(frozen=True)
class Violation:
    """A rule that the returned slate does not meet at `position` (0-based, within this page)."""

    rule: str
    position: int
    reason: str


@dataclass(frozen=True)
class Dropped:
    """A candidate removed before arrangement: `reason` is a short code, `detail` the sentence."""

    index: int  # row in the CandidateSet
    item: int
    rule: str
    reason: str  # served_before | duplicate | excluded
    detail: str


@dataclass(frozen=True, eq=False)
class Slate:
    """The arranged page: candidate rows in position order plus what happened on the way."""

    indices: np.ndarray  # rows of the CandidateSet, position order
    items: np.ndarray
    scores: np.ndarray  # final scores (after boosts)
    slots: tuple[str, ...]  # per position: "pinned", a pool name, or "ranked"
    violations: tuple[Violation, ...]
    dropped: tuple[Dropped, ...]  # removed candidates that outranked the last one shown
    relaxed: tuple[str, ...]  # rule names relaxed to build this slate, in relaxation order
    k: int
    position_offset: int
    search_nodes: int  # backtracking nodes used (0: the greedy pass succeeded)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """Absolute positions of the slate in the session."""
        return self.position_offset + np.arange(len(self), dtype=np.int64)
