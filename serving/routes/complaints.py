"""Complaints, reports and appeals (Art. 22 (draft 26)): accepted, tracked with due dates, resolved by staff."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from compliance import complaints
from serving.deps import AdminDep, PrincipalDep, ReadAdminDep, ServicesDep
from serving.routes.recommendations import ID_PATTERN
from serving.services import Services

router = APIRouter(tags=["complaints"])


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["resolved", "rejected"]
    resolution: str = Field(min_length=3, max_length=2000)


def _public(row: dict) -> dict:
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in row.items()}


def _transition(services: Services, complaint_id: str, new_status: str, operator: str, resolution: str | None = None) -> dict:
    row = services.store.get_complaint(complaint_id)
    if row is None:
        raise HTTPException(404, detail=f"no complaint {complaint_id!r}")
    try:
        complaints.transition(row["status"], new_status)
    except ValueError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    now = services.clock()
    values = {"status": new_status, "updated_at": now}
    if resolution is not None:
        values["resolution"] = resolution
    services.logstore.append("complaint", {"action": new_status, "operator": operator, "complaint_id": complaint_id,
                                           "resolution": resolution})
    updated = services.store.update_complaint(complaint_id, row["status"], values)
    if updated is None:
        raise HTTPException(409, detail=f"complaint {complaint_id!r} changed meanwhile; read it again")
    return _public(updated)


@router.post("/v1/complaints", status_code=201)
def file_complaint(body: complaints.ComplaintIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    """File a complaint, a report about content, or an appeal against a decision."""
    principal.require(body.user_id)
    now = services.clock()
    acknowledge_due, resolve_due = complaints.due_dates(now, services.settings.complaints)
    values = body.model_dump()
    values.update(status="received", created_at=now, updated_at=now, acknowledge_due=acknowledge_due, resolve_due=resolve_due)
    services.logstore.append("complaint", {"action": "received", **_public(values)})
    return _public(services.store.add_complaint(values))


@router.get("/v1/complaints/{complaint_id}")
def get_complaint(
    complaint_id: str,
    services: ServicesDep,
    user_id: Annotated[str, Query(min_length=1, max_length=128, pattern=ID_PATTERN)],
    principal: PrincipalDep,
) -> dict:
    """Status, due dates and resolution, for the user who filed it."""
    principal.require(user_id)
    row = services.store.get_complaint(complaint_id)
    if row is None or row["user_id"] != user_id:
        raise HTTPException(404, detail=f"no complaint {complaint_id!r} filed by user {user_id!r}")
    return _public(row)


@router.get("/v1/admin/complaints")
def list_complaints(services: ServicesDep, operator: ReadAdminDep,
                    status: Annotated[str | None, Query(pattern="^(received|acknowledged|resolved|rejected)$")] = None) -> list[dict]:
    return [_public(r) for r in services.store.list_complaints(status=status)]


@router.post("/v1/admin/complaints/{complaint_id}/acknowledge")
def acknowledge(complaint_id: str, services: ServicesDep, operator: AdminDep) -> dict:
    return _transition(services, complaint_id, "acknowledged", operator)


@router.post("/v1/admin/complaints/{complaint_id}/resolve")
def resolve(complaint_id: str, body: ResolutionIn, services: ServicesDep, operator: AdminDep) -> dict:
    return _transition(services, complaint_id, body.status, operator, body.resolution)
