"""Art. 9, Art. 11, Art. 12 of the Provisions, read off the lists the server serves:
de-duplication and category dispersal across a session's pages, an explanation per item, the
front screen's mainstream slots, and the AI-generated label (Art. 9)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.client import RECOMMENDATIONS_PATH, Exchange, Inspector
from auditor.config import AuditConfig
from auditor.policy import ExpectedPolicy
from auditor.report import CheckResult, result
from auditor.responses import ids_of, items_of, labels_of, reason_of, unreported, violations_of, where

AI_GENERATED = "ai_generated"
DISPERSAL_RULE, FRONT_SCREEN_RULE = "dispersal", "front_screen"
CONTENT_DEDUP_NOTE = (
    "content duplicates (the same work under two item ids) cannot be seen black-box except through "
    "identical titles, which the API does not return; only item-id duplicates are checked"
)


@dataclass
class Session:
    """The pages of one session as served, in the order requested (page 0 first)."""

    session_id: str | None
    user_id: str
    surface: str
    pages: list[dict[str, Any]] = field(default_factory=list)


def served_lists(exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
    """Bodies of every list served (200 from POST /v1/recommendations), in order."""
    return [e.data for e in exchanges if e.method == "POST" and e.path == RECOMMENDATIONS_PATH and e.ok and e.data]


def sessions_from(exchanges: Iterable[Exchange]) -> list[Session]:
    """Group served lists by the session id the audit sent (or, for page 0, the one returned)."""
    sessions: dict[str, Session] = {}
    for exchange in exchanges:
        if exchange.method != "POST" or exchange.path != RECOMMENDATIONS_PATH or not exchange.ok or not exchange.data:
            continue
        body = exchange.data
        sent = exchange.sent if isinstance(exchange.sent, dict) else {}
        key = str(sent.get("session_id") or body.get("session_id") or f"unkeyed-{len(sessions)}")
        session = sessions.setdefault(key, Session(key, str(body.get("user_id", sent.get("user_id"))),
                                                   str(body.get("surface", sent.get("surface")))))
        session.pages.append(body)
    return list(sessions.values())


def crawl(inspector: Inspector, users: Sequence[str], config: AuditConfig) -> int:
    """The Art. 12 crawl: sessions round-robin over users and surfaces until `config.lists` lists."""
    requested = 0
    while requested < config.lists and users:
        before = requested
        for user in users:
            for surface in config.surfaces:
                if requested >= config.lists:
                    return requested
                requested += len(inspector.walk_session(user, surface, config.pages, config.lists - requested))
        if requested == before:
            break
    return requested


def check_dedup(sessions: Sequence[Session]) -> CheckResult:
    """Art. 12: no item id twice in a list, nor again on a later page of the same session."""
    failures: list[str] = []
    within = across = mismatched = items = lists = 0
    for session in sessions:
        first_seen: dict[str, int] = {}
        for page_no, body in enumerate(session.pages):
            lists += 1
            if session.session_id and body.get("session_id") not in (None, session.session_id):
                mismatched += 1
                failures.append(f"{where(body)}: session_id {body.get('session_id')!r}, "
                                f"the audit sent {session.session_id!r}")
            on_page: set[str] = set()
            for item_id in ids_of(body):
                items += 1
                if item_id in on_page:
                    within += 1
                    failures.append(f"{where(body)}: item {item_id} twice in the list")
                elif item_id in first_seen:
                    across += 1
                    failures.append(f"{where(body)}: item {item_id} already shown on page "
                                    f"{first_seen[item_id]} of this session")
                on_page.add(item_id)
                first_seen.setdefault(item_id, page_no)
    counts = {"sessions": len(sessions), "lists": lists, "items": items, "duplicates_within_list": within,
              "duplicates_across_pages": across, "session_id_mismatches": mismatched}
    if not lists:
        failures.append("no lists were served, nothing to check")
    return result("Art. 12", "de-duplication", failures, counts, [CONTENT_DEDUP_NOTE])


def dispersal_violations(categories: Sequence[Any], window: int, max_per_window: int) -> list[int]:
    """Indices where an item's category occurs more than `max_per_window` times in the `window`
    positions ending there. The auditor's own reading of the rule, written apart from the server's
    policy engine on purpose: an audit that ran the server's code could not catch its mistakes."""
    out = []
    for end, value in enumerate(categories):
        if value is None:
            continue
        if list(categories[max(0, end - window + 1): end + 1]).count(value) > max_per_window:
            out.append(end)
    return out


