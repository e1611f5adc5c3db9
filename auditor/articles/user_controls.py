"""Art. 17 (draft 15) of the Provisions, the user's controls, tried on the server: switching
personalization off (from the very next request, and back), deleting an interest tag (no later
explanation cites it), and an explanation on request (a served list fetched again by its user)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.client import Exchange, Inspector, said, user_path
from auditor.config import AuditConfig
from auditor.report import CheckResult, result
from auditor.responses import NON_PERSONALIZED, PERSONALIZED, ids_of, items_of, mentions, reason_of, where

# Reasons that speak of the item (its popularity, category, editors), not of the user's interests.
IMPERSONAL_REASONS = frozenset(
    {"popular", "popular_in_category", "trending", "editorial_front_screen", "pinned", "boosted", "minor_safe_pick"}
)


def same_settings(before: Exchange | None, after: Exchange | None) -> bool:
    """Whether two GET settings responses agree on what the audit changes (also used by Art. 18 (draft 16))."""
    keys = ("personalization", "minor_mode")
    return bool(before and after and before.ok and after.ok
                and all(before.data.get(k) == after.data.get(k) for k in keys))


# --- the personalization switch ---------------------------------------------------------------------
@dataclass
class SwitchTrial:
    """What the switch trial saw, per user."""

    users: list[str] = field(default_factory=list)
    had_personalized: set[str] = field(default_factory=set)
    original: dict[str, Exchange] = field(default_factory=dict)  # GET settings before
    off: dict[str, Exchange] = field(default_factory=dict)  # PUT personalization=false
    off_list: dict[str, Exchange] = field(default_factory=dict)  # the very next request
    on: dict[str, Exchange] = field(default_factory=dict)  # PUT personalization=true
    on_list: dict[str, Exchange] = field(default_factory=dict)
    restored: dict[str, Exchange] = field(default_factory=dict)  # GET settings after restoring


def switch_trial(inspector: Inspector, users: Sequence[str], had_personalized: set[str]) -> SwitchTrial:
    """Personalization off for two users, their very next lists, then back on; restores."""
    trial = SwitchTrial(users=list(users[:2]), had_personalized=set(had_personalized))
    try:
        for user in trial.users:
            trial.original[user] = inspector.settings(user)
        for user in trial.users:
            if trial.original[user].ok:
                trial.off[user] = inspector.put_settings(user, personalization=False)
                trial.off_list[user] = inspector.recommend(user, "home")
        for user in trial.users:
            if user in trial.off:
                trial.on[user] = inspector.put_settings(user, personalization=True)
                trial.on_list[user] = inspector.recommend(user, "home")
    finally:
        for user in trial.users:
            before = trial.original.get(user)
            if before is not None and before.ok and user in trial.off:
                inspector.put_settings(user, personalization=before.data.get("personalization"))
            trial.restored[user] = inspector.settings(user)
    return trial


def check_personalization_switch(trial: SwitchTrial) -> CheckResult:
    """Art. 17 (draft 15): switching personalization off holds from the very next request (mode
    non_personalized), gives users in the same situation identical lists, and switching it back
    on restores personalized lists."""
    failures: list[str] = []
    off_ok = on_ok = restored = 0
    off_lists: dict[str, list[str]] = {}
    if len(trial.users) < 2:
        failures.append(f"needs two known users, had {len(trial.users)}")
    for user in trial.users:
        put = trial.off.get(user)
        if put is None or not put.ok or put.data.get("personalization") is not False:
            failures.append(f"user {user}: switching off: {said(put)}")
            continue
        listed = trial.off_list.get(user)
        if listed is None or not listed.ok:
            failures.append(f"user {user}: next list after switching off: {said(listed, 'not requested')}")
        elif listed.data.get("mode") != NON_PERSONALIZED:
            failures.append(f"user {user}: next list after switching off has mode {listed.data.get('mode')!r}")
        else:
            off_ok += 1
            off_lists[user] = ids_of(listed.data)
        if user in trial.had_personalized:
            back = trial.on_list.get(user)
            if back is None or not back.ok or back.data.get("mode") != PERSONALIZED:
                got = back.data.get("mode") if back is not None and back.ok else said(back, "not requested")
                failures.append(f"user {user}: after switching back on, list mode {got!r}, expected 'personalized'")
            else:
                on_ok += 1
        if same_settings(trial.original.get(user), trial.restored.get(user)):
            restored += 1
        else:
            before, after = trial.original.get(user), trial.restored.get(user)
            failures.append(f"user {user}: settings not restored: before {before.data if before else None}, "
                            f"after {after.data if after else None}")
    distinct = {tuple(ids) for ids in off_lists.values()}
    if len(distinct) > 1:
        shown = "; ".join(f"user {u}: {ids[:5]}" for u, ids in off_lists.items())
        failures.append(f"non-personalized lists differ between users in the same situation: {shown}")
    counts = {"users": len(trial.users), "non_personalized_next_request": off_ok,
              "identical_non_personalized_lists": len(off_lists) if len(distinct) == 1 else 0,
              "personalized_after_switch_on": on_ok, "settings_restored": restored}
    return result("Art. 17 (draft 15)", "personalization switch", failures, counts)


# --- deleting an interest tag -------------------------------------------------------------------------
@dataclass
class TagTrial:
    """What the tag trial saw for one user."""

    user_id: str | None = None
    tag: str | None = None
    users_tried: int = 0
    before: list[dict[str, Any]] = field(default_factory=list)  # lists before the deletion
    delete: Exchange | None = None
    after: list[dict[str, Any]] = field(default_factory=list)  # lists after the deletion
    tags_after: Exchange | None = None
    restore: Exchange | None = None
    list_errors: list[Exchange] = field(default_factory=list)


def tag_trial(inspector: Inspector, users: Sequence[str], config: AuditConfig) -> TagTrial:
    """Delete a user's top tag, record the lists before and after, then add the tag back."""
    trial = TagTrial()
    for user in users:
        trial.users_tried += 1
        view = inspector.request("GET", user_path(user, "tags"))
        tags = [t for t in view.data.get("tags") or [] if isinstance(t, dict) and t.get("name")] if view.ok else []
        if tags:
            trial.user_id = user
            trial.tag = str(max(tags, key=lambda t: float(t.get("weight") or 0.0))["name"])
            break
    if trial.user_id is None or trial.tag is None:
        return trial
    user, tag = trial.user_id, trial.tag

    def lists() -> list[dict[str, Any]]:
        out = []
        for surface in config.surfaces:
            for exchange in inspector.walk_session(user, surface, config.pages):
                if exchange.ok:
                    out.append(exchange.data)
                else:
                    trial.list_errors.append(exchange)
        return out

    trial.before = lists()
    trial.delete = inspector.request("DELETE", user_path(user, "tags", tag))
    try:
        if trial.delete.ok:
            trial.after = lists()
            trial.tags_after = inspector.request("GET", user_path(user, "tags"))
    finally:
        if trial.delete.ok:
            trial.restore = inspector.request("POST", user_path(user, "tags"), json={"tag": tag, "action": "add"})
    return trial


