"""The re-ranking constraint engine: one place that turns scored candidates into the final slate.

It applies score boosts, drops duplicate/excluded candidates, places pins, fills pool slots and
spreads attribute values over positions (dispersal), searching for the best-scoring arrangement
that meets every rule and relaxing soft rules in a declared order when none does. Every unmet rule
comes back as a `Violation` and every removed candidate as a `Dropped` record, so callers can log them.

Rules are small frozen dataclasses, one class per rule type (see `RULE_TYPES`). Each subclasses one
of four phases: `ScoreRule` (changes scores), `FilterRule` (keeps or drops a candidate),
`PlacementRule` (puts an item at a position) or `ConstraintRule` (limits what may go where).
Adding a rule type is one such class plus one entry in `RULE_TYPES`; a constraint rule's `bind`
also returns its `BoundConstraint` (what may go at a position, and its audit).

De-duplication comes first: pins claim their item and content, then candidates in score order
(ties: lower row) are dropped when a filter excludes their value or an earlier kept candidate has it.

Search: positions are filled left to right, trying candidates in score order, with backtracking;
candidates that agree on every constraint-relevant attribute are interchangeable, so only the best
of each such class is tried at a position. The first complete arrangement found is therefore the
lexicographically best by score among all that satisfy the rules. A cheap greedy pass (the
search's first branch) answers most requests; only when it fails does the engine scan every
candidate and backtrack, pruned by capacity bounds, forward checks of pool slots and a memo of
failed states, within one node budget shared by the relaxation levels.

Relaxation levels: all rules hard; then, for each name in the relaxation order, that rule turns
soft (violations allowed, still avoided where possible, earlier-named rules given up first). Pool
slots first keep their earliest slots hard when the pool has fewer items than slots; a relaxable
filter (content de-duplication) lets its drops fill only the positions nothing else can. Rules not
named never give way: if they cannot be met the slate is shorter, and that is reported too.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

__all__ = [
    "RULE_TYPES",
    "SLOT_PINNED",
    "SLOT_RANKED",
    "SLATE_SIZE",
    "Boost",
    "BoundConstraint",
    "CandidateSet",
    "ConstraintRule",
    "Dispersal",
    "Dropped",
    "Exclude",
    "FilterRule",
    "Pin",
    "PlacementRule",
    "PoolSlots",
    "RequestView",
    "Rule",
    "ScoreRule",
    "Slate",
    "SlateContext",
    "Source",
    "UniqueContent",
    "UniqueItems",
    "UniqueValues",
    "Violation",
    "rule_from_config",
    "select",
]

SLOT_PINNED = "pinned"
SLOT_RANKED = "ranked"
SLATE_SIZE = "slate_size"  # rule name on the violation reported when fewer than k positions are filled
DEFAULT_SEARCH_BUDGET = 256  # search nodes for one request, shared by its relaxation levels
_SCAN_CHUNK = 32  # candidates de-duplicated per step of the lazy scan
_GREEDY_PATIENCE = 256  # rows the greedy pass tries for one position before handing over to the search
# (64 sent 3.5 % of lists at 1M items to the search, ~1.2 ms each: a user whose top 70 candidates
# share two categories needs a third one for dispersal; 256 sent none, measured)


class Source(enum.IntEnum):
    """Which candidate source produced a row (the `source` column of a `CandidateSet`)."""

    RANKED = 0  # retrieval + ranker, personalized
    MAINSTREAM = 1  # curated editorial pool
    POPULAR = 2
    PINNED = 3  # an operator's pin
    TRENDING = 4


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------
_COLUMNS: dict[str, type] = {
    "item": np.int64,
    "score": np.float32,
    "category": np.int32,
    "content": np.int64,
    "source": np.int8,
}
_ATTRIBUTES = ("item", "category", "content", "source")  # built-in integer columns; `extra` adds any other


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Candidates as aligned numpy columns; row i is candidate i.

    `item` is the item index, `score` higher-is-better, `category` the primary category code,
    `content` a content key (equal keys = the same content), `source` a `Source` code, `pools`
    optional named boolean eligibility masks (e.g. ``pools["mainstream"]``), and `extra` any other
    integer item attribute a rule may name (e.g. ``extra["creator"]``: equal codes = same creator).
    """

    item: np.ndarray
    score: np.ndarray
    category: np.ndarray
    content: np.ndarray
    source: np.ndarray
    pools: Mapping[str, np.ndarray] = field(default_factory=dict)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        length = None
        for name, dtype in _COLUMNS.items():
            column = _column(getattr(self, name), f"CandidateSet.{name}", dtype)
            if length is None:
                length = column.shape[0]
            elif column.shape[0] != length:
                raise ValueError(f"CandidateSet.{name} has {column.shape[0]} rows, expected {length} (the length of item)")
            object.__setattr__(self, name, column)
        if not np.isfinite(self.score).all():
            raise ValueError("CandidateSet.score must be finite (found NaN or inf)")
        pools = {}
        for pool, mask in dict(self.pools).items():
            array = np.asarray(mask)
            if array.dtype != np.bool_ or array.shape != (length,):
                raise ValueError(
                    f"CandidateSet.pools[{pool!r}] must be a boolean array of shape ({length},), "
                    f"got dtype {array.dtype} shape {array.shape}"
                )
            pools[str(pool)] = array
        object.__setattr__(self, "pools", pools)
        extra = {}
        for name, values in dict(self.extra).items():
            if name in _COLUMNS:
                raise ValueError(f"CandidateSet.extra[{name!r}]: {name!r} is a built-in column")
            column = _column(values, f"CandidateSet.extra[{name!r}]", np.int64)
            if column.shape[0] != length:
                raise ValueError(f"CandidateSet.extra[{name!r}] has {column.shape[0]} rows, expected {length}")
            extra[str(name)] = column
        object.__setattr__(self, "extra", extra)

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def attribute(self, name: str) -> np.ndarray:
        """The integer column `name`: item, category, content, source, or one of `extra`."""
        if name in _ATTRIBUTES:
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        raise ValueError(f"unknown candidate attribute {name!r}; available: {', '.join([*_ATTRIBUTES, *self.extra])}")

    @classmethod
    def concat(cls, parts: Sequence[CandidateSet]) -> CandidateSet:
        """Merge candidate sets from several sources into one row per item.

        Each item keeps its best-scoring row (earlier parts win ties), and its pool eligibility is
        the OR over all its rows, so an item that one source marks as pool-eligible stays eligible.
        """
        if not parts:
            raise ValueError("CandidateSet.concat needs at least one part")
        names = sorted({name for part in parts for name in part.pools})
        extras = set(parts[0].extra)
        if any(set(p.extra) != extras for p in parts):
            raise ValueError("CandidateSet.concat: every part needs the same extra attributes")
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS}
        extra = {name: np.concatenate([p.extra[name] for p in parts]) for name in sorted(extras)}
        masks = {
            name: np.concatenate([p.pools.get(name, np.zeros(len(p), dtype=bool)) for p in parts]) for name in names
        }
        if not len(columns["item"]):
            return cls(**columns, pools=masks, extra=extra)
        by_item = np.lexsort((-columns["score"].astype(np.float64), columns["item"]))
        sorted_items = columns["item"][by_item]
        starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]])
        keep = by_item[starts]
        merged = {name: np.logical_or.reduceat(mask[by_item], starts) for name, mask in masks.items()}
        back = np.argsort(keep, kind="stable")  # restore the concatenation order of the kept rows
        keep = keep[back]
        return cls(
            **{name: column[keep] for name, column in columns.items()},
            pools={name: mask[back] for name, mask in merged.items()},
            extra={name: column[keep] for name, column in extra.items()},
        )


