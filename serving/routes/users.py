"""User rights (Art. 10, Art. 17 (draft 15), Art. 18 (draft 16), Art. 19; PIPL Art. 45, PIPL Art. 47): the
personalization switch, minors mode, elderly mode, "broaden my feed", user tags, negative feedback on
served items, and the interaction history that personalizes the lists (see it, erase it).

No onboarding asks a user to pick interest tags: every list works without any tag, and tags
and feedback are options a user may use, never a step they must take (Art. 17 (draft 15)).

A change here is written to the database before the response, so the next request — on any
worker — sees it; every change is also appended to the recommendation log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from compliance import elderly, minors, tags, transparency
from compliance.logstore import request_id_time
from served.feedback import FEWER_LIKE_THIS
from serving.deps import PrincipalDep, ServicesDep
from serving.auth import Principal
from serving.routes.recommendations import ID_PATTERN, REQUEST_ID_PATTERN
from serving.services import Services
from serving.state.store import HistoryPage, UserState

router = APIRouter(prefix="/v1/users", tags=["user rights"])

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    personalization: bool | None = Field(None, description="false turns personalized recommendations off at once")
    minor_mode: bool | None = Field(None, description="guardian setting: true puts the account in minors mode")
    elderly_mode: bool | None = Field(None, description="Art. 19 elderly mode: no fraud-risk items, plain explanations; "
                                      "null: decided by the profile age")
    broaden_feed: bool | None = Field(None, description="\"broaden my feed\": a lower cap on one category's share "
                                      "of a session (Art. 17 (draft 15))")

    @model_validator(mode="after")
    def _not_empty(self) -> SettingsIn:
        if not self.model_fields_set:
            raise ValueError("give at least one of: personalization, minor_mode, elderly_mode, broaden_feed")
        if "broaden_feed" in self.model_fields_set and self.broaden_feed is None:
            raise ValueError("broaden_feed: true or false")
        return self


class SettingsOut(BaseModel):
    user_id: str
    personalization: bool
    minor_mode: bool | None
    minor: bool = Field(description="minors mode applies (profile age under 18 or guardian setting)")
    elderly_mode: bool | None = Field(description="the user's elderly-mode setting (null: not set)")
    elderly: bool = Field(description="elderly mode applies (the setting, else a profile age at or above the default)")
    broaden_feed: bool


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(min_length=1, max_length=64)
    action: Literal["add", "not_interested"] = "add"


class TagOut(BaseModel):
    name: str
    weight: float
    source: str
    detail: str


class TagsOut(BaseModel):
    user_id: str
    tags: list[TagOut]
    deleted: list[str]
    not_interested: list[str]
    note: str | None = None


def _require_user(services: Services, user_id: str, principal: Principal) -> None:
    """The caller is this user (403 otherwise), and the user exists (404)."""
    principal.require(user_id)
    if not services.store.user_exists(user_id):
        raise HTTPException(404, detail=f"user_id: unknown user {user_id!r}")


def _settings_out(services: Services, user_id: str) -> SettingsOut:
    user = services.store.load_user(user_id)
    return SettingsOut(
        user_id=user_id,
        personalization=user.personalization,
        minor_mode=user.minor_mode,
        minor=minors.is_minor(user.age, user.minor_mode, services.settings.minors),
        elderly_mode=user.elderly_mode,
        elderly=elderly.is_elderly(user.age, user.elderly_mode, services.settings.elderly),
        broaden_feed=user.broaden_feed,
    )


@router.get("/{user_id}/settings", response_model=SettingsOut)
def get_settings(user_id: UserId, services: ServicesDep, principal: PrincipalDep) -> SettingsOut:
    _require_user(services, user_id, principal)
    return _settings_out(services, user_id)


@router.put("/{user_id}/settings", response_model=SettingsOut)
def put_settings(user_id: UserId, body: SettingsIn, services: ServicesDep, principal: PrincipalDep) -> SettingsOut:
    """Switch personalization off (or on), set minors mode, elderly mode and "broaden my feed";
    effective from the next request."""
    _require_user(services, user_id, principal)
    now = services.clock()
    given = body.model_fields_set
    if "minor_mode" in given and body.minor_mode is not True and services.store.guardian(user_id) is not None:
        # A minor cannot leave minors mode their guardian's link put them in (Art. 18 (draft 16)).
        raise HTTPException(403, detail="minor_mode: this account is in the care of a guardian; minors mode stays on")
    services.logstore.append("settings", {"user_id": user_id, "change": body.model_dump(exclude_unset=True), "at": now.isoformat()})
    services.store.put_settings(user_id, now, body.personalization, body.minor_mode,
                                clear_minor_mode="minor_mode" in given and body.minor_mode is None,
                                elderly_mode=body.elderly_mode,
                                clear_elderly_mode="elderly_mode" in given and body.elderly_mode is None,
                                broaden_feed=body.broaden_feed)
    return _settings_out(services, user_id)


def _tags_view(services: Services, user_id: str) -> TagsOut:
    user = services.store.load_user(user_id)
    deleted, not_interested = sorted(user.tags_in("deleted")), sorted(user.tags_in("not_interested"))
    if minors.is_minor(user.age, user.minor_mode, services.settings.minors) and not services.settings.minors.personalized:
        return TagsOut(user_id=user_id, tags=[], deleted=deleted, not_interested=not_interested,
                       note="minors mode: no interest profile is kept (Art. 18 (draft 16))")
    profile = _profile(services, user)
    return TagsOut(
        user_id=user_id,
        tags=[TagOut(name=t.name, weight=round(t.weight, 4), source=t.source, detail=t.detail) for t in profile.tags],
        deleted=deleted,
        not_interested=not_interested,
    )


def _profile(services: Services, user: UserState) -> tags.Profile:
    """The user's tags: derived from the model's history of the user (none once they erased their
    history: it is theirs no more to derive from), then their own decisions."""
    catalog = services.catalog
    derived: list[tags.Tag] = []
    if catalog is not None and user.user_id in catalog.bundle.user_index and user.history_erased_at is None:
        history = catalog.bundle.user_history(catalog.bundle.user_index[user.user_id])
        derived = tags.derive_tags([catalog.item_categories[i] for i in history], services.settings.tags)
    return tags.effective_profile(derived, deleted=user.tags_in("deleted"), added=user.tags_in("added"),
                                  not_interested=user.tags_in("not_interested"), policy=services.settings.tags)


@router.get("/{user_id}/tags", response_model=TagsOut)
def get_tags(user_id: UserId, services: ServicesDep, principal: PrincipalDep) -> TagsOut:
    """The interest tags the user model holds, with weights and where they came from."""
    _require_user(services, user_id, principal)
    return _tags_view(services, user_id)


@router.post("/{user_id}/tags", response_model=TagsOut)
def add_tag(user_id: UserId, body: TagIn, services: ServicesDep, principal: PrincipalDep) -> TagsOut:
    """Add an interest, or mark a category "not interested" (its items leave personalized lists)."""
    _require_user(services, user_id, principal)
    banned = tags.is_banned(body.tag, services.settings.tags)
    if banned:
        raise HTTPException(422, detail=f"tag: {body.tag!r} cannot be a tag (sensitive or prohibited term {banned!r}, Art. 10)")
    catalog = services.catalog
    if catalog is not None and body.tag not in catalog.category_names:
        raise HTTPException(422, detail=f"tag: unknown {body.tag!r}; tags are categories: {', '.join(catalog.category_names[:40])}")
    state = "added" if body.action == "add" else "not_interested"
    services.logstore.append("tags", {"user_id": user_id, "tag": body.tag, "action": body.action})
    services.store.set_tag_state(user_id, body.tag, state, services.clock())
    return _tags_view(services, user_id)


@router.delete("/{user_id}/tags/{tag}", response_model=TagsOut)
def delete_tag(user_id: UserId, tag: Annotated[str, Path(min_length=1, max_length=64)], services: ServicesDep,
               principal: PrincipalDep) -> TagsOut:
    """Delete a tag: it stops influencing retrieval, ranking and explanations from the next request."""
    _require_user(services, user_id, principal)
    user = services.store.load_user(user_id)
    current = {t.name for t in _profile(services, user).tags}
    if tag not in current and user.tag_states.get(tag) != "not_interested":
        raise HTTPException(404, detail=f"tag: user {user_id!r} has no tag {tag!r}")
    services.logstore.append("tags", {"user_id": user_id, "tag": tag, "action": "delete"})
    if user.tag_states.get(tag) == "not_interested":
        services.store.set_tag_state(user_id, tag, None, services.clock())
    else:
        services.store.set_tag_state(user_id, tag, "deleted", services.clock())
    return _tags_view(services, user_id)


# -- negative feedback on served items (Art. 17 (draft 15); the "not interested" campaign) -----------------
class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(max_length=36, pattern=REQUEST_ID_PATTERN, description="the request_id of the served list")
    item_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN, description="an item of that list")
    kind: Literal["not_interested", "fewer_like_this"] = Field(
        description="not_interested: this item; fewer_like_this: this item, and its category ranked lower for a while")


class FeedbackItemOut(BaseModel):
    item_id: str
    kind: str
    category: str | None
    request_id: str
    created_at: datetime
    fewer_like_this_until: datetime | None = Field(
        description="until when the item's category is ranked lower (fewer_like_this); null for not_interested")


class FeedbackOut(BaseModel):
    user_id: str
    feedback: list[FeedbackItemOut]
    note: str


def _feedback_view(services: Services, user_id: str) -> FeedbackOut:
    user = services.store.load_user(user_id)
    period = timedelta(days=services.settings.policy.feedback.fewer_like_this_days)
    return FeedbackOut(
        user_id=user_id,
        feedback=[FeedbackItemOut(item_id=f.item_id, kind=f.kind, category=f.category, request_id=f.request_id,
                                  created_at=f.created_at,
                                  fewer_like_this_until=f.created_at + period if f.kind == FEWER_LIKE_THIS else None)
                  for f in user.feedback],
        note="These items and their duplicates are left out of all your lists until you undo it "
             "(DELETE /v1/users/{user_id}/feedback/{item_id}).",
    )


@router.post("/{user_id}/feedback", response_model=FeedbackOut, status_code=201, responses={404: {}, 409: {}})
def post_feedback(user_id: UserId, body: FeedbackIn, services: ServicesDep, principal: PrincipalDep) -> FeedbackOut:
    """"Not interested" or "fewer like this" on an item of a list served to this user: the item and its
    content duplicates leave every later list on every surface; "fewer like this" also ranks the
    item's category lower for the configured period. Effective from the next request."""
    _require_user(services, user_id, principal)
    try:
        request_id_time(body.request_id)
        record = services.logstore.lookup(body.request_id, user_id)
    except (ValueError, OverflowError):  # not a request id this service could have made
        record = None
    if record is None:
        raise HTTPException(404, detail=f"request_id: no list {body.request_id!r} was served to user {user_id!r}")
    served = next((i for i in record.get("items") or [] if isinstance(i, dict) and i.get("item_id") == body.item_id), None)
    if served is None:
        raise HTTPException(422, detail=f"item_id: item {body.item_id!r} was not in list {body.request_id!r}")
    marked = {f.item_id for f in services.store.load_user(user_id).feedback}
    limit = services.settings.max_feedback_items
    if body.item_id not in marked and len(marked) >= limit:
        raise HTTPException(409, detail=f"item_id: {len(marked)} items are marked already, the most kept per user "
                                        f"({limit}); undo some (DELETE /v1/users/{user_id}/feedback/{{item_id}}) first")
    now = services.clock()
    category = served.get("category") if isinstance(served.get("category"), str) else None
    services.logstore.append("feedback", {"user_id": user_id, "action": "add", "kind": body.kind, "item_id": body.item_id,
                                          "request_id": body.request_id, "category": category, "at": now.isoformat()})
    services.store.put_feedback(user_id, body.item_id, body.kind, body.request_id, category, now)
    return _feedback_view(services, user_id)


