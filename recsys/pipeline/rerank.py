"""The re-ranking constraint engine's entry: `select` turns scored candidates into the final page.

It applies score boosts, drops duplicate/excluded candidates, places pins, fills pool slots and
spreads attribute values over positions (dispersal), searching for the best-scoring arrangement
that meets every rule and relaxing soft rules in a declared order when none does. Every unmet rule
comes back as a `Violation` and every removed candidate as a `Dropped` record, so callers can log them.

The engine, one module per step (read in this order):
- `candidates`  the `CandidateSet` (aligned numpy columns) and its attributes;
- `slate`       `SlateContext` (what earlier pages of the session impose) and the `Slate` returned;
- `rules/`      one module per rule type, its phase in `rules/base.py`, the registry `RULE_TYPES`;
- `stream`      de-duplication: pins claim first, the rest lazily in score order;
- `search`      the greedy pass and the bounded backtracking search;
- `relaxation`  the levels at which named rules give way, and the search run over them;
- `rerank`      (here) `select`, and the audit of the final page against every rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from recsys.pipeline.candidates import CandidateSet
from recsys.pipeline.relaxation import relaxation_names, search_with_relaxation
from recsys.pipeline.rules.base import (
    BoundConstraint,
    ConstraintRule,
    FilterRule,
    PlacementRule,
    RequestView,
    Rule,
    ScoreRule,
    Slots,
)
from recsys.pipeline.rules.pool_slots import PoolCheck, PoolCountCheck
from recsys.pipeline.rules.registry import RULE_TYPES
from recsys.pipeline.rules.unique import UniqueItems
from recsys.pipeline.search import greedy
from recsys.pipeline.slate import SLATE_SIZE, SLOT_PINNED, SLOT_RANKED, Dropped, Slate, SlateContext, Violation, position_label
from recsys.pipeline.stream import KEPT, Prepared, RankedStream, prepare

__all__ = ["DEFAULT_SEARCH_BUDGET", "select"]

DEFAULT_SEARCH_BUDGET = 256  # search nodes for one request, shared by its relaxation levels


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
    `search_budget` bounds the backtracking nodes of each search (deterministic; the levels share
    it, a substitution search at a level gets it whole; when spent, the most relaxed level's best
    effort is returned with its violations).
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
    order_names = relaxation_names(rules, relaxation_order)
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

    prepared = prepare(candidates, scores, filter_rules, relaxable_filters, context, pins, k, {})
    view = RequestView(candidates, context, k, prepared.fixed)
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    ranks = greedy(prepared.stream, k, prepared.fixed, checks)
    if ranks is not None:
        row_at = prepared.stream.row_at
        slots: list[int | None] = [prepared.fixed[p] if p in prepared.fixed else row_at(ranks[p]) for p in range(k)]
        return _finish(candidates, scores, context, k, checks, prepared, slots, ranks, (), 0, "")
    found = search_with_relaxation(
        candidates, scores, context, k, pins, constraints, filter_rules, order_names, relaxable_filters,
        prepared, search_budget,
    )
    length = next((p for p, row in enumerate(found.slots) if row is None), len(found.slots))
    view = RequestView(candidates, context, length, {p: r for p, r in found.prepared.fixed.items() if p < length})
    checks = [c for c in (rule.bind(view) for rule in constraints) if c is not None]
    return _finish(candidates, scores, context, k, checks, found.prepared, found.slots, found.ranks, found.relaxed,
                   found.nodes, found.shortfall)


def _finish(candidates: CandidateSet, scores: np.ndarray, context: SlateContext, k: int, checks: list[BoundConstraint],
            prepared: Prepared, slots: Slots, ranks: Mapping[int, int], relaxed: tuple[str, ...], nodes: int,
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
                Violation(pin.name, pos,
                          f"pinned item {context.label('item', pin.item)} at {position_label(pos)}: the slate ends at {length}")
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
    pool_positions = {pos: check.rule.pool for check in checks if isinstance(check, PoolCheck | PoolCountCheck)
                      for pos in check.shown(filled)}
    for pos in range(length):
        if pos in placed:
            slot_names[pos] = SLOT_PINNED
        elif pos in pool_positions:
            slot_names[pos] = pool_positions[pos]
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


def _audit_filters(rows: list[int], prepared: Prepared, ranks: Mapping[int, int], context: SlateContext) -> list[Violation]:
    """Excluded values, and repeats blamed on the lower-precedence copy (pins first, then rank)."""
    pinned = {row: i - len(prepared.claim_order) for i, row in enumerate(prepared.claim_order)}
    ordered = sorted(range(len(rows)), key=lambda p: pinned[rows[p]] if p not in ranks else ranks[p])
    out: list[Violation] = []
    for f in prepared.filters:
        seen: dict[int, int] = {}
        column = f.column[rows].tolist()
        for pos in ordered:
            value = column[pos]
            if value in f.excluded:
                out.append(Violation(f.rule.name, pos, f.rule.excluded_detail(context.label(f.rule.attribute, value))))
            elif f.seen is not None and value in seen:
                label = context.label(f.rule.attribute, value)
                out.append(Violation(f.rule.name, pos, f"same {f.rule.attribute} {label} as {position_label(seen[value])}"))
            seen.setdefault(value, pos)
    return out


def _dropped(stream: RankedStream, cut: int, shown: set[int], candidates: CandidateSet,
             context: SlateContext) -> tuple[Dropped, ...]:
    """The removed candidates ranked above `cut`, each with the rule and the sentence that removed it."""
    out: list[Dropped] = []
    for rank in range(min(cut, stream.scanned)):
        row = stream.rows[rank]
        if stream.status[rank] == KEPT or row in shown:
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