def _column(values, label: str, dtype: type) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{label} must be 1-D, got shape {array.shape}")
    if array.dtype == dtype:
        return array
    if array.size == 0:
        return array.astype(dtype)
    if dtype is np.float32:
        if array.dtype.kind not in "fiub":
            raise ValueError(f"{label} must be numeric, got dtype {array.dtype}")
        return array.astype(np.float32)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{label} must hold integers, got dtype {array.dtype}")
    info = np.iinfo(dtype)
    if array.min() < info.min or array.max() > info.max:
        raise ValueError(f"{label} values must fit {np.dtype(dtype).name} ({info.min}..{info.max})")
    return array.astype(dtype)


def _int_set(values, label: str) -> frozenset[int]:
    if values is None:
        return frozenset()
    if isinstance(values, np.ndarray):
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{label} must hold integers, got dtype {values.dtype}")
        return frozenset(values.ravel().tolist())
    return frozenset(int(v) for v in values)


def _int_tuple(values, label: str) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, np.ndarray):
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{label} must hold integers, got dtype {values.dtype}")
        return tuple(values.ravel().tolist())
    return tuple(int(v) for v in values)


def _position(pos: int) -> str:
    """A 0-based page position as a person reads it."""
    return f"position {pos + 1}"


@dataclass(frozen=True)
class SlateContext:
    """What this page must respect from earlier pages of the same session.

    `served_items`/`served_contents` are excluded from this page; `trailing_categories` are the
    categories of the previous page's last positions (oldest first), so dispersal windows continue
    across the page boundary; `trailing_attributes` does the same for other dispersal attributes.
    `position_offset` is the absolute position of this page's first slot. `labels` maps an
    attribute name to a function giving the public name of one of its codes (an item index to the
    item's public id, a category code to its name); violation texts use it, and name positions
    1-based, as a person reads a page.
    """

    served_items: frozenset[int] = frozenset()
    served_contents: frozenset[int] = frozenset()
    trailing_categories: tuple[int, ...] = ()
    position_offset: int = 0
    trailing_attributes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    labels: Mapping[str, Callable[[int], str]] = field(default_factory=dict, compare=False)
    served_values: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "served_items", _int_set(self.served_items, "SlateContext.served_items"))
        object.__setattr__(self, "served_contents", _int_set(self.served_contents, "SlateContext.served_contents"))
        object.__setattr__(
            self, "trailing_categories", _int_tuple(self.trailing_categories, "SlateContext.trailing_categories")
        )
        trailing = {
            str(k): _int_tuple(v, f"SlateContext.trailing_attributes[{k!r}]")
            for k, v in dict(self.trailing_attributes).items()
        }
        object.__setattr__(self, "trailing_attributes", trailing)
        served = {str(k): _int_set(v, f"SlateContext.served_values[{k!r}]") for k, v in dict(self.served_values).items()}
        object.__setattr__(self, "served_values", served)
        if int(self.position_offset) < 0:
            raise ValueError(f"SlateContext.position_offset must be >= 0, got {self.position_offset}")
        object.__setattr__(self, "position_offset", int(self.position_offset))

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


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------
# Rule types
# ---------------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class UniqueItems(FilterRule):
    """No item twice on the page, and none served earlier in the session. Hard: never relaxed."""

    name: str = "unique_items"
    attribute: ClassVar[str] = "item"
    unique: ClassVar[bool] = True

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_items

    def excluded_detail(self, value: str) -> str:
        return f"item {value} was served earlier in this session"


@dataclass(frozen=True)
class UniqueContent(FilterRule):
    """No two items with the same content key, nor content served earlier in the session.

    Relaxed only when its name is in the relaxation order and the page cannot otherwise be filled;
    then duplicates fill the remaining positions and each is reported."""

    name: str = "unique_content"
    attribute: ClassVar[str] = "content"
    unique: ClassVar[bool] = True
    relaxable: ClassVar[bool] = True

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_contents

    def excluded_detail(self, value: str) -> str:
        return f"content {value} was served earlier in this session"


@dataclass(frozen=True)
class UniqueValues(FilterRule):
    """No two items with the same value of `attribute` on the page, nor a value served earlier in
    the session (`SlateContext.served_values`): de-duplication over any item attribute, e.g. one
    item per series. Relaxable: named in the relaxation order, it gives way like content dedup."""

    attribute: str = "content"
    name: str = "unique_values"
    unique: ClassVar[bool] = True
    relaxable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_attribute(self.attribute, "UniqueValues")

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return context.served_values.get(self.attribute, frozenset())

    def excluded_detail(self, value: str) -> str:
        return f"{self.attribute} {value} was served earlier in this session"