@router.get("/{user_id}/feedback", response_model=FeedbackOut)
def get_feedback(user_id: UserId, services: ServicesDep, principal: PrincipalDep) -> FeedbackOut:
    """The user's "not interested" and "fewer like this" feedback in force."""
    _require_user(services, user_id, principal)
    return _feedback_view(services, user_id)


@router.delete("/{user_id}/feedback/{item_id}", response_model=FeedbackOut, responses={404: {}})
def delete_feedback(user_id: UserId, item_id: Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)],
                    services: ServicesDep, principal: PrincipalDep) -> FeedbackOut:
    """Undo the feedback on an item: it may be recommended again from the next request."""
    _require_user(services, user_id, principal)
    if not services.store.delete_feedback(user_id, item_id):
        raise HTTPException(404, detail=f"item_id: user {user_id!r} gave no feedback on item {item_id!r}")
    services.logstore.append("feedback", {"user_id": user_id, "action": "undo", "item_id": item_id,
                                          "at": services.clock().isoformat()})
    return _feedback_view(services, user_id)


# -- the interaction history (PIPL Art. 45: see it; PIPL Art. 47: erase it) -----------------------------
MAX_HISTORY_PAGE = 500
# A page's cursor: the last event's time (microseconds since the epoch) and its event id.
CURSOR_PATTERN = r"^[0-9]{1,20}:[A-Za-z0-9_.:@\-]{1,128}$"


