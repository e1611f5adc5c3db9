"""Guardian controls (Art. 18 (draft 16) minors mode; the 2024 minors-mode guideline, 移动互联网未成年人模式建设指南).

An operator links a guardian to a minor's account once the relationship has been checked offline
(`PUT /v1/admin/guardians/{minor_id}`). The guardian, authenticated as themselves, then sees the
minor's usage and sets controls that make minors mode stricter for that minor: a lower daily limit,
an extra curfew window, a narrower content band (`compliance.minors.GuardianControls`, the one model
that validates the write and the read the gate makes). Nothing here can loosen the configured
rules. Every link and every change is appended to the tamper-evident log before the response.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from compliance import minors
from serving.deps import AdminDep, PrincipalDep, ServicesDep
from serving.routes.recommendations import ID_PATTERN
from serving.services import Services

router = APIRouter(tags=["minors: guardian controls"])

AccountId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
SUMMARY_DAYS = 7


class GuardianLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    guardian_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)


class ControlsOut(BaseModel):
    minor_id: str
    guardian_id: str
    controls: minors.GuardianControls
    effective_daily_minutes: int = Field(description="the limit in force: the band's, or the guardian's when lower")
    effective_max_age_rating: int = Field(description="the highest item age rating the minor may be served")
    curfews: list[str] = Field(description="the curfew windows in force, local time (HH:MM-HH:MM)")


class UsageDay(BaseModel):
    day: str
    minutes_used: float


class UsageOut(BaseModel):
    minor_id: str
    daily_limit_minutes: int
    days: list[UsageDay] = Field(description=f"the last {SUMMARY_DAYS} local days with activity, oldest first")


def _linked(services: Services, guardian_id: str, minor_id: str) -> minors.GuardianControls:
    """The minor's controls when `guardian_id` is their guardian; 404 otherwise (whether the minor
    has another guardian, or exists, is not disclosed)."""
    stored = services.store.guardian(minor_id)
    if stored is None or stored[0] != guardian_id:
        raise HTTPException(404, detail=f"{minor_id!r} is not a minor in the care of {guardian_id!r}")
    return services.gate.guardian_controls(minor_id) or minors.GuardianControls()


def _controls_out(services: Services, guardian_id: str, minor_id: str, controls: minors.GuardianControls) -> ControlsOut:
    config = services.settings.minors
    user = services.store.load_user(minor_id)
    minor_age = user.age if user.age is not None and user.age < config.adult_age else None
    budget = config.daily_budget_minutes(minor_age)
    if controls.daily_minutes is not None:
        budget = min(budget, controls.daily_minutes)
    rating = minors.max_age_rating(minor_age, True, config, controls)
    return ControlsOut(minor_id=minor_id, guardian_id=guardian_id, controls=controls, effective_daily_minutes=budget,
                       effective_max_age_rating=rating if rating is not None else 0,
                       curfews=[f"{start:%H:%M}-{end:%H:%M}" for start, end in minors.curfews(config, controls)])


def _check_link(services: Services, minor_id: str, guardian_id: str) -> None:
    """A guardian is another person, not a minor and in no one's care; a minor's account guards no
    one. 422 naming the rule otherwise: a minor acting as their own (or another minor's) guardian
    could see and set what only a responsible adult may."""
    if guardian_id == minor_id:
        raise HTTPException(422, detail="guardian_id: an account cannot be its own guardian")
    guardian = services.store.load_user(guardian_id)
    if minors.is_minor(guardian.age, guardian.minor_mode, services.settings.minors) or services.store.guardian(guardian_id):
        raise HTTPException(422, detail=f"guardian_id: {guardian_id!r} is a minor (by age, minors mode or a guardian's "
                                        "care) and cannot be a guardian")
    wards = services.store.minors_of(minor_id)
    if wards:
        raise HTTPException(422, detail=f"{minor_id!r} is the guardian of {', '.join(map(repr, wards[:3]))}; a guardian "
                                        "cannot be put in a guardian's care")


@router.put("/v1/admin/guardians/{minor_id}", response_model=ControlsOut)
def link_guardian(minor_id: AccountId, body: GuardianLinkIn, services: ServicesDep, operator: AdminDep) -> ControlsOut:
    """Link a guardian to a minor's account (an operator, after checking the relationship); the
    account is put in minors mode. A new guardian starts with no controls of their own; linking
    the guardian the minor already has keeps their controls."""
    _check_link(services, minor_id, body.guardian_id)
    now = services.clock()
    services.logstore.append("guardian_link", {"minor_id": minor_id, "guardian_id": body.guardian_id,
                                               "operator": operator, "at": now.isoformat()})
    services.store.link_guardian(minor_id, body.guardian_id, operator, now)
    services.store.put_settings(minor_id, now, None, True)
    return _controls_out(services, body.guardian_id, minor_id, services.gate.guardian_controls(minor_id) or minors.GuardianControls())


@router.get("/v1/guardians/{guardian_id}/minors/{minor_id}/controls", response_model=ControlsOut)
def get_controls(guardian_id: AccountId, minor_id: AccountId, services: ServicesDep, principal: PrincipalDep) -> ControlsOut:
    principal.require(guardian_id)
    return _controls_out(services, guardian_id, minor_id, _linked(services, guardian_id, minor_id))


@router.put("/v1/guardians/{guardian_id}/minors/{minor_id}/controls", response_model=ControlsOut)
def put_controls(guardian_id: AccountId, minor_id: AccountId, body: minors.GuardianControls, services: ServicesDep,
                 principal: PrincipalDep) -> ControlsOut:
    """Replace the guardian's controls (an absent field: the configured rule alone)."""
    principal.require(guardian_id)
    _linked(services, guardian_id, minor_id)
    if not minors.curfews_leave_time(services.settings.minors, body):
        raise HTTPException(422, detail="curfew_start, curfew_end: with the configured curfew this window leaves no time "
                                        "in the day; to stop use altogether set a small daily_minutes")
    now = services.clock()
    stored = body.model_dump(mode="json")
    services.logstore.append("guardian_controls", {"minor_id": minor_id, "guardian_id": guardian_id, "controls": stored,
                                                   "at": now.isoformat()})
    if not services.store.put_guardian_controls(minor_id, guardian_id, stored, now):
        raise HTTPException(404, detail=f"{minor_id!r} is not a minor in the care of {guardian_id!r}")
    return _controls_out(services, guardian_id, minor_id, body)


@router.get("/v1/guardians/{guardian_id}/minors/{minor_id}/usage", response_model=UsageOut)
def get_usage(guardian_id: AccountId, minor_id: AccountId, services: ServicesDep, principal: PrincipalDep) -> UsageOut:
    """The minor's usage of the last days (local days of the minors time zone)."""
    principal.require(guardian_id)
    controls = _linked(services, guardian_id, minor_id)
    config = services.settings.minors
    first = minors.local_day(services.clock(), config) - timedelta(days=SUMMARY_DAYS - 1)
    services.gate.usage.settle(minor_id)  # this worker's counts of the minor's last lists, written first
    days = [UsageDay(day=day, minutes_used=round(seconds / 60.0, 1)) for day, seconds in services.store.usage_days(minor_id, first)]
    return UsageOut(minor_id=minor_id, daily_limit_minutes=_controls_out(services, guardian_id, minor_id, controls).effective_daily_minutes,
                    days=days)