def _check_attribute(name: object, rule: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{rule}.attribute must name an item attribute, got {name!r}")


@dataclass(frozen=True)
class Exclude(FilterRule):
    """Drops every candidate whose `attribute` value is in `values` (e.g. blocked items). Hard."""

    values: frozenset[int] = frozenset()
    attribute: str = "item"
    name: str = "exclude"

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _int_set(self.values, f"Exclude({self.name}).values"))
        _check_attribute(self.attribute, "Exclude")

    def excluded_values(self, context: SlateContext) -> frozenset[int]:
        return self.values

    def excluded_detail(self, value: str) -> str:
        return f"{self.attribute} {value} is excluded by {self.name}"


@dataclass(frozen=True)
class Pin(PlacementRule):
    """A specific item at a specific 0-based page position; wins over pool slots and dispersal,
    yields only to filters (a served, excluded or duplicate item is not placed and is reported)."""

    position: int
    item: int
    name: str = "pin"

    def __post_init__(self) -> None:
        if int(self.position) < 0:
            raise ValueError(f"Pin.position must be >= 0 (0-based page position), got {self.position}")
        object.__setattr__(self, "position", int(self.position))
        object.__setattr__(self, "item", int(self.item))


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
        _check_attribute(self.attribute, "Dispersal")

    def bind(self, view: RequestView) -> BoundConstraint:
        trailing = list(view.context.trailing(self.attribute)) if self.across_pages else []
        return _DispersalCheck(self, view.candidates.attribute(self.attribute).tolist(), trailing, view)


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
        return _PoolCheck(self, mask, positions)


# The registry: config type name -> rule class (policy-as-config). Add a rule type here.
RULE_TYPES: dict[str, type[Rule]] = {
    "unique_items": UniqueItems,
    "unique_content": UniqueContent,
    "unique": UniqueValues,
    "exclude": Exclude,
    "dispersal": Dispersal,
    "pool_slots": PoolSlots,
    "pin": Pin,
    "boost": Boost,
}


def rule_from_config(spec: Mapping) -> Rule:
    """Build a rule from ``{"type": <RULE_TYPES key>, **fields}``."""
    fields = dict(spec)
    kind = fields.pop("type", None)
    if kind not in RULE_TYPES:
        raise ValueError(f"unknown rule type {kind!r}; known: {', '.join(RULE_TYPES)}")
    try:
        return RULE_TYPES[kind](**fields)
    except TypeError as exc:
        raise ValueError(f"bad fields for rule type {kind!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Bound constraints: one request's view of a ConstraintRule
# ---------------------------------------------------------------------------------------------------
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
    keys: list  # row -> the value this rule looks at
    restrict_mask: np.ndarray | None = None  # rows allowed at `restricted` positions, if any
    restricted: frozenset[int] = frozenset()
    span: int = 0  # how many preceding positions influence what may go at a position

    @abc.abstractmethod
    def allows(self, pos: int, row: int, slots: list) -> bool:
        """Whether `row` at `pos` keeps the rule, given the rows placed so far (None = empty);
        every position left of `pos` is filled."""

    def allows_ahead(self, pos: int, row: int, slots: list) -> bool:
        """Like `allows`, for a position further right than the next one to fill."""
        return self.allows(pos, row, slots)

    def capacity_ok(self, pos: int, free_left: Sequence[int], supply: Mapping[object, int]) -> bool:
        """Necessary condition for filling `free_left` given unused rows per key value."""
        return True

    @abc.abstractmethod
    def audit(self, rows: Sequence[int], fixed: Mapping[int, int]) -> list[Violation]:
        """Every position of the final `rows` where the rule does not hold."""

    def reduce(self, supply_total: int) -> list[tuple[BoundConstraint, bool]] | None:
        """An intermediate relaxation step (checks with hard flags) tried before making it soft."""
        return None


class _DispersalCheck(BoundConstraint):
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

    def _value(self, q: int, slots: list):
        if q < 0:
            t = len(self.trailing) + q
            return self.trailing[t] if t >= 0 else None
        row = slots[q]
        return None if row is None else self.values[row]

    def allows(self, pos: int, row: int, slots: list) -> bool:
        value = self.values[row]
        w = self.window
        if not self.look_right[pos]:
            # Everything left of pos is placed, nothing right of it: only the window ending here.
            lo = pos - w + 1
            values = self.values
            count = 0
            for r in slots[max(lo, 0) : pos]:
                if values[r] == value:
                    count += 1
            if lo < 0 and self.trailing:
                count += self.trailing[lo:].count(value)
            return count < self.limit
        return self.allows_ahead(pos, row, slots)

    def allows_ahead(self, pos: int, row: int, slots: list) -> bool:
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
        out = []
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
                        f"positions ending at {_position(pos)}{where}; "
                        f"limit {m}",
                    )
                )
        return out


class _PoolCheck(BoundConstraint):
    def __init__(self, rule: PoolSlots, mask: np.ndarray, positions: list[int], origin: BoundConstraint | None = None) -> None:
        self.rule = rule
        self.origin = origin if origin is not None else self
        self.restrict_mask = mask
        self.mask = self.keys = mask.tolist()
        self.positions = positions
        self.restricted = frozenset(positions)

    def allows(self, pos: int, row: int, slots: list) -> bool:
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
        out: list[tuple[BoundConstraint, bool]] = [(_PoolCheck(self.rule, self.restrict_mask, tail, self.origin), False)]
        if head:
            out.insert(0, (_PoolCheck(self.rule, self.restrict_mask, head, self.origin), True))
        return out


# ---------------------------------------------------------------------------------------------------
# De-duplication stream: candidates in score order, each kept, relaxably dropped or hard-dropped
# ---------------------------------------------------------------------------------------------------
_KEPT, _SOFT_DROP, _HARD_DROP = 0, 1, 2