class HistoryEventOut(BaseModel):
    event_id: str
    item_id: str
    type: str = Field(description="impression | click | like | share")
    ts: datetime


class HistoryOut(BaseModel):
    user_id: str
    events: list[HistoryEventOut] = Field(description="newest first")
    next_before: str | None = Field(description="pass as `before` for the next, older page; null: no more")
    events_stored: int = Field(description="all the events stored for the user")
    seen_items: int = Field(description="items those events mark as seen (left out of personalized lists)")
    erased: bool
    erased_at: datetime | None = Field(description="the user's latest erasure of their history")
    note: str


class ErasureOut(BaseModel):
    user_id: str
    events_deleted: int
    seen_items_deleted: int
    erased_at: datetime = Field(description="this erasure's time (a repeated erasure moves it to its own)")
    kept: str = Field(description="what an erasure does not remove, and why")


def _require_history_owner(services: Services, user_id: str, principal: Principal) -> None:
    """The caller is this user (403), known or with something stored (404 otherwise): events may be
    stored for a user without a profile, and they are still theirs to see and erase."""
    principal.require(user_id)
    if services.store.user_exists(user_id):
        return
    page = services.store.history(user_id, 1)
    if not (page.events_stored or page.seen_items or page.erased_at):
        raise HTTPException(404, detail=f"user_id: unknown user {user_id!r}")


