"""Manual intervention (Art. 11, 13): pin, block or boost, each with an operator, a reason and
an expiry; bearer-token protected; every change stored, listable and logged."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compliance.policy import Intervention
from serving.deps import AdminDep, ServicesDep
from serving.services import one_line

router = APIRouter(prefix="/v1/admin", tags=["admin"])

MAX_TTL_DAYS = 365
STORED_FIELDS = {"kind", "surface", "item_id", "category", "position", "factor", "operator", "reason"}


class InterventionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["pin", "block", "boost"]
    surface: str | None = Field(None, description="None applies to every surface (block, boost)")
    item_id: str | None = Field(None, max_length=128)
    category: str | None = Field(None, max_length=128)
    position: int | None = Field(None, ge=1, description="1-based position on the first page (page 0) of the surface")
    factor: float | None = Field(None, gt=0, le=10, description="score multiplier for a boost")
    reason: str = Field(min_length=3, max_length=500)
    ttl_seconds: int | None = Field(None, ge=60, le=MAX_TTL_DAYS * 86400, description="expiry; default 7 days")

    def to_intervention(self, operator: str) -> Intervention:
        """The stored shape, validated by the same model serving reads it with (compliance.policy)."""
        return Intervention(kind=self.kind, surface=self.surface, item_id=self.item_id, category=self.category,
                            position=self.position, factor=self.factor, operator=operator, reason=self.reason)

    @model_validator(mode="after")
    def _same_rules_as_serving(self) -> InterventionIn:
        if self.kind == "pin" and self.surface is None:
            # the API's own rule: serving would read a pin without a surface as one for every surface
            raise ValueError("a pin needs item_id, surface and position")
        try:
            self.to_intervention("validation")
        except ValidationError as exc:
            raise ValueError(one_line(exc)) from None
        return self


def _public(row: dict) -> dict:
    out = dict(row)
    for key in ("created_at", "expires_at", "revoked_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


@router.post("/interventions", status_code=201)
def create_intervention(body: InterventionIn, services: ServicesDep, operator: AdminDep) -> dict:
    settings = services.settings
    catalog = services.catalog
    if body.surface is not None and body.surface not in settings.surfaces:
        raise HTTPException(422, detail=f"surface: unknown {body.surface!r}; allowed: {', '.join(settings.surfaces)}")
    if body.position is not None and body.position > settings.max_k:
        raise HTTPException(422, detail=f"position: must be in 1..{settings.max_k}")
    if catalog is not None:
        if body.item_id is not None and body.item_id not in catalog.bundle.item_index:
            raise HTTPException(404, detail=f"item_id: unknown item {body.item_id!r}")
        if body.category is not None and body.category not in catalog.category_names:
            raise HTTPException(404, detail=f"category: unknown category {body.category!r}")
    now = services.clock()
    values = body.to_intervention(operator).model_dump(include=STORED_FIELDS)
    values.update(created_at=now, expires_at=now + timedelta(seconds=body.ttl_seconds or 7 * 86400))
    row = services.store.add_intervention(values)
    services.logstore.append("intervention", {"action": "create", "operator": operator, "intervention": _public(row)})
    return _public(row)


@router.get("/interventions")
def list_interventions(services: ServicesDep, operator: AdminDep, include_inactive: bool = False) -> list[dict]:
    now = services.clock()
    return [_public(r) for r in services.store.list_interventions(now=now, include_inactive=include_inactive)]


@router.delete("/interventions/{intervention_id}")
def revoke_intervention(intervention_id: Annotated[int, Path(ge=1, le=2**63 - 1)], services: ServicesDep, operator: AdminDep) -> dict:
    row = services.store.get_intervention(intervention_id)
    if row is None:
        raise HTTPException(404, detail=f"no intervention {intervention_id}")
    if row["revoked_at"] is not None:
        raise HTTPException(409, detail=f"intervention {intervention_id} was already revoked")
    row = services.store.revoke_intervention(intervention_id, operator, services.clock())
    services.logstore.append("intervention", {"action": "revoke", "operator": operator, "intervention": _public(row)})
    return _public(row)




@router.get("/logs/verify")
def verify_logs(services: ServicesDep, operator: AdminDep) -> dict:
    """Check the hash chain and the signed segment seals of the recommendation log (Art. 23)."""
    from compliance.logstore import verify

    report = verify(services.settings.logs.dir, services.settings.logs.hmac_key)
    first = report.first
    return {
        "ok": report.ok,
        "records": report.records,
        "segments": report.segments,
        "streams": report.streams,
        "first_bad": None if first is None else {"segment": first.segment, "line": first.line, "seq": first.seq, "reason": first.reason},
        "summary": report.summary,
    }