class _Filter:
    __slots__ = ("rule", "column", "excluded", "seen", "hard", "pinned", "ordered", "repeated")

    def __init__(self, rule: FilterRule, column: np.ndarray, context: SlateContext, hard: bool) -> None:
        self.rule = rule
        self.column = column
        self.excluded = rule.excluded_values(context)
        self.seen: dict[int, int] | None = {} if rule.unique else None  # value -> row that claimed it
        self.hard = hard
        self.pinned: dict[int, int] = {}  # values claimed by pins, before any candidate is scanned
        self.ordered: np.ndarray | None = None  # column in rank order, built on first peek
        self.repeated: set[int] = set()  # values more than one candidate has (built with `ordered`)


class _Stream:
    """Lazily de-duplicates candidates in rank order (pinned rows claim their values first)."""

    def __init__(self, order: np.ndarray, filters: list[_Filter]) -> None:
        self.order = order
        self.total = int(order.shape[0])
        self.filters = filters
        self.rows: list[int] = []  # rank -> row
        self.status: list[int] = []  # rank -> _KEPT | _SOFT_DROP | _HARD_DROP
        self.blame: dict[int, tuple[_Filter, int, int | None]] = {}  # rank -> (filter, value, other row)
        self.soft_names: dict[int, frozenset[str]] = {}  # rank -> relaxable filters that dropped it
        self.kept = 0
        self._peeked: dict[int, int] = {}  # rank -> status, for ranks beyond the scanned prefix

    def peek(self, rank: int) -> int:
        """Status at `rank` without scanning up to it: only earlier rows sharing one of its values
        can drop it, so evaluate those (recursively, memoised). Equal to what the scan will find."""
        if rank < len(self.rows):
            return self.status[rank]
        if rank >= self.total:
            return _HARD_DROP
        if rank - len(self.rows) <= _SCAN_CHUNK:
            self.scan_to(rank)
            return self.status[rank]
        status = self._peeked.get(rank)
        if status is not None:
            return status
        status = _KEPT
        for f in self.filters:
            if f.ordered is None:
                f.ordered = f.column[self.order]
                if f.seen is not None:
                    values, counts = np.unique(f.ordered, return_counts=True)
                    f.repeated = set(values[counts > 1].tolist())
            value = int(f.ordered[rank])
            if value in f.excluded or value in f.pinned:
                hit = True
            elif f.seen is not None and value in f.repeated:  # a value no other candidate has: no earlier copy
                earlier = np.flatnonzero(f.ordered[:rank] == value)
                if len(earlier) > _SCAN_CHUNK:  # a long chain of copies: scanning is simpler
                    self.scan_to(rank)
                    return self.status[rank]
                hit = any(self.peek(int(r)) != _HARD_DROP for r in earlier)
            else:
                hit = False
            if hit:
                if f.hard:
                    status = _HARD_DROP
                    break
                status = _SOFT_DROP
        self._peeked[rank] = status
        return status

    @property
    def scanned(self) -> int:
        return len(self.rows)

    def row_at(self, rank: int) -> int:
        return self.rows[rank] if rank < len(self.rows) else int(self.order[rank])

    def claim(self, row: int, values: Sequence[int]) -> None:
        for f, value in zip(self.filters, values):
            if f.seen is not None:
                f.seen.setdefault(value, row)

    def check(self, values: Sequence[int]) -> tuple[int, _Filter | None, int | None]:
        """First hard filter (else first relaxable one) that drops a row with these values."""
        soft = None
        for f, value in zip(self.filters, values):
            if value in f.excluded:
                hit = (f, value, None)
            elif f.seen is not None and value in f.seen:
                hit = (f, value, f.seen[value])
            else:
                continue
            if f.hard:
                return hit
            if soft is None:
                soft = hit
        return soft if soft is not None else (None, None, None)

    def scan_to(self, rank: int) -> bool:
        """Scan until rank `rank` is known; False if there are not that many candidates."""
        while len(self.rows) <= rank:
            start = len(self.rows)
            if start >= self.total:
                return False
            self._scan(start, min(start + _SCAN_CHUNK, self.total))
        return True

    def scan_all(self) -> None:
        if len(self.rows) < self.total:
            self._scan(len(self.rows), self.total)

    def _scan(self, start: int, stop: int) -> None:
        rows = self.order[start:stop]
        specs = [(f.column[rows].tolist(), f.excluded, f.seen, f.hard, f) for f in self.filters]
        blame, out_rows, out_status = self.blame, self.rows, self.status
        kept = 0
        rank = start
        for i, row in enumerate(rows.tolist()):
            status = _KEPT
            soft = None
            for column, excluded, seen, hard, f in specs:
                value = column[i]
                if value in excluded:
                    other = None
                elif seen is not None and value in seen:
                    other = seen[value]
                else:
                    continue
                if hard:
                    status = _HARD_DROP
                    blame[rank] = (f, value, other)
                    break
                if soft is None:
                    soft = [f.rule.name]
                    blame[rank] = (f, value, other)
                else:
                    soft.append(f.rule.name)
            if status == _KEPT:
                if soft is None:
                    kept += 1
                else:
                    status = _SOFT_DROP
                    self.soft_names[rank] = frozenset(soft)
            if status != _HARD_DROP:
                for column, excluded, seen, hard, f in specs:
                    if seen is not None and column[i] not in seen:
                        seen[column[i]] = row
            out_rows.append(row)
            out_status.append(status)
            rank += 1
        self.kept += kept


# ---------------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------------
class _BudgetExhausted(Exception):
    pass


@dataclass
class _Level:
    relaxed: tuple[str, ...]
    hard: list[BoundConstraint]
    soft: list[tuple[BoundConstraint, int]]  # check, weight (higher = relaxed later = more important)
    soft_filters: frozenset[str]  # relaxable filter names whose drops may fill positions
    filter_weight: int