def _cursor(before: str | None) -> tuple[datetime, str] | None:
    if before is None:
        return None
    micros, event_id = before.split(":", 1)
    try:
        return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(micros)), event_id
    except OverflowError:
        raise HTTPException(422, detail=f"before: {before!r} is not a cursor this service gave") from None


def _cursor_text(cursor: tuple[datetime, str]) -> str:
    ts, event_id = cursor
    return f"{(ts - datetime.fromtimestamp(0, UTC)) // timedelta(microseconds=1)}:{event_id}"


def _history_out(user_id: str, page: HistoryPage) -> HistoryOut:
    return HistoryOut(
        user_id=user_id,
        events=[HistoryEventOut(**event) for event in page.events],
        next_before=_cursor_text(page.next_before) if page.next_before is not None else None,
        events_stored=page.events_stored,
        seen_items=page.seen_items,
        erased=page.erased_at is not None,
        erased_at=page.erased_at,
        note="Your stored events: a personalized list leaves out the items they mark as seen and reads what you "
             "engaged with lately from them. DELETE /v1/users/{user_id}/history erases them. "
             + ("Your history was erased: your lists are no longer built from what you did before, nor from the "
                "history the model was trained with." if page.erased_at is not None else ""),
    )


@router.get("/{user_id}/history", response_model=HistoryOut)
def get_history(user_id: UserId, services: ServicesDep, principal: PrincipalDep,
                limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = 100,
                before: Annotated[str | None, Query(max_length=150, pattern=CURSOR_PATTERN,
                                                    description="the `next_before` of the previous page")] = None,
                ) -> HistoryOut:
    """The events stored for the user, newest first, `limit` at a time; with how many there are, the
    size of their seen set, and whether and when the user erased their history."""
    _require_history_owner(services, user_id, principal)
    return _history_out(user_id, services.store.history(user_id, limit, _cursor(before)))


@router.delete("/{user_id}/history", response_model=ErasureOut)
def erase_history(user_id: UserId, services: ServicesDep, principal: PrincipalDep) -> ErasureOut:
    """Erase the user's interaction history: their stored events and seen set, in one transaction,
    with a marker from which on their lists are built as a new user's (not from the erased events, nor
    from the model's training-time history of them). Idempotent: a repeat erases what was stored since
    (zero counts when nothing was) and moves the marker to its own time. The served-list log is kept."""
    _require_history_owner(services, user_id, principal)
    now = services.clock()
    services.logstore.append("history", {"user_id": user_id, "action": "erase", "at": now.isoformat()})
    events, seen, erased_at = services.store.erase_history(user_id, now)
    return ErasureOut(user_id=user_id, events_deleted=events, seen_items_deleted=seen, erased_at=erased_at,
                      kept=transparency.erasure_keeps(services.settings.logs.retention_days))