def check_dispersal(sessions: Sequence[Session], window: int = 5, max_per_window: int = 2,
                    across_pages: bool = True) -> CheckResult:
    """Art. 12: at most `max_per_window` items of one category in any `window` consecutive positions,
    across the pages of a session. A violation the server reported with the list is counted (the
    candidates may not have allowed better); one it did not report is a failure."""
    failures: list[str] = []
    observed = reported = missing_category = server_reported = lists = 0
    for session in sessions:
        runs: list[list[tuple[dict[str, Any], int, Any]]] = [[]]  # (body, position0, category) per run
        for body in session.pages:
            lists += 1
            server_reported += sum(1 for v in violations_of(body) if v.get("rule") == DISPERSAL_RULE)
            if not across_pages:
                runs.append([])
            for position0, item in enumerate(items_of(body)):
                category = item.get("category")
                if category in (None, ""):
                    missing_category += 1
                    failures.append(f"{where(body)}: item {item.get('item_id')} has no category")
                    category = None
                runs[-1].append((body, position0, category))
        # per response: (body, [(position0, category)])
        found: dict[int, tuple[dict[str, Any], list[tuple[int, Any]]]] = {}
        for run in runs:
            for index in dispersal_violations([c for _, _, c in run], window, max_per_window):
                body, position0, category = run[index]
                found.setdefault(id(body), (body, []))[1].append((position0, category))
        for body, violations in found.values():
            observed += len(violations)
            missed = set(unreported(body, {DISPERSAL_RULE}, [p for p, _ in violations]))
            reported += len(violations) - len(missed)
            for position0, category in violations:
                if position0 in missed:
                    failures.append(f"{where(body)}: position {position0 + 1}: more than {max_per_window} items "
                                    f"of category {category!r} in the {window} positions ending here, "
                                    "not reported by the server")
    counts = {"sessions": len(sessions), "lists": lists, "violations_observed": observed,
              "violations_reported_by_server": reported, "violations_unreported": observed - reported,
              "server_reported_total": server_reported, "items_without_category": missing_category}
    if not lists:
        failures.append("no lists were served, nothing to check")
    notes = [f"window {window}, at most {max_per_window} per category, "
             + ("counted across page boundaries" if across_pages else "within each page")]
    return result("Art. 12", "dispersal", failures, counts, notes)


def check_explanations(lists: Sequence[dict[str, Any]]) -> CheckResult:
    """Art. 12: every item carries a reason with a non-empty code and text."""
    failures: list[str] = []
    items = missing = 0
    codes: Counter[str] = Counter()
    for body in lists:
        for item in items_of(body):
            items += 1
            reason = item.get("reason")
            code, text = reason_of(item).get("code"), reason_of(item).get("text")
            if isinstance(code, str) and code.strip() and isinstance(text, str) and text.strip():
                codes[code] += 1
            else:
                missing += 1
                failures.append(f"{where(body)}: item {item.get('item_id')} has reason {reason!r}")
    if not items:
        failures.append("no items were served, nothing to check")
    notes = ["reason codes seen: " + ", ".join(f"{c} {n}" for c, n in codes.most_common())] if codes else []
    return result("Art. 12", "explanations", failures, {"lists": len(lists), "items": items,
                                                        "items_without_reason": missing}, notes)