def _class_index(stream: _Stream, checks: list[BoundConstraint], length: int) -> dict[tuple, list[int]]:
    """Group usable ranks by what every check sees, plus their drop status (None = kept, else the
    relaxable filters that dropped them). A class never contributes more than `length` rows."""
    status = np.asarray(stream.status, dtype=np.int8)
    ranks = np.flatnonzero(status != _HARD_DROP)
    if not len(ranks):
        return {}
    rows = np.asarray(stream.rows, dtype=np.int64)[ranks]
    code = np.zeros(len(ranks), dtype=np.int64)
    columns = [np.asarray(c.keys)[rows] for c in checks]
    soft = {rank: names for rank, names in stream.soft_names.items()}
    soft_ids = {names: i + 1 for i, names in enumerate(dict.fromkeys(soft.values()))}
    columns.append(np.asarray([soft_ids[soft[r]] if r in soft else 0 for r in ranks.tolist()], dtype=np.int64)
                   if soft else np.zeros(len(ranks), dtype=np.int64))
    for column in columns:
        values, inverse = np.unique(column, return_inverse=True)
        code = code * len(values) + inverse.ravel()
    by_class = np.argsort(code, kind="stable")  # within a class: rank order
    sorted_code = code[by_class]
    starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]]).tolist()
    ends = starts[1:] + [len(by_class)]
    rank_list = ranks.tolist()
    row_list = rows.tolist()
    order = by_class.tolist()
    classes: dict[tuple, list[int]] = {}
    for start, end in zip(starts, ends):
        members = order[start : min(end, start + length)]
        first = members[0]
        row = row_list[first]
        rank = rank_list[first]
        key = (*[c.keys[row] for c in checks], soft.get(rank))
        classes[key] = [rank_list[i] for i in members]
    return classes


class _Search:
    """Depth-first search over free positions (iterative, so any k works), trying the best row of
    each class in rank order, soft-rule violators last; pruned by capacity bounds, forward checks
    of restricted positions, and a memo of failed states."""

    def __init__(self, stream: _Stream, length: int, fixed: dict[int, int], checks: list[BoundConstraint],
                 classes: dict[tuple, list[int]], level: _Level, supply_kept: int, budget: int,
                 backtrack: bool = True) -> None:
        self.rows = stream.rows
        self.length = length
        self.free = [p for p in range(length) if p not in fixed]
        self.level = level
        self.budget = budget
        self.backtrack = backtrack
        self.nodes = 0
        self.slots: list[int | None] = [fixed.get(p) for p in range(length)]
        self.chosen_rank: dict[int, int] = {}  # position -> rank of the stream row placed there
        self.best: list[int | None] = list(self.slots)
        self.best_ranks: dict[int, int] = {}
        self.best_depth = -1
        # Relaxable drops may only cover what the kept rows cannot.
        self.soft_quota = max(0, len(self.free) - supply_kept)
        self.soft_used = 0
        # Rows used from a class are always a prefix of its list (best rank first).
        self.classes = {
            key: ranks for key, ranks in classes.items() if key[-1] is None or key[-1] <= level.soft_filters
        }
        self.pointer: dict[tuple, int] = dict.fromkeys(self.classes, 0)
        self.hard_index = [checks.index(c.origin) for c in level.hard]
        self.restricted = [(c, i) for c, i in zip(level.hard, self.hard_index) if c.restricted]
        self.span = max((c.span for c in checks), default=0)
        self.pos_key: list[tuple | None] = [None] * length
        self.failed: set[tuple] = set()
        self._keys: list[tuple] = []  # key placed at each depth

    def run(self) -> bool:
        """True when every free position is filled; `best` keeps the deepest prefix reached."""
        frontier: list[tuple[Iterator[tuple[int, tuple]], tuple]] = []
        while True:
            depth = len(frontier)
            if depth > self.best_depth:
                self.best_depth = depth
                self.best = list(self.slots)
                self.best_ranks = dict(self.chosen_rank)
            if depth == len(self.free):
                return True
            self.nodes += 1
            if self.nodes > self.budget:
                raise _BudgetExhausted
            frontier.append(self._node(depth))
            while True:
                choice = next(frontier[-1][0], None)
                if choice is not None:
                    self._place(len(frontier) - 1, *choice)
                    break
                self.failed.add(frontier.pop()[1])
                if not frontier or not self.backtrack:
                    return False
                self._unplace(len(frontier) - 1)

    def _place(self, depth: int, rank: int, key: tuple) -> None:
        pos = self.free[depth]
        self.slots[pos] = self.rows[rank]
        self.pos_key[pos] = key
        self.chosen_rank[pos] = rank
        self.pointer[key] += 1
        self.soft_used += key[-1] is not None
        self._keys.append(key)

    def _unplace(self, depth: int) -> None:
        pos = self.free[depth]
        key = self._keys.pop()
        self.soft_used -= key[-1] is not None
        self.pointer[key] -= 1
        self.slots[pos] = None
        self.pos_key[pos] = None
        del self.chosen_rank[pos]

    def _available(self) -> list[tuple[tuple, int]]:
        """(key, unused rows usable now) per class with any."""
        out = []
        soft_left = self.soft_quota - self.soft_used
        for key, ranks in self.classes.items():
            left = len(ranks) - self.pointer[key]
            if left and key[-1] is not None:
                left = min(left, soft_left)
            if left > 0:
                out.append((key, left))
        return out

    def _node(self, depth: int) -> tuple[Iterator[tuple[int, tuple]], tuple]:
        pos = self.free[depth]
        state = (depth, tuple(self.pointer.values()), tuple(self.pos_key[max(0, pos - self.span) : pos]))
        if not self.backtrack:
            return self._options(pos), state  # a single dive: go as deep as rows allow, no pruning
        if state in self.failed:
            return iter(()), state
        free_left = self.free[depth:]
        available = self._available()
        if sum(n for _, n in available) < len(free_left):
            return iter(()), state
        for check, index in zip(self.level.hard, self.hard_index):
            supply: dict = {}
            for key, n in available:
                supply[key[index]] = supply.get(key[index], 0) + n
            if not check.capacity_ok(pos, free_left, supply):
                return iter(()), state
        # Forward check: every restricted position still open must have some row that fits it.
        slots, rows, hard = self.slots, self.rows, self.level.hard
        for check, index in self.restricted:
            for q in check.restricted:
                if q <= pos or slots[q] is not None:
                    continue
                if not any(
                    key[index] and all(c.allows_ahead(q, rows[self.classes[key][self.pointer[key]]], slots) for c in hard)
                    for key, _ in available
                ):
                    return iter(()), state
        return self._options(pos), state

    def _options(self, pos: int) -> Iterator[tuple[int, tuple]]:
        heads = []
        soft_full = self.soft_used >= self.soft_quota
        for key, ranks in self.classes.items():
            p = self.pointer[key]
            if p < len(ranks) and not (soft_full and key[-1] is not None):
                heads.append((ranks[p], key))
        heads.sort()
        deferred = []
        slots, rows = self.slots, self.rows
        for rank, key in heads:
            row = rows[rank]
            if not all(c.allows(pos, row, slots) for c in self.level.hard):
                continue
            cost = sum(weight for c, weight in self.level.soft if not c.allows(pos, row, slots))
            if key[-1] is not None:
                cost += self.level.filter_weight
            if cost:
                deferred.append((cost, rank, key))
                continue
            yield rank, key
        deferred.sort()
        for _, rank, key in deferred:
            yield rank, key


