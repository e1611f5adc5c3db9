"""The four phases a rule belongs to, and what a constraint rule becomes for one request.

A rule is a small frozen dataclass subclassing one phase: `ScoreRule` (changes scores),
`FilterRule` (keeps or drops a candidate), `PlacementRule` (puts an item at a position) or
`ConstraintRule` (limits what may go where). A constraint rule's `bind` returns its
`BoundConstraint`: what may go at a position on this page, and the audit of the final page.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.slate import SlateContext, Violation

__all__ = [
    "BoundConstraint",
    "ConstraintRule",
    "FilterRule",
    "PlacementRule",
    "RequestView",
    "Rule",
    "ScoreRule",
    "Slots",
    "check_attribute",
]

Slots = Sequence[int | None]  # position -> candidate row placed there (None: still empty)


class Rule(abc.ABC):
    """Base of every rule type. `name` labels the rule in violations, logs and the relaxation order."""

    name: str
    relaxable: ClassVar[bool] = False  # may appear in a relaxation order


class ScoreRule(Rule):
    """Changes candidate scores before anything is selected."""

    @abc.abstractmethod
    def adjust(self, scores: np.ndarray, candidates: CandidateSet) -> None:
        """Change `scores` (float64, aligned with `candidates`) in place."""


class FilterRule(Rule):
    """Keeps or drops single candidates: drops `attribute` values in `excluded_values`, and, when
    `unique`, any candidate whose value an earlier-ranked kept candidate already has."""

    attribute: str
    unique: ClassVar[bool] = False

    @abc.abstractmethod
    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        """Values of `attribute` dropped outright for this request."""

    @abc.abstractmethod
    def excluded_detail(self, value: str) -> str:
        """The sentence logged when a candidate is dropped for `value` (its public label)."""


class PlacementRule(Rule):
    """Puts a given item at a given position of the page."""

    position: int
    item: int


class ConstraintRule(Rule):
    """Limits which candidate may take which position; bound to one request by `bind`."""

    @abc.abstractmethod
    def bind(self, view: RequestView) -> BoundConstraint | None:
        """This rule for one request, or None when it constrains nothing on this page."""


def check_attribute(name: object, rule: str) -> None:
    """Refuse a rule whose `attribute` is not a non-empty name (the column is looked up per request)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{rule}.attribute must name an item attribute, got {name!r}")


@dataclass
class RequestView:
    """What a constraint rule sees of one request when it is bound."""

    candidates: CandidateSet
    context: SlateContext
    length: int  # positions to fill
    fixed: dict[int, int]  # position -> row, pinned


class BoundConstraint(abc.ABC):
    """A constraint bound to one request. Rows with equal `keys[row]` are interchangeable for it."""

    rule: ConstraintRule
    origin: BoundConstraint  # the check a reduced variant came from (its keys are the origin's)
    keys: Sequence[int]  # row -> the value this rule looks at
    restrict_mask: np.ndarray | None = None  # rows allowed at `restricted` positions, if any
    restricted: frozenset[int] = frozenset()
    span: int = 0  # how many preceding positions influence what may go at a position
    substitutable: bool = False  # the search may leave it aside and `substitute` rows to meet it after

    @abc.abstractmethod
    def allows(self, pos: int, row: int, slots: Slots) -> bool:
        """Whether `row` at `pos` keeps the rule, given the rows placed so far (None = empty);
        every position left of `pos` is filled."""

    def allows_ahead(self, pos: int, row: int, slots: Slots) -> bool:
        """Like `allows`, for a position further right than the next one to fill."""
        return self.allows(pos, row, slots)

    def forces_mask(self, pos: int, slots: Slots) -> bool:
        """Whether only `restrict_mask` rows may go at `pos` now (every position left of it filled):
        the greedy pass then looks among those rows alone instead of scanning the whole stream."""
        return pos in self.restricted

    def capacity_ok(self, pos: int, free_left: Sequence[int], supply: Mapping[object, int]) -> bool:
        """Necessary condition for filling `free_left` given unused rows per key value."""
        return True

    @abc.abstractmethod
    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        """Every position of the final `rows` where the rule does not hold."""

    def reduce(self, supply_total: int) -> list[tuple[BoundConstraint, bool]] | None:
        """An intermediate relaxation step (checks with hard flags) tried before making it soft."""
        return None

    def substitute(self, slots: list[int | None], ranks: dict[int, int], spare: Sequence[tuple[int, int]],
                   keep: Sequence[BoundConstraint], prefer: Sequence[BoundConstraint]) -> bool:
        """Meet this rule on a full page the search arranged without it, by putting `spare` rows
        ((rank, row) pairs not on the page, best first) in place of placed ones, each replacement
        kept only where every check of `keep` still allows it (and, when one is possible, every
        check of `prefer` too). Edits `slots` and `ranks` (position -> rank) in place; True when
        the rule is met, else False (the default, for a rule that is not `substitutable`: the search
        must place its rows itself)."""
        return False
