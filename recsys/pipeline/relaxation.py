"""Relaxation: when no arrangement meets every rule, rules named in the relaxation order give way
one at a time, earliest named first, each only as far as needed to fill the page.

Levels: all rules hard; then, for each name in the relaxation order, that rule turns soft
(violations allowed, still avoided where possible, earlier-named rules given up first). Pool slots
keep their earliest slots hard from the first level when the pool has fewer items than slots; a
relaxable filter (content de-duplication) lets its drops fill only the positions nothing else can.
When a level's search fails, a rule that can be met by substitution (the flexible front screen) is
met on the page the search finds without it before the next rule gives way, so it never costs
another rule. Rules not named never give way: if they cannot be met the page is shorter, and that
is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.rules.base import BoundConstraint, ConstraintRule, FilterRule, PlacementRule, RequestView, Rule
from recsys.pipeline.search import BudgetExhausted, Classes, Level, Search, class_index
from recsys.pipeline.slate import SlateContext
from recsys.pipeline.stream import KEPT, SOFT_DROP, Prepared, RankedStream, prepare

__all__ = ["Arrangement", "relaxation_levels", "relaxation_names", "search_with_relaxation"]


def relaxation_names(rules: Sequence[Rule], relaxation_order: Sequence[str]) -> list[str]:
    """The names of `relaxation_order` that name a rule of this request, first named first; naming a
    rule that can never give way is an error."""
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


class Arrangement(NamedTuple):
    """What the relaxed search settled on."""

    prepared: Prepared  # the request's de-duplication state (re-prepared when pins were demoted)
    slots: list[int | None]  # position -> row (None from the first position left empty)
    ranks: dict[int, int]  # non-pinned position -> stream rank of its row
    relaxed: tuple[str, ...]  # rule names relaxed, in relaxation order
    nodes: int  # search nodes spent
    shortfall: str  # why the page is short ("" when the search filled it)


def search_with_relaxation(candidates: CandidateSet, scores: np.ndarray, context: SlateContext, k: int,
                           pins: list[PlacementRule], constraints: list[ConstraintRule], filter_rules: list[FilterRule],
                           order_names: list[str], relaxable_filters: set[str], prepared: Prepared,
                           budget: int) -> Arrangement:
    """Full scan, then the exact bounded search per relaxation level (when the greedy pass failed)."""
    demoted: dict[int, str] = {}
    while True:
        stream = prepared.stream
        stream.scan_all()
        soft_supply = sum(
            1 for rank, status in enumerate(stream.status)
            if status == SOFT_DROP and stream.soft_names[rank] <= relaxable_filters
        )
        supply = stream.kept + len(prepared.fixed)
        length = min(k, supply + soft_supply)
        late = [pos for pos in prepared.fixed if pos >= length]
        if not late:
            break
        # A pin beyond a short page cannot hold its position: it competes as an ordinary candidate.
        for pos in late:
            demoted[prepared.fixed_index[pos]] = f"the page has only {length} eligible candidates"
        prepared = prepare(candidates, scores, filter_rules, relaxable_filters, context, pins, k, demoted)
    fixed = prepared.fixed
    view = RequestView(candidates, context, length, fixed)
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    classes = class_index(stream, checks, length)
    levels = relaxation_levels(checks, classes, order_names, relaxable_filters)

    # Relaxable drops may be needed to fill the page; levels that cannot use them are skipped.
    runnable = [level for level in levels if supply >= length or level.soft_filters]
    free = length - len(fixed)
    nodes = 0
    last: Search | None = None
    for i, level in enumerate(runnable):
        # A fair share of what is left, and never less than one straight dive.
        share = max(free + 1, (budget - nodes) // (len(runnable) - i))
        last = Search(stream, length, fixed, checks, classes, level, stream.kept, share)
        try:
            done = last.run()
        except BudgetExhausted:
            done = False
        nodes += last.nodes
        if done:
            return Arrangement(prepared, last.slots, last.chosen_rank, level.relaxed, nodes, "")
        # Before any rule gives way for it, a rule met by substitution is met on the page the
        # search finds without it (so e.g. the front screen never costs dispersal).
        rescue = _by_substitution(stream, length, fixed, checks, level, budget)
        if rescue is not None:
            nodes += rescue.nodes
            return Arrangement(prepared, rescue.slots, rescue.chosen_rank, level.relaxed, nodes, "")
    # No level filled the page: keep the longer of the most relaxed level's deepest prefix and a
    # single greedy dive (no backtracking, no budget) under that level.
    dive = Search(stream, length, fixed, checks, classes, levels[-1], stream.kept, 1 << 62, backtrack=False)
    dive.run()
    nodes += dive.nodes
    if last is None or dive.best_depth > last.best_depth:
        last = dive
    never = sorted({c.rule.name for c in levels[-1].hard})
    if never:
        reason = f"no arrangement meets the rules that are never relaxed ({', '.join(never)}) beyond this position"
    else:
        reason = "search budget exhausted"
    return Arrangement(prepared, last.best, last.best_ranks, levels[-1].relaxed, nodes, reason)


def _by_substitution(stream: RankedStream, length: int, fixed: dict[int, int], checks: list[BoundConstraint],
                     level: Level, budget: int) -> Search | None:
    """The page of `level` when its hard rules that can be met by substitution (`BoundConstraint.
    substitute`) are left aside for the search and met afterwards on the full page it found, every
    other hard rule of the level kept; None when there is no such rule, the search does not fill
    the page within `budget`, or the substitution does not fit.

    The search runs as it would without those rules (its classes ignore them, its budget is the
    whole request's), so it finds every page the request would get without them at this level."""
    aside = [c for c in level.hard if c.substitutable]
    if not aside:
        return None
    kept = [c for c in level.hard if not c.substitutable]
    others = [c for c in checks if not c.substitutable]
    search = Search(stream, length, fixed, others, class_index(stream, others, length),
                    Level(level.relaxed, kept, level.soft, level.soft_filters, level.filter_weight), stream.kept, budget)
    try:
        if not search.run():
            return None
    except BudgetExhausted:
        return None
    on_page = set(search.chosen_rank.values())
    spare = [(rank, stream.rows[rank]) for rank, status in enumerate(stream.status)
             if status == KEPT and rank not in on_page]
    prefer = [c for c, _ in level.soft]
    for check in aside:
        if not check.substitute(search.slots, search.chosen_rank, spare, kept, prefer):
            return None
        spare = [(rank, row) for rank, row in spare if rank not in search.chosen_rank.values()]
    return search


def relaxation_levels(checks: list[BoundConstraint], classes: Classes, order_names: list[str],
                      relaxable_filters: set[str]) -> list[Level]:
    """All rules hard, then each named rule relaxed in turn (its intermediate steps first).

    A pool rule whose pool cannot supply every slot starts from its intermediate step: the slots
    the pool cannot fill can never be met, and no other rule giving way would fill them, so none
    gives way for them (the rule is reported relaxed from the first level)."""
    state: dict[int, list[tuple[BoundConstraint, bool]]] = {id(c): [(c, True)] for c in checks}
    weight = {name: 2**i for i, name in enumerate(order_names)}
    relaxed: set[str] = set()

    def snapshot() -> Level:
        hard: list[BoundConstraint] = []
        soft: list[tuple[BoundConstraint, int]] = []
        for parts in state.values():
            for check, is_hard in parts:
                if is_hard:
                    hard.append(check)
                else:
                    soft.append((check, weight[check.rule.name]))
        soft_filters = frozenset(name for name in relaxed if name in relaxable_filters)
        names = tuple(name for name in order_names if name in relaxed)
        return Level(names, hard, soft, soft_filters, max((weight[n] for n in soft_filters), default=0))

    for index, check in enumerate(checks):
        if check.restrict_mask is None or check.rule.name not in weight:
            continue
        eligible = sum(len(ranks) for key, ranks in classes.items() if key[-1] is None and key[index])
        step = check.reduce(eligible)
        if step is not None:
            state[id(check)] = step
            relaxed.add(check.rule.name)
    levels = [snapshot()]
    for name in order_names:
        relaxed.add(name)
        for check in checks:
            if check.rule.name == name:
                state[id(check)] = [(check, False)]
        levels.append(snapshot())
    return levels