def _greedy(stream: _Stream, length: int, fixed: dict[int, int], checks: list[BoundConstraint]) -> dict[int, int] | None:
    """The search's first branch: each free position takes the best-ranked row every rule allows.

    Returns position -> rank of the chosen stream row (pinned positions excluded), or None."""
    slots: list[int | None] = [fixed.get(p) for p in range(length)]
    used: dict[int, int] = {}
    head = 0
    restricted = [c for c in checks if c.restricted]
    pool_ranks: dict[int, list[int]] = {}
    for pos in range(length):
        if slots[pos] is not None:
            continue
        restrict = next((c for c in restricted if pos in c.restricted), None)
        chosen = -1
        if restrict is None:
            while head in used or (stream.scan_to(head) and stream.status[head] != _KEPT):
                head += 1
            rank = head
            while stream.scan_to(rank) and rank - head < _GREEDY_PATIENCE + len(used):
                if rank not in used and stream.status[rank] == _KEPT:
                    row = stream.rows[rank]
                    if all(c.allows(pos, row, slots) for c in checks):
                        chosen = rank
                        break
                rank += 1
        else:
            ranks = pool_ranks.get(id(restrict))
            if ranks is None:
                ranks = np.flatnonzero(restrict.restrict_mask[stream.order]).tolist()
                pool_ranks[id(restrict)] = ranks
            for tried, rank in enumerate(ranks):
                if tried >= _GREEDY_PATIENCE:
                    break
                if rank in used or stream.peek(rank) != _KEPT:
                    continue
                row = stream.row_at(rank)
                if all(c.allows(pos, row, slots) for c in checks):
                    chosen = rank
                    break
        if chosen < 0:
            return None
        used[chosen] = pos
        slots[pos] = stream.row_at(chosen)
    return {pos: rank for rank, pos in used.items()}


# ---------------------------------------------------------------------------------------------------
# select
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """One request's de-duplication state: pins placed, the rest as a lazy ranked stream."""

    filters: list[_Filter]
    stream: _Stream
    fixed: dict[int, int]  # position -> row
    fixed_pins: dict[int, PlacementRule]
    fixed_index: dict[int, int]  # position -> index of its pin in the rule list
    claim_order: list[int]  # pinned rows, in the order they claimed their values
    violations: list[Violation]


def _prepare(candidates: CandidateSet, scores: np.ndarray, filter_rules: list[FilterRule],
             relaxable_filters: set[str], context: SlateContext, pins: list[PlacementRule], k: int,
             demoted: Mapping[int, str]) -> _Prepared:
    filters = [
        _Filter(f, candidates.attribute(f.attribute), context, f.name not in relaxable_filters) for f in filter_rules
    ]
    stream = _Stream(np.empty(0, dtype=np.int64), filters)
    violations: list[Violation] = []
    fixed: dict[int, int] = {}
    fixed_pins: dict[int, PlacementRule] = {}
    fixed_index: dict[int, int] = {}
    claim_order: list[int] = []
    pinned_items: dict[int, int] = {}
    for index, pin in enumerate(pins):
        where = f"pinned item {context.label('item', pin.item)} at {_position(pin.position)}"
        if index in demoted:
            violations.append(Violation(pin.name, pin.position, f"{where}: {demoted[index]}"))
            continue
        if pin.position >= k:
            violations.append(Violation(pin.name, pin.position, f"{where}: the page has only {k} positions"))
            continue
        if pin.position in fixed:
            if fixed_pins[pin.position].item != pin.item:  # the same pin twice is one pin
                violations.append(Violation(pin.name, pin.position, f"{where}: position already pinned"))
            continue
        if pin.item in pinned_items:
            violations.append(
                Violation(pin.name, pin.position, f"{where}: already pinned at {_position(pinned_items[pin.item])}")
            )
            continue
        rows = np.flatnonzero(candidates.item == pin.item)
        if not len(rows):
            violations.append(Violation(pin.name, pin.position, f"{where}: not among the candidates"))
            continue
        row = int(rows[np.argmax(scores[rows])])
        values = [int(f.column[row]) for f in filters]
        blocker, value, other = stream.check(values)
        if blocker is not None:
            if other is None:
                why = blocker.rule.excluded_detail(context.label(blocker.rule.attribute, value))
            else:
                why = f"same {blocker.rule.attribute} as pinned item {context.label('item', int(candidates.item[other]))}"
            violations.append(Violation(pin.name, pin.position, f"{where}: {why} ({blocker.rule.name})"))
            continue
        stream.claim(row, values)
        fixed[pin.position] = row
        fixed_pins[pin.position] = pin
        fixed_index[pin.position] = index
        claim_order.append(row)
        pinned_items[pin.item] = pin.position
    for f in filters:
        if f.seen:
            f.pinned = dict(f.seen)
    order = np.argsort(-scores, kind="stable")  # best score first; ties: lower row first
    if claim_order:
        order = order[~np.isin(order, np.asarray(claim_order, dtype=np.int64))]
    stream.order = order
    stream.total = int(order.shape[0])
    return _Prepared(filters, stream, fixed, fixed_pins, fixed_index, claim_order, violations)


