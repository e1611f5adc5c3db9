"""The arrangement search: fill the page's free positions left to right with the best-ranked rows
every hard rule allows, soft-rule violators last.

Candidates that agree on every constraint-relevant attribute are interchangeable, so only the best
of each such class is tried at a position; the first complete arrangement found is therefore the
lexicographically best by score among all that satisfy the rules. A cheap greedy pass (the
search's first branch) answers most requests; only when it fails does the engine scan every
candidate and backtrack, pruned by capacity bounds, forward checks of pool slots and a memo of
failed states, within one node budget shared by the relaxation levels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.pipeline.rules.base import BoundConstraint
from recsys.pipeline.stream import HARD_DROP, KEPT, RankedStream

__all__ = ["BudgetExhausted", "ClassKey", "Classes", "Level", "Search", "class_index", "greedy"]

_GREEDY_PATIENCE = 256  # rows the greedy pass tries for one position before handing over to the search
# (64 sent 3.5 % of lists at 1M items to the search, ~1.2 ms each: a user whose top 70 candidates
# share two categories needs a third one for dispersal; 256 sent none, measured)

# A class of interchangeable rows: the key each bound check sees, then the relaxable filters that
# dropped them (None: kept). Classes maps it to its ranks, best first.
ClassKey = tuple[Any, ...]
Classes = dict[ClassKey, list[int]]
State = tuple[Any, ...]  # (depth, class pointers, keys of the last `span` positions): a memo key


class BudgetExhausted(Exception):
    """The search spent its node budget before filling the page."""


@dataclass
class Level:
    """One relaxation level: which bound rules are hard, which soft (and how much a violation costs),
    and which relaxable filters' drops may fill positions."""

    relaxed: tuple[str, ...]
    hard: list[BoundConstraint]
    soft: list[tuple[BoundConstraint, int]]  # check, weight (higher = relaxed later = more important)
    soft_filters: frozenset[str]  # relaxable filter names whose drops may fill positions
    filter_weight: int


def class_index(stream: RankedStream, checks: list[BoundConstraint], length: int) -> Classes:
    """Group usable ranks by what every check sees, plus their drop status (None = kept, else the
    relaxable filters that dropped them). A class never contributes more than `length` rows."""
    status = np.asarray(stream.status, dtype=np.int8)
    ranks = np.flatnonzero(status != HARD_DROP)
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
    classes: Classes = {}
    for start, end in zip(starts, ends):
        members = order[start : min(end, start + length)]
        first = members[0]
        row = row_list[first]
        rank = rank_list[first]
        key = (*[c.keys[row] for c in checks], soft.get(rank))
        classes[key] = [rank_list[i] for i in members]
    return classes


class Search:
    """Depth-first search over free positions (iterative, so any k works), trying the best row of
    each class in rank order, soft-rule violators last; pruned by capacity bounds, forward checks
    of restricted positions, and a memo of failed states."""

    def __init__(self, stream: RankedStream, length: int, fixed: dict[int, int], checks: list[BoundConstraint],
                 classes: Classes, level: Level, supply_kept: int, budget: int,
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
        self.pointer: dict[ClassKey, int] = dict.fromkeys(self.classes, 0)
        self.hard_index = [checks.index(c.origin) for c in level.hard]
        self.restricted = [(c, i) for c, i in zip(level.hard, self.hard_index) if c.restricted]
        self.span = max((c.span for c in checks), default=0)
        self.pos_key: list[ClassKey | None] = [None] * length
        self.failed: set[State] = set()
        self._keys: list[ClassKey] = []  # key placed at each depth

    def run(self) -> bool:
        """True when every free position is filled; `best` keeps the deepest prefix reached."""
        frontier: list[tuple[Iterator[tuple[int, ClassKey]], State]] = []
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
                raise BudgetExhausted
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

    def _place(self, depth: int, rank: int, key: ClassKey) -> None:
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

    def _available(self) -> list[tuple[ClassKey, int]]:
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

    def _node(self, depth: int) -> tuple[Iterator[tuple[int, ClassKey]], State]:
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
            supply: dict[object, int] = {}
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

    def _options(self, pos: int) -> Iterator[tuple[int, ClassKey]]:
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


def greedy(stream: RankedStream, length: int, fixed: dict[int, int], checks: list[BoundConstraint]) -> dict[int, int] | None:
    """The search's first branch: each free position takes the best-ranked row every rule allows.

    Returns position -> rank of the chosen stream row (pinned positions excluded), or None."""
    slots: list[int | None] = [fixed.get(p) for p in range(length)]
    used: dict[int, int] = {}
    head = 0
    masked = [c for c in checks if c.restrict_mask is not None]
    pool_ranks: dict[int, list[int]] = {}
    for pos in range(length):
        if slots[pos] is not None:
            continue
        # A position only a pool's rows may take (a fixed slot, or the last places a flexible count
        # still owes) is filled from that pool's rows in stream order, not by scanning the stream.
        restrict = next((c for c in masked if c.forces_mask(pos, slots)), None)
        chosen = -1
        if restrict is None:
            while head in used or (stream.scan_to(head) and stream.status[head] != KEPT):
                head += 1
            rank = head
            while stream.scan_to(rank) and rank - head < _GREEDY_PATIENCE + len(used):
                if rank not in used and stream.status[rank] == KEPT:
                    row = stream.rows[rank]
                    if all(c.allows(pos, row, slots) for c in checks):
                        chosen = rank
                        break
                rank += 1
        else:
            ranks = pool_ranks.get(id(restrict))
            if ranks is None:
                mask = restrict.restrict_mask
                assert mask is not None, "a check with restricted positions carries the mask of rows allowed there"
                ranks = np.flatnonzero(mask[stream.order]).tolist()
                pool_ranks[id(restrict)] = ranks
            for tried, rank in enumerate(ranks):
                if tried >= _GREEDY_PATIENCE:
                    break
                if rank in used or stream.peek(rank) != KEPT:
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
