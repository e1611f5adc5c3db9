"""Events, the trending list, and the feature library (Art. 9, Art. 11, Art. 14 (draft 13), Art. 18 (draft 16)).

- `POST /v1/events`: engagement in batches, idempotent by event id; minors' events count toward
  their daily usage.
- `GET /v1/trending`: the hot list from de-duplicated, fake-engagement-filtered events; manual
  changes (pins on surface "trending", blocks) are marked; minors get the minor-safe version. Each
  list names the logged snapshot it was served from (`recsys trending verify` recomputes it).
- `/v1/admin/features`: entries of the feature library; matching items are blocked on every
  surface from the next request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from compliance import explanations
from compliance.feature_library import FeatureEntry, FeatureLibrary, FeatureLibraryError, validate_entry
from compliance.trending_snapshot import SERVED_KIND, TrendingSnapshot, compose_hot_list
from serving.deps import AdminDep, PrincipalDep, ReadAdminDep, RequestIdDep, ServicesDep, is_admin
from serving.routes.recommendations import ID_PATTERN
from serving.services import TRENDING_CACHE_SECONDS, Services
from serving.trending import take_snapshot

router = APIRouter(tags=["content"])

MAX_EVENTS_PER_BATCH = 1000
MAX_EVENT_AGE = timedelta(days=30)
MAX_CLOCK_SKEW = timedelta(minutes=5)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    user_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    item_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    type: Literal["impression", "click", "like", "share"]
    ts: datetime

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must carry a time zone, e.g. 2026-03-02T10:00:00Z")
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


@router.post("/v1/events")
def post_events(batch: EventBatch, services: ServicesDep, request: Request) -> dict:
    """Store engagement events; a resent event_id is accepted but not counted twice. A user sends
    their own events; a backend forwarding many users' events uses the admin token."""
    if not is_admin(services, request.headers.get("authorization")):
        principal = request.app.state.authenticator.authenticate(request.headers)
        for event in batch.events:
            principal.require(event.user_id)
    now = services.clock()
    catalog = services.catalog
    for position, event in enumerate(batch.events):
        if catalog is not None and event.item_id not in catalog.bundle.item_index:
            raise HTTPException(422, detail=f"events.{position}.item_id: unknown item {event.item_id!r}")
        if event.ts > now + MAX_CLOCK_SKEW:
            raise HTTPException(422, detail=f"events.{position}.ts: in the future ({event.ts.isoformat()})")
        if event.ts < now - MAX_EVENT_AGE:
            raise HTTPException(422, detail=f"events.{position}.ts: older than {MAX_EVENT_AGE.days} days")
    rows = [{**e.model_dump(), "received_at": now} for e in batch.events]
    accepted = services.store.add_events(rows)
    _count_minor_usage(services, batch.events, now)
    return {"accepted": accepted, "duplicates": len(rows) - accepted}


def _count_minor_usage(services: Services, events: list[EventIn], now: datetime) -> None:
    """Minors' events are activity too (the usage rule in compliance/minors.py), counted at most at
    the server's clock `now` (`UsageCounter.record`)."""
    gate = services.gate
    for user_id in {e.user_id for e in events}:
        if gate.is_minor(services.store.load_user(user_id)):
            gate.record_activity(user_id, [e.ts for e in events if e.user_id == user_id], now)


