"""POST /v1/recommendations and GET /v1/recommendations/{request_id} (Art. 11, Art. 12, Art. 17 (draft 15), Art. 28 (draft 24))."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from compliance.logstore import request_id_time
from recsys.bundle import single_thread_inference
from serving.deps import ListCallDep, PrincipalDep, RequestIdDep, ServicesDep
from serving.pipeline import Recommendation, RecommendationRequest

router = APIRouter(prefix="/v1", tags=["recommendations"])

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]+$"


class RecommendationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    surface: str = Field("home", description="home | feed | related | trending (configurable)")
    page: int = Field(0, ge=0, description="0 is the front screen of a surface")
    k: int = Field(10, ge=1, description="list length, 1..max_k (100 by default)")
    session_id: str | None = Field(None, max_length=64, pattern=ID_PATTERN,
                                   description="returned by page 0; pass it for the next pages of the same session")


class ReasonOut(BaseModel):
    code: str
    text: str


class ItemOut(BaseModel):
    item_id: str
    position: int
    score: float
    category: str
    slot: str = Field(description="personalized | mainstream | pinned | popular")
    labels: list[str]
    reason: ReasonOut


class ViolationOut(BaseModel):
    rule: str
    position: int | None
    reason: str


class RestReminderOut(BaseModel):
    continuous_minutes: float
    message: str


class RecommendationOut(BaseModel):
    request_id: str
    user_id: str
    surface: str
    page: int
    session_id: str
    mode: str = Field(description="personalized | non_personalized")
    mode_reason: str
    minor_mode: bool
    model_version: str
    index_build_id: str
    policy_hash: str
    filing_number: str
    items: list[ItemOut]
    violations: list[ViolationOut]
    policies: list[str]
    served_at: datetime
    rest_reminder: RestReminderOut | None = Field(
        None, description="minors mode: continuous use reached the configured minutes (30); show it (also X-Rest-Reminder)")


class RefusalOut(BaseModel):
    detail: str
    code: str
    retry_after_seconds: int | None = None


def _check_limits(body: RecommendationIn, services) -> None:
    settings = services.settings
    if body.surface not in settings.surfaces:
        raise HTTPException(422, detail=f"surface: unknown {body.surface!r}; allowed: {', '.join(settings.surfaces)}")
    if body.k > settings.max_k:
        raise HTTPException(422, detail=f"k: must be in 1..{settings.max_k}, got {body.k}")
    if body.page > settings.max_page:
        raise HTTPException(422, detail=f"page: must be in 0..{settings.max_page}, got {body.page}")


@router.post("/recommendations", response_model=RecommendationOut, responses={403: {"model": RefusalOut}, 503: {}})
async def recommend(body: RecommendationIn, call: ListCallDep):
    """A list for one user and surface, after the policy pipeline, with a reason per item; logged before it is sent."""
    call.principal.require(body.user_id)
    services = call.services
    _check_limits(body, services)
    # The work runs in a thread, at most `compute_threads` requests of this worker at a time.
    out = await anyio.to_thread.run_sync(serve_list, body, services, call.pipeline, call.request_id, limiter=services.compute)
    # `out` was validated when it was built: sent as its JSON, not validated again by FastAPI
    # against the response model (which still documents the body).
    headers = {}
    if out.rest_reminder is not None:
        headers["X-Rest-Reminder"] = f"continuous-minutes={out.rest_reminder.continuous_minutes:g}"
    return Response(out.model_dump_json(), media_type="application/json", headers=headers)


def serve_list(body: RecommendationIn, services, pipeline, request_id: str) -> RecommendationOut:
    """The blocking part of the route: the gate, then the pipeline's one write path (serve)."""
    single_thread_inference()
    started = time.perf_counter()
    request = RecommendationRequest(body.user_id, body.surface, body.page, body.k, body.session_id)
    # one read of the state database: the gate's (the user) and hydrate's (the request's state)
    audience, state = services.gate.admit_list_reading(body.user_id, services.clock(), pipeline.list_read(request),
                                                       route="recommendations", request_id=request_id)
    gate_ms = (time.perf_counter() - started) * 1e3
    rec = pipeline.serve(request, audience, request_id, services.logstore, timings={"gate": gate_ms}, state=state)
    out = recommendation_out(rec, services.settings.filing_number)
    if audience.usage.rest_reminder:
        minutes = audience.usage.continuous_minutes or 0.0
        out.rest_reminder = RestReminderOut(
            continuous_minutes=minutes,
            message=f"You have been here for {minutes:.0f} minutes without a break: time for a rest. "
                    f"你已连续使用 {minutes:.0f} 分钟，请休息一下。")
    return out


def recommendation_out(rec: Recommendation, filing_number: str) -> RecommendationOut:
    """The response: the served list as it was logged."""
    return RecommendationOut(
        request_id=rec.request_id,
        user_id=rec.user_id,
        surface=rec.surface,
        page=rec.page,
        session_id=rec.session_id,
        mode=rec.mode,
        mode_reason=rec.mode_reason,
        minor_mode=rec.minor,
        model_version=rec.model_version,
        index_build_id=rec.index_build_id,
        policy_hash=rec.policy_hash,
        filing_number=filing_number,
        items=[ItemOut(item_id=i.item_id, position=i.position, score=i.score, category=i.category, slot=i.slot,
                       labels=i.labels, reason=ReasonOut(code=i.reason.code, text=i.reason.text)) for i in rec.items],
        violations=[ViolationOut(**v) for v in rec.violations],
        policies=rec.policies,
        served_at=rec.served_at,
    )


REQUEST_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"


@router.get("/recommendations/{request_id}", responses={403: {"model": RefusalOut}, 404: {}})
def served_list(
    request_id: Annotated[str, Path(max_length=36, pattern=REQUEST_ID_PATTERN,
                                    description="the request_id of a served list (a UUIDv7)")],
    services: ServicesDep,
    user_id: Annotated[str, Query(min_length=1, max_length=128, pattern=ID_PATTERN, description="the user the list was served to")],
    current: RequestIdDep,
    principal: PrincipalDep,
):
    """The logged list (same items, same order, same reasons) for the user it was served to (Art. 17 (draft 15))."""
    principal.require(user_id)
    try:
        request_id_time(request_id)
    except ValueError:
        raise HTTPException(404, detail=f"no list {request_id!r} was served to user {user_id!r}") from None
    services.gate.admit(user_id, services.clock(), route="recommendations/lookup", request_id=current)
    record = services.logstore.lookup(request_id, user_id)
    if record is None:
        raise HTTPException(404, detail=f"no list {request_id!r} was served to user {user_id!r}")
    return {key: record.get(key) for key in (
        "request_id", "user_id", "surface", "page", "session_id", "mode", "mode_reason", "model_version",
        "index_build_id", "policy_hash", "served_at", "items", "violations", "policies",
    )}