def tag_citations(lists: Sequence[dict[str, Any]], tag: str) -> tuple[list[str], int]:
    """Items whose reason cites `tag` as the user's interest, and the count of impersonal mentions
    (e.g. 'Popular in Comedy', which speaks of the item's category, not of the user's tag)."""
    cited: list[str] = []
    impersonal = 0
    for body in lists:
        for item in items_of(body):
            reason = reason_of(item)
            text = str(reason.get("text") or "")
            if not mentions(text, tag):
                continue
            if reason.get("code") in IMPERSONAL_REASONS:
                impersonal += 1
            else:
                cited.append(f"{where(body)}: item {item.get('item_id')} reason {reason.get('code')!r}: {text!r}")
    return cited, impersonal


def check_tag_deletion(trial: TagTrial) -> CheckResult:
    """Art. 17 (draft 15): a deleted tag is no longer cited by any explanation, shows as deleted, and the
    audit puts it back."""
    failures: list[str] = []
    if trial.tag is None or trial.user_id is None:
        failures.append(f"no known user with interest tags found ({trial.users_tried} tried)")
        return result("Art. 17 (draft 15)", "tag deletion", failures, {"users_tried": trial.users_tried}, ran=False)
    tag, user = trial.tag, trial.user_id
    if trial.delete is None or not trial.delete.ok:
        failures.append(f"user {user}: deleting tag {tag!r}: {said(trial.delete)}")
    cited_before, _ = tag_citations(trial.before, tag)
    cited_after, impersonal = tag_citations(trial.after, tag)
    failures += [f"after deletion: {c}" for c in cited_after]
    failures += [f"list request failed: {e.summary()}" for e in trial.list_errors]
    if not trial.after:
        failures.append("no list was served after the deletion, nothing to check")
    view = trial.tags_after.data if trial.tags_after is not None and trial.tags_after.ok else None
    if view is None:
        failures.append(f"user {user}: tags after deletion: {said(trial.tags_after, 'not requested')}")
    else:
        names = {t.get("name") for t in view.get("tags") or [] if isinstance(t, dict)}
        if tag in names or tag not in (view.get("deleted") or []):
            failures.append(f"user {user}: tags view after deletion lists {tag!r} in tags={tag in names}, "
                            f"deleted={tag in (view.get('deleted') or [])}")
    restored = trial.restore is not None and trial.restore.ok and tag in {
        t.get("name") for t in trial.restore.data.get("tags") or [] if isinstance(t, dict)}
    if not restored:
        failures.append(f"user {user}: restoring tag {tag!r}: {said(trial.restore)}")
    counts = {"lists_before": len(trial.before), "citations_before": len(cited_before), "lists_after": len(trial.after),
              "items_after": sum(len(items_of(b)) for b in trial.after), "citations_after": len(cited_after),
              "impersonal_category_mentions_after": impersonal, "restored": int(restored)}
    notes = [f"user {user}, tag {tag!r}; restored with POST action=add (the API has no undo of a delete, "
             "so the tag's source may now read 'user')"]
    if not cited_before:
        notes.append("no explanation cited the tag before deletion either; the check had little to catch")
    return result("Art. 17 (draft 15)", "tag deletion", failures, counts, notes)