def select(
    candidates: CandidateSet,
    k: int,
    rules: Sequence[Rule],
    context: SlateContext | None = None,
    relaxation_order: Sequence[str] = (),
    *,
    search_budget: int = DEFAULT_SEARCH_BUDGET,
) -> Slate:
    """Arrange up to `k` candidates under `rules`; relax rules named in `relaxation_order`, first
    named first, only as far as needed to fill min(k, available) positions.

    Item uniqueness (within the page and against `context.served_items`) always holds, with or
    without a `UniqueItems` rule. Names in `relaxation_order` with no rule in this request are
    skipped, so one order serves every surface; naming a rule that cannot be relaxed is an error.
    `search_budget` bounds the backtracking nodes (deterministic; when spent, the most relaxed
    level's best effort is returned with its violations).
    """
    context = context if context is not None else SlateContext()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    k = int(k)
    if search_budget < 0:
        raise ValueError(f"search_budget must be >= 0, got {search_budget}")
    scorers: list[ScoreRule] = []
    filter_rules: list[FilterRule] = []
    pins: list[PlacementRule] = []
    constraints: list[ConstraintRule] = []
    for rule in rules:
        if isinstance(rule, ScoreRule):
            scorers.append(rule)
        elif isinstance(rule, FilterRule):
            filter_rules.append(rule)
        elif isinstance(rule, PlacementRule):
            pins.append(rule)
        elif isinstance(rule, ConstraintRule):
            constraints.append(rule)
        else:
            raise ValueError(f"unknown rule {rule!r}; rule types: {', '.join(RULE_TYPES)}")
    order_names = _relaxation_names(rules, relaxation_order)
    if not any(isinstance(f, UniqueItems) for f in filter_rules):
        filter_rules.insert(0, UniqueItems())
    relaxable_filters = {f.name for f in filter_rules if f.relaxable and f.name in order_names}
    # Hard filters first, so a drop is blamed on the rule that can never give way.
    filter_rules.sort(key=lambda f: f.name in relaxable_filters)

    scores = candidates.score
    if scorers:
        scores = scores.astype(np.float64)
        for rule in scorers:
            rule.adjust(scores, candidates)
        scores = scores.astype(np.float32)

    prepared = _prepare(candidates, scores, filter_rules, relaxable_filters, context, pins, k, {})
    view = RequestView(candidates, context, k, prepared.fixed)
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    ranks = _greedy(prepared.stream, k, prepared.fixed, checks)
    if ranks is not None:
        row_at = prepared.stream.row_at
        slots = [prepared.fixed[p] if p in prepared.fixed else row_at(ranks[p]) for p in range(k)]
        return _finish(candidates, scores, context, k, checks, prepared, slots, ranks, (), 0, "")
    prepared, slots, ranks, relaxed, nodes, shortfall = _slow_path(
        candidates, scores, context, k, pins, constraints, filter_rules, order_names, relaxable_filters,
        prepared, search_budget,
    )
    length = next((p for p, row in enumerate(slots) if row is None), len(slots))
    view = RequestView(candidates, context, length, {p: r for p, r in prepared.fixed.items() if p < length})
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    return _finish(candidates, scores, context, k, checks, prepared, slots, ranks, relaxed, nodes, shortfall)


def _relaxation_names(rules: Sequence[Rule], relaxation_order: Sequence[str]) -> list[str]:
    if isinstance(relaxation_order, str):
        raise ValueError("relaxation_order must be a sequence of rule names, not a single string")
    by_name: dict[str, list[Rule]] = {}
    for rule in rules:
        by_name.setdefault(rule.name, []).append(rule)
    names: list[str] = []
    for name in relaxation_order:
        named = by_name.get(name, [])
        stuck = [r for r in named if not r.relaxable]
        if stuck:
            raise ValueError(f"relaxation_order names {name!r}, a {type(stuck[0]).__name__} rule, which is never relaxed")
        if named and name not in names:
            names.append(name)
    return names