@router.get("/v1/trending")
def trending(
    services: ServicesDep,
    request_id: RequestIdDep,
    user_id: Annotated[str, Query(min_length=1, max_length=128, pattern=ID_PATTERN)],
    principal: PrincipalDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict:
    """The hot list (Art. 11, Art. 14 (draft 13)): distinct users, time decay, fake engagement discounted."""
    principal.require(user_id)
    catalog = services.catalog
    if catalog is None:
        raise HTTPException(503, detail=f"not ready: {services.model_error or 'model not loaded'}")
    now = services.clock()
    audience = services.gate.admit(user_id, now, route="trending", request_id=request_id)
    shared = services.shared_state()
    config = services.settings.trending

    def compute() -> TrendingSnapshot:  # logged before any list is served from it
        return take_snapshot(services.store, services.logstore, catalog, shared, audience, config, now)

    active = tuple(i.id for i in shared.interventions)
    bucket = int(now.timestamp() // TRENDING_CACHE_SECONDS)
    # One snapshot per audience band: the minors' age band, and elderly mode (fraud-risk items out, Art. 19).
    snapshot = services.trending_cache.get((audience.max_age_rating, audience.elderly, shared.versions, active, bucket),
                                           compute)
    index = catalog.bundle.item_index
    items: list[dict] = []
    for position, item_id, top, pin in compose_hot_list(snapshot.ranked(), snapshot.pins, k):
        if pin is not None:
            entry = {"item_id": item_id, "slot": "pinned", "score": None, "distinct_users": None,
                     "reason": explanations.pinned(pin.reason)}
        else:
            entry = {"item_id": item_id, "slot": "trending", "score": round(top.score, 4),
                     "distinct_users": top.counted_users,
                     "reason": explanations.trending(top.counted_users, config.window_hours)}
        item = index[item_id]
        entry["position"] = position
        entry["category"] = catalog.category_of(item)
        entry["labels"] = explanations.content_labels(
            synthetic=bool(catalog.synthetic[item]), minor_safe=bool(catalog.minor_safe[item]), mainstream=bool(catalog.mainstream[item]))
        reason = entry["reason"]
        entry["reason"] = {"code": reason.code, "text": reason.text}
        items.append(entry)
    body = {"request_id": request_id, "user_id": user_id, "minor_mode": audience.minor, "as_of": snapshot.as_of.isoformat(),
            "window_hours": config.window_hours, "snapshot_id": snapshot.snapshot_id, "items": items,
            "manual_changes": [{"id": p.id, "item_id": p.item_id, "position": p.position, "operator": p.operator,
                                "reason": p.reason} for p in snapshot.manual_changes if p.kind == "pin"]}
    services.logstore.append(SERVED_KIND, body)  # every list served is logged (Art. 28 (draft 24)), naming its snapshot
    return body


# -- feature library (Art. 9) ------------------------------------------------------------------------
class FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["keyword", "regex", "exemplar"]
    pattern: str | None = Field(None, max_length=512)
    exemplar_item_id: str | None = Field(None, max_length=128)
    threshold: float = Field(0.95, gt=0, le=1)
    category: Literal["illegal", "harmful", "spam", "other", "fraud_risk"] = Field(
        description="fraud_risk: flagged as a fraud or scam risk, excluded for users in elderly mode (Art. 19); "
                    "the others block the matched items for everyone")
    source: str = Field("manual", min_length=1, max_length=128)
    note: str = Field("", max_length=2000)


@router.post("/v1/admin/features", status_code=201)
def add_feature(body: FeatureIn, services: ServicesDep, operator: AdminDep) -> dict:
    """Add an entry; items it matches are blocked on every surface from the next request."""
    now = services.clock()
    try:
        entry = FeatureEntry(**body.model_dump(), author=operator, created_at=now)
        library = FeatureLibrary([FeatureEntry.model_validate(e) for e in services.store.feature_entries()])
        catalog = services.catalog
        entry = validate_entry(entry, library=library, item_ids=catalog.bundle.item_index if catalog is not None else None)
    except (ValidationError, FeatureLibraryError, ValueError) as exc:
        raise HTTPException(422, detail=_one_line(exc)) from None
    record = entry.model_dump(mode="json")
    services.logstore.append("feature_library", {"action": "add", "operator": operator, "entry": record})
    services.store.add_feature_entry(entry.id, record, now)
    matched = _matches(services, entry)
    return {**record, "matched_items": matched}


def _matches(services: Services, entry: FeatureEntry) -> int:
    catalog = services.catalog
    if catalog is None:
        return 0
    result = FeatureLibrary([entry]).match(catalog.title_series(), catalog.bundle.item_factors, catalog.bundle.item_index)
    return int(np.count_nonzero(result.matched))


@router.get("/v1/admin/features")
def list_features(services: ServicesDep, operator: ReadAdminDep) -> list[dict]:
    return services.store.feature_entries()


@router.delete("/v1/admin/features/{entry_id}")
def remove_feature(entry_id: str, services: ServicesDep, operator: AdminDep) -> dict:
    if not any(e.get("id") == entry_id for e in services.store.feature_entries()):
        raise HTTPException(404, detail=f"no feature-library entry {entry_id!r}")
    services.logstore.append("feature_library", {"action": "remove", "operator": operator, "entry_id": entry_id})
    services.store.remove_feature_entry(entry_id, operator, services.clock())
    return {"id": entry_id, "removed": True}


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return " ".join(str(exc).split())