# --- an explanation on request --------------------------------------------------------------------------
@dataclass
class Replay:
    """A served list and what GET /v1/recommendations/{request_id}?user_id= returned for it."""

    served: dict[str, Any]
    replay: Exchange


def replay_all(inspector: Inspector, served: Sequence[dict[str, Any]]) -> list[Replay]:
    """Fetch every served list again by request id, as its user."""
    out = []
    for body in served:
        request_id, user = body.get("request_id"), body.get("user_id")
        if request_id and user:
            out.append(Replay(body, inspector.logged_list(str(request_id), str(user))))
    return out


def _reasons(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(reason_of(item).get("code"), reason_of(item).get("text")) for item in items_of(body)]


def check_explanation_on_request(replays: Sequence[Replay], foreign: Sequence[Exchange]) -> CheckResult:
    """Art. 17 (draft 15): a served list can be fetched again by its user, with the same items in the same order
    and the same reasons; another user gets 404."""
    failures: list[str] = []
    same = 0
    for r in replays:
        if not r.replay.ok:
            failures.append(f"{where(r.served)}: {r.replay.summary()}")
        elif ids_of(r.replay.data) != ids_of(r.served):
            failures.append(f"{where(r.served)}: fetched {ids_of(r.replay.data)[:6]}, served {ids_of(r.served)[:6]}")
        elif _reasons(r.replay.data) != _reasons(r.served):
            failures.append(f"{where(r.served)}: same items but different reasons")
        else:
            same += 1
    refused = sum(1 for e in foreign if e.status == 404)
    failures += [f"another user's request for a list: {e.summary()}, expected 404" for e in foreign if e.status != 404]
    if not replays:
        failures.append("no served list to fetch again")
    if not foreign:
        failures.append("no other user was tried")
    counts = {"lists_fetched": len(replays), "same_items_order_reasons": same, "other_user_tries": len(foreign),
              "other_user_404": refused}
    return result("Art. 17 (draft 15)", "explanation on request", failures, counts)
