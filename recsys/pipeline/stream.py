"""De-duplication: candidates in score order, each kept, dropped by a relaxable filter or dropped
for good, decided lazily (the greedy pass usually needs only the head of the ranking).

Pins claim their item and content first; then candidates in score order (ties: lower row) are
dropped when a filter excludes their value or an earlier kept candidate has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.rules.base import FilterRule, PlacementRule
from recsys.pipeline.slate import SlateContext, Violation, position_label

__all__ = ["HARD_DROP", "KEPT", "SOFT_DROP", "ActiveFilter", "Blame", "Prepared", "RankedStream", "prepare"]

KEPT, SOFT_DROP, HARD_DROP = 0, 1, 2  # a candidate's status in the stream
_SCAN_CHUNK = 32  # candidates de-duplicated per step of the lazy scan


class ActiveFilter:
    """A `FilterRule` during one request: its column, its excluded values and the values claimed so far."""

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


# Why a candidate was dropped: the filter, the value, and the row that claimed the value first
# (None: the value is excluded outright, e.g. served earlier in the session).
Blame = tuple[ActiveFilter, int, int | None]


class RankedStream:
    """Lazily de-duplicates candidates in rank order (pinned rows claim their values first)."""

    def __init__(self, order: np.ndarray, filters: list[ActiveFilter]) -> None:
        self.order = order
        self.total = int(order.shape[0])
        self.filters = filters
        self.rows: list[int] = []  # rank -> row
        self.status: list[int] = []  # rank -> KEPT | SOFT_DROP | HARD_DROP
        self.blame: dict[int, Blame] = {}  # rank -> why that candidate was dropped
        self.soft_names: dict[int, frozenset[str]] = {}  # rank -> relaxable filters that dropped it
        self.kept = 0
        self._peeked: dict[int, int] = {}  # rank -> status, for ranks beyond the scanned prefix

    def peek(self, rank: int) -> int:
        """Status at `rank` without scanning up to it: only earlier rows sharing one of its values
        can drop it, so evaluate those (recursively, memoised). Equal to what the scan will find."""
        if rank < len(self.rows):
            return self.status[rank]
        if rank >= self.total:
            return HARD_DROP
        if rank - len(self.rows) <= _SCAN_CHUNK:
            self.scan_to(rank)
            return self.status[rank]
        status = self._peeked.get(rank)
        if status is not None:
            return status
        status = KEPT
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
                hit = any(self.peek(int(r)) != HARD_DROP for r in earlier)
            else:
                hit = False
            if hit:
                if f.hard:
                    status = HARD_DROP
                    break
                status = SOFT_DROP
        self._peeked[rank] = status
        return status

    @property
    def scanned(self) -> int:
        """How many ranks the in-order scan has decided."""
        return len(self.rows)

    def row_at(self, rank: int) -> int:
        """The candidate row at `rank`, scanned or not."""
        return self.rows[rank] if rank < len(self.rows) else int(self.order[rank])

    def claim(self, row: int, values: Sequence[int]) -> None:
        """`row` (a pin) claims its values first: later candidates with them are duplicates."""
        for f, value in zip(self.filters, values):
            if f.seen is not None:
                f.seen.setdefault(value, row)

    def check(self, values: Sequence[int]) -> Blame | None:
        """First hard filter (else first relaxable one) that drops a row with these values."""
        soft = None
        for f, value in zip(self.filters, values):
            hit: Blame
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
        return soft

    def scan_to(self, rank: int) -> bool:
        """Scan until rank `rank` is known; False if there are not that many candidates."""
        while len(self.rows) <= rank:
            start = len(self.rows)
            if start >= self.total:
                return False
            self._scan(start, min(start + _SCAN_CHUNK, self.total))
        return True

    def scan_all(self) -> None:
        """Decide every remaining rank."""
        if len(self.rows) < self.total:
            self._scan(len(self.rows), self.total)

    def _scan(self, start: int, stop: int) -> None:
        rows = self.order[start:stop]
        specs = [(f.column[rows].tolist(), f.excluded, f.seen, f.hard, f) for f in self.filters]
        blame, out_rows, out_status = self.blame, self.rows, self.status
        kept = 0
        rank = start
        for i, row in enumerate(rows.tolist()):
            status = KEPT
            soft: list[str] | None = None
            for column, excluded, seen, hard, f in specs:
                value = column[i]
                if value in excluded:
                    other = None
                elif seen is not None and value in seen:
                    other = seen[value]
                else:
                    continue
                if hard:
                    status = HARD_DROP
                    blame[rank] = (f, value, other)
                    break
                if soft is None:
                    soft = [f.rule.name]
                    blame[rank] = (f, value, other)
                else:
                    soft.append(f.rule.name)
            if status == KEPT:
                if soft is None:
                    kept += 1
                else:
                    status = SOFT_DROP
                    self.soft_names[rank] = frozenset(soft)
            if status != HARD_DROP:
                for column, excluded, seen, hard, f in specs:
                    if seen is not None and column[i] not in seen:
                        seen[column[i]] = row
            out_rows.append(row)
            out_status.append(status)
            rank += 1
        self.kept += kept


@dataclass
class Prepared:
    """One request's de-duplication state: pins placed, the rest as a lazy ranked stream."""

    filters: list[ActiveFilter]
    stream: RankedStream
    fixed: dict[int, int]  # position -> row
    fixed_pins: dict[int, PlacementRule]
    fixed_index: dict[int, int]  # position -> index of its pin in the rule list
    claim_order: list[int]  # pinned rows, in the order they claimed their values
    violations: list[Violation]


def prepare(candidates: CandidateSet, scores: np.ndarray, filter_rules: list[FilterRule],
            relaxable_filters: set[str], context: SlateContext, pins: list[PlacementRule], k: int,
            demoted: Mapping[int, str]) -> Prepared:
    """Place the pins (each claims its values, or is reported when a filter or an earlier pin stops
    it) and line the other candidates up in score order for the lazy de-duplication scan.

    `demoted` maps a pin's index to why it competes as an ordinary candidate instead."""
    filters = [
        ActiveFilter(f, candidates.attribute(f.attribute), context, f.name not in relaxable_filters) for f in filter_rules
    ]
    stream = RankedStream(np.empty(0, dtype=np.int64), filters)
    violations: list[Violation] = []
    fixed: dict[int, int] = {}
    fixed_pins: dict[int, PlacementRule] = {}
    fixed_index: dict[int, int] = {}
    claim_order: list[int] = []
    pinned_items: dict[int, int] = {}
    for index, pin in enumerate(pins):
        where = f"pinned item {context.label('item', pin.item)} at {position_label(pin.position)}"
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
                Violation(pin.name, pin.position, f"{where}: already pinned at {position_label(pinned_items[pin.item])}")
            )
            continue
        rows = np.flatnonzero(candidates.item == pin.item)
        if not len(rows):
            violations.append(Violation(pin.name, pin.position, f"{where}: not among the candidates"))
            continue
        row = int(rows[np.argmax(scores[rows])])
        values = [int(f.column[row]) for f in filters]
        blocked = stream.check(values)
        if blocked is not None:
            blocker, value, other = blocked
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
    return Prepared(filters, stream, fixed, fixed_pins, fixed_index, claim_order, violations)
