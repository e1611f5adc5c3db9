"""User rights (Art. 10, 15, 16): the personalization switch, minors mode, and user tags.

A change here is written to the database before the response, so the next request — on any
worker — sees it; every change is also appended to the recommendation log.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from compliance import minors, tags
from serving.deps import PrincipalDep, ServicesDep
from serving.auth import Principal
from serving.routes.recommendations import ID_PATTERN
from serving.services import Services
from serving.state.store import UserState

router = APIRouter(prefix="/v1/users", tags=["user rights"])

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    personalization: bool | None = Field(None, description="false turns personalized recommendations off at once")
    minor_mode: bool | None = Field(None, description="guardian setting: true puts the account in minors mode")

    @model_validator(mode="after")
    def _not_empty(self) -> SettingsIn:
        if not self.model_fields_set:
            raise ValueError("give at least one of: personalization, minor_mode")
        return self


class SettingsOut(BaseModel):
    user_id: str
    personalization: bool
    minor_mode: bool | None
    minor: bool = Field(description="minors mode applies (profile age under 18 or guardian setting)")


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
    )


@router.get("/{user_id}/settings", response_model=SettingsOut)
def get_settings(user_id: UserId, services: ServicesDep, principal: PrincipalDep) -> SettingsOut:
    _require_user(services, user_id, principal)
    return _settings_out(services, user_id)


@router.put("/{user_id}/settings", response_model=SettingsOut)
def put_settings(user_id: UserId, body: SettingsIn, services: ServicesDep, principal: PrincipalDep) -> SettingsOut:
    """Switch personalization off (or on) and set minors mode; effective from the next request."""
    _require_user(services, user_id, principal)
    now = services.clock()
    clear_minor = "minor_mode" in body.model_fields_set and body.minor_mode is None
    services.logstore.append("settings", {"user_id": user_id, "change": body.model_dump(exclude_unset=True), "at": now.isoformat()})
    services.store.put_settings(user_id, now, body.personalization, body.minor_mode, clear_minor_mode=clear_minor)
    return _settings_out(services, user_id)


def _tags_view(services: Services, user_id: str) -> TagsOut:
    user = services.store.load_user(user_id)
    deleted, not_interested = sorted(user.tags_in("deleted")), sorted(user.tags_in("not_interested"))
    if minors.is_minor(user.age, user.minor_mode, services.settings.minors) and not services.settings.minors.personalized:
        return TagsOut(user_id=user_id, tags=[], deleted=deleted, not_interested=not_interested,
                       note="minors mode: no interest profile is kept (Art. 16)")
    profile = _profile(services, user)
    return TagsOut(
        user_id=user_id,
        tags=[TagOut(name=t.name, weight=round(t.weight, 4), source=t.source, detail=t.detail) for t in profile.tags],
        deleted=deleted,
        not_interested=not_interested,
    )


def _profile(services: Services, user: UserState) -> tags.Profile:
    catalog = services.catalog
    derived: list[tags.Tag] = []
    if catalog is not None and user.user_id in catalog.bundle.user_index:
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