def check_front_screen(lists: Sequence[dict[str, Any]], policy: ExpectedPolicy = ExpectedPolicy()) -> CheckResult:
    """Art. 11: on the front screen (surface/page per policy), the configured positions carry items
    from the mainstream pool (`slot` "mainstream"): every one, or at least `front_count` of them; a
    slot the server reported it could not fill is counted, an unreported one fails."""
    failures: list[str] = []
    screens = expected = filled = excused = position_mismatch = beyond = 0
    for body in lists:
        if body.get("surface") not in policy.front_surfaces or body.get("page") not in policy.front_pages:
            continue
        screens += 1
        items = items_of(body)
        for index, item in enumerate(items):
            if item.get("position") not in (None, index + 1):
                position_mismatch += 1
                failures.append(f"{where(body)}: item {index + 1} says position {item.get('position')}")
        on_page = [p for p in policy.front_positions if p <= len(items)]
        beyond += len(policy.front_positions) - len(on_page)  # a short page: the slate-size rule, not this one
        editorial = [p for p in on_page if items[p - 1].get("slot") == policy.front_pool]
        others = [p - 1 for p in on_page if items[p - 1].get("slot") != policy.front_pool]
        if policy.front_count is None:
            expected += len(on_page)
            filled += len(editorial)
            unfilled = others
        else:  # at least n of the positions; a shortfall is reported at the last non-editorial ones
            required = min(policy.front_count, len(on_page))
            expected += required
            filled += min(len(editorial), required)
            unfilled = others[len(others) - max(0, required - len(editorial)):] if required > len(editorial) else []
        missed = unreported(body, {FRONT_SCREEN_RULE}, unfilled)
        excused += len(unfilled) - len(missed)
        for position0 in missed:
            failures.append(f"{where(body)}: position {position0 + 1} has slot {items[position0].get('slot')!r}, "
                            f"expected {policy.front_pool!r}, and no front_screen violation was reported")
    counts = {"front_screens": screens, "expected_slots": expected, "mainstream_filled": filled,
              "fill_rate": round(filled / expected, 3) if expected else 0.0, "reported_unfilled": excused,
              "position_field_mismatches": position_mismatch, "slots_beyond_short_pages": beyond}
    if policy.front_positions and not screens:
        failures.append("no front screen was served, nothing to check")
    form = "" if policy.front_count is None else f"at least {policy.front_count} of "
    notes = [f"{form}positions {list(policy.front_positions)} of {list(policy.front_surfaces)} page(s) "
             f"{list(policy.front_pages)} from the {policy.front_pool!r} pool ({policy.source})"]
    return result("Art. 11", "front screen", failures, counts, notes)


def check_synthetic_labels(lists: Sequence[dict[str, Any]]) -> CheckResult:
    """Art. 9: an item labelled ai_generated anywhere carries that label everywhere it is shown
    (lists and fetched logs). Counts only what is visible: the API exposes no synthetic flag otherwise."""
    shown: dict[str, list[bool]] = defaultdict(list)
    unlabelled_in: dict[str, str] = {}
    for body in lists:
        for item in items_of(body):
            item_id = str(item.get("item_id"))
            labelled = AI_GENERATED in labels_of(item)
            shown[item_id].append(labelled)
            if not labelled:
                unlabelled_in.setdefault(item_id, where(body))
    labelled_ids = {i for i, flags in shown.items() if any(flags)}
    inconsistent = sorted(i for i in labelled_ids if not all(shown[i]))
    failures = [f"item {i} labelled {AI_GENERATED!r} elsewhere but not in {unlabelled_in[i]}" for i in inconsistent]
    counts = {"items_shown": sum(len(f) for f in shown.values()),
              "ai_generated_shown": sum(sum(f) for f in shown.values()),
              "distinct_ai_generated": len(labelled_ids), "label_dropped": len(inconsistent)}
    notes = [] if labelled_ids else ["no item labelled ai_generated was served; nothing to compare"]
    return result("Art. 9", "synthetic-content label", failures, counts, notes)