def _slow_path(candidates, scores, context, k, pins, constraints, filter_rules, order_names, relaxable_filters,
               prepared: _Prepared, budget: int):
    """Full scan, then the exact bounded search per relaxation level."""
    demoted: dict[int, str] = {}
    while True:
        stream = prepared.stream
        stream.scan_all()
        soft_supply = sum(
            1 for rank, status in enumerate(stream.status)
            if status == _SOFT_DROP and stream.soft_names[rank] <= relaxable_filters
        )
        supply = stream.kept + len(prepared.fixed)
        length = min(k, supply + soft_supply)
        late = [pos for pos in prepared.fixed if pos >= length]
        if not late:
            break
        # A pin beyond a short page cannot hold its position: it competes as an ordinary candidate.
        for pos in late:
            demoted[prepared.fixed_index[pos]] = f"the page has only {length} eligible candidates"
        prepared = _prepare(candidates, scores, filter_rules, relaxable_filters, context, pins, k, demoted)
    fixed = prepared.fixed
    view = RequestView(candidates, context, length, fixed)
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    classes = _class_index(stream, checks, length)
    levels = _levels(checks, classes, order_names, relaxable_filters)

    # Relaxable drops may be needed to fill the page; levels that cannot use them are skipped.
    runnable = [level for level in levels if supply >= length or level.soft_filters]
    free = length - len(fixed)
    nodes = 0
    last = None
    for i, level in enumerate(runnable):
        # A fair share of what is left, and never less than one straight dive.
        share = max(free + 1, (budget - nodes) // (len(runnable) - i))
        last = _Search(stream, length, fixed, checks, classes, level, stream.kept, share)
        try:
            done = last.run()
        except _BudgetExhausted:
            done = False
        nodes += last.nodes
        if done:
            return prepared, last.slots, last.chosen_rank, level.relaxed, nodes, ""
    # No level filled the page: keep the longer of the most relaxed level's deepest prefix and a
    # single greedy dive (no backtracking, no budget) under that level.
    dive = _Search(stream, length, fixed, checks, classes, levels[-1], stream.kept, 1 << 62, backtrack=False)
    dive.run()
    nodes += dive.nodes
    if last is None or dive.best_depth > last.best_depth:
        last = dive
    never = sorted({c.rule.name for c in levels[-1].hard})
    if never:
        reason = f"no arrangement meets the rules that are never relaxed ({', '.join(never)}) beyond this position"
    else:
        reason = "search budget exhausted"
    return prepared, last.best, last.best_ranks, levels[-1].relaxed, nodes, reason


def _levels(checks: list[BoundConstraint], classes: dict[tuple, list[int]], order_names: list[str],
            relaxable_filters: set[str]) -> list[_Level]:
    """All rules hard, then each named rule relaxed in turn (its intermediate steps first)."""
    state: dict[int, list[tuple[BoundConstraint, bool]]] = {id(c): [(c, True)] for c in checks}
    weight = {name: 2**i for i, name in enumerate(order_names)}
    relaxed: list[str] = []

    def snapshot() -> _Level:
        hard: list[BoundConstraint] = []
        soft: list[tuple[BoundConstraint, int]] = []
        for parts in state.values():
            for check, is_hard in parts:
                if is_hard:
                    hard.append(check)
                else:
                    soft.append((check, weight[check.rule.name]))
        soft_filters = frozenset(name for name in relaxed if name in relaxable_filters)
        return _Level(tuple(relaxed), hard, soft, soft_filters, max((weight[n] for n in soft_filters), default=0))

    levels = [snapshot()]
    for name in order_names:
        relaxed.append(name)
        targets = [(i, c) for i, c in enumerate(checks) if c.rule.name == name]
        for index, check in targets:
            if check.restrict_mask is None:
                continue
            eligible = sum(len(ranks) for key, ranks in classes.items() if key[-1] is None and key[index])
            step = check.reduce(eligible)
            if step is not None:
                state[id(check)] = step
                levels.append(snapshot())
        for _, check in targets:
            state[id(check)] = [(check, False)]
        levels.append(snapshot())
    return levels


def _finish(candidates: CandidateSet, scores: np.ndarray, context: SlateContext, k: int, checks: list[BoundConstraint],
            prepared: _Prepared, slots: list, ranks: Mapping[int, int], relaxed: tuple[str, ...], nodes: int,
            shortfall: str) -> Slate:
    """Audit the arrangement against every rule (report, never trust the search) and package it.

    `checks` are the constraint rules bound to the filled length; `ranks` maps each non-pinned
    position to the stream rank of its row."""
    filled: list[int] = []
    for row in slots:
        if row is None:
            break
        filled.append(row)
    length = len(filled)
    stream = prepared.stream
    violations = list(prepared.violations)
    for pos, pin in prepared.fixed_pins.items():
        if pos >= length:
            violations.append(
                Violation(pin.name, pos, f"pinned item {context.label('item', pin.item)} at {_position(pos)}: the slate ends at {length}")
            )
    placed = {p: r for p, r in prepared.fixed.items() if p < length}
    violations += _audit_filters(filled, prepared, ranks, context)
    for check in checks:
        violations += check.audit(filled, placed)
    if length < k:
        reason = shortfall or f"only {stream.kept + len(prepared.fixed)} eligible candidates after filtering"
        violations.append(Violation(SLATE_SIZE, length, f"{length} of {k} positions filled: {reason}"))
    if len(violations) > 1:
        violations.sort(key=lambda v: (v.position, v.rule))

    slot_names = [SLOT_RANKED] * length
    pools = [c for c in checks if isinstance(c, _PoolCheck)]
    for pos in range(length):
        if pos in placed:
            slot_names[pos] = SLOT_PINNED
            continue
        for check in pools:
            if pos in check.restricted and check.mask[filled[pos]]:
                slot_names[pos] = check.rule.pool
                break
    # Drops worth logging: those that outranked the last row shown in a ranked slot.
    if length < k:
        cut = stream.scanned
    else:
        cut = max((ranks[p] for p in range(length) if slot_names[p] == SLOT_RANKED), default=0)

    indices = np.asarray(filled, dtype=np.int64)
    return Slate(
        indices=indices,
        items=candidates.item[indices],
        scores=scores[indices],
        slots=tuple(slot_names),
        violations=tuple(violations),
        dropped=_dropped(stream, cut, set(filled), candidates, context),
        relaxed=relaxed,
        k=k,
        position_offset=context.position_offset,
        search_nodes=nodes,
    )


def _audit_filters(rows: list[int], prepared: _Prepared, ranks: Mapping[int, int], context: SlateContext) -> list[Violation]:
    """Excluded values, and repeats blamed on the lower-precedence copy (pins first, then rank)."""
    pinned = {row: i - len(prepared.claim_order) for i, row in enumerate(prepared.claim_order)}
    ordered = sorted(range(len(rows)), key=lambda p: pinned[rows[p]] if p not in ranks else ranks[p])
    out = []
    for f in prepared.filters:
        seen: dict[int, int] = {}
        column = f.column[rows].tolist()
        for pos in ordered:
            value = column[pos]
            if value in f.excluded:
                out.append(Violation(f.rule.name, pos, f.rule.excluded_detail(context.label(f.rule.attribute, value))))
            elif f.seen is not None and value in seen:
                label = context.label(f.rule.attribute, value)
                out.append(Violation(f.rule.name, pos, f"same {f.rule.attribute} {label} as {_position(seen[value])}"))
            seen.setdefault(value, pos)
    return out


def _dropped(stream: _Stream, cut: int, shown: set[int], candidates: CandidateSet,
             context: SlateContext) -> tuple[Dropped, ...]:
    out = []
    for rank in range(min(cut, stream.scanned)):
        row = stream.rows[rank]
        if stream.status[rank] == _KEPT or row in shown:
            continue
        f, value, other = stream.blame[rank]
        if other is None:
            code, detail = ("served_before" if f.rule.unique else "excluded"), f.rule.excluded_detail(
                context.label(f.rule.attribute, value))
        else:
            label, other_item = context.label(f.rule.attribute, value), context.label("item", int(candidates.item[other]))
            code, detail = "duplicate", f"same {f.rule.attribute} {label} as item {other_item}"
        out.append(Dropped(row, int(candidates.item[row]), f.rule.name, f"{f.rule.name}:{code}", detail))
    return tuple(out)
