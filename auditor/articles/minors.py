"""Art. 18 (draft 16) of the Provisions, minors mode: with it switched on for one user, every item
on every surface, page and the trending list carries the minor_safe label; a curfew or daily-limit
refusal is allowed and counted. The user's setting is restored afterwards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.articles.user_controls import same_settings
from auditor.client import Exchange, Inspector, said
from auditor.config import AuditConfig
from auditor.report import CheckResult, result
from auditor.responses import items_of, labels_of, where

MINOR_SAFE = "minor_safe"
REFUSAL_CODES = frozenset({"minors_curfew", "minors_daily_limit"})


@dataclass
class MinorsTrial:
    """What the minors trial saw for one user (`user_id` None: no known user to try)."""

    user_id: str | None = None
    set_on: Exchange | None = None  # PUT minor_mode=true
    responses: Sequence[Exchange] = field(default_factory=list)  # lists and the trending list in minors mode
    original: Exchange | None = None  # GET settings before
    restored: Exchange | None = None  # GET settings after restoring


def minors_trial(inspector: Inspector, user: str | None, config: AuditConfig) -> MinorsTrial:
    """Minors mode on for one user, lists across surfaces and pages plus the trending list; the
    setting is restored to what it was."""
    if user is None:
        return MinorsTrial()
    trial = MinorsTrial(user_id=user, original=inspector.settings(user))
    responses: list[Exchange] = []
    try:
        if trial.original is not None and trial.original.ok:
            trial.set_on = inspector.put_settings(user, minor_mode=True)
            if trial.set_on.ok:
                for surface in config.minor_surfaces:
                    responses += inspector.walk_session(user, surface, config.pages)
                responses.append(inspector.request("GET", "/v1/trending", params={"user_id": user, "k": config.k}))
    finally:
        if trial.set_on is not None and trial.original is not None and trial.original.ok:
            inspector.put_settings(user, minor_mode=trial.original.data.get("minor_mode"))
    trial.responses = responses
    trial.restored = inspector.settings(user)
    return trial


def check_minors(trial: MinorsTrial) -> CheckResult:
    """Art. 18 (draft 16): in minors mode every item is labelled minor_safe on every surface and page; a 403
    refusal for curfew or the daily limit is allowed (counted), any other error fails."""
    failures: list[str] = []
    user_id, set_on, responses = trial.user_id, trial.set_on, trial.responses
    if user_id is None:
        return result("Art. 18 (draft 16)", "minors mode", ["no known user to put in minors mode"], {}, ran=False)
    if set_on is None or not set_on.ok or set_on.data.get("minor") is not True:
        failures.append(f"user {user_id}: minor_mode=true: {said(set_on)}"
                        + (f", settings say minor={set_on.data.get('minor')!r}" if set_on and set_on.ok else ""))
    served = items = unlabelled = flag_off = 0
    refused: Counter[str] = Counter()
    for e in responses:
        if e.ok:
            served += 1
            body: dict[str, Any] = e.data if isinstance(e.body, dict) else {"items": e.body}
            if body.get("minor_mode") is False:
                flag_off += 1
                failures.append(f"{e.method} {e.path}: response says minor_mode false")
            for item in items_of(body):
                items += 1
                if MINOR_SAFE not in labels_of(item):
                    unlabelled += 1
                    failures.append(f"{e.method} {e.path} ({where(body)}): item {item.get('item_id')} "
                                    f"labels {labels_of(item)}, no {MINOR_SAFE!r}")
        elif e.status == 403 and e.data.get("code") in REFUSAL_CODES:
            refused[e.data["code"]] += 1
        else:
            failures.append(f"{e.summary()}: neither a list nor a minors refusal")
    if not same_settings(trial.original, trial.restored):
        before, after = trial.original, trial.restored
        failures.append(f"user {user_id}: settings not restored: before {before.data if before else None}, "
                        f"after {after.data if after else None}")
    if not responses:
        failures.append("no request was made in minors mode")
    counts = {"requests": len(responses), "lists_served": served, "items": items,
              "items_without_minor_safe": unlabelled,
              "minor_mode_flag_off": flag_off, "refused_curfew": refused["minors_curfew"],
              "refused_daily_limit": refused["minors_daily_limit"]}
    notes = [f"user {user_id}"]
    if responses and not served:
        notes.append("every request was refused (curfew or daily limit): labels could not be checked at this hour")
    return result("Art. 18 (draft 16)", "minors mode", failures, counts, notes)
