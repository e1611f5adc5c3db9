"""Manual intervention (Art. 11, Art. 14 (draft 13)): pin, block or boost, each with a named operator account, a
reason and an expiry; every change stored, listable and logged with the account that made it.

Sensitive kinds (compliance/oversight.py; by default pins and blocks that reach the front screen)
are stored as proposals, "pending", and take effect only when a different account with the
approver role approves them. The console (serving/web/console.py) calls these same functions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compliance import oversight
from compliance.policy import Intervention
from serving.deps import AdminDep, OperatorDep, ReadAdminDep, ServicesDep
from serving.operators import Operator
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


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="why the approver approves or rejects")


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


InterventionId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _public(row: dict) -> dict:
    out = dict(row)
    for key in ("created_at", "expires_at", "revoked_at", "decided_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


@router.post("/login")
def login(body: LoginIn, services: ServicesDep) -> dict:
    """Exchange a named operator account's name and password for an operator token (a bearer
    token for the other admin endpoints, valid `console.session_hours`)."""
    operator = services.accounts.login(body.name, body.password)
    if operator is None:
        raise HTTPException(401, detail="name or password: no enabled operator account matches", headers={"WWW-Authenticate": "Bearer"})
    return {"token": services.accounts.issue_token(operator), "name": operator.name, "role": operator.role,
            "expires_in_seconds": int(services.settings.console.session_hours * 3600)}


@router.get("/whoami")
def whoami(operator: OperatorDep) -> dict:
    """The account the bearer token stands for, and its role."""
    return {"name": operator.name, "role": operator.role, "service_account": operator.service}


@router.post("/interventions", status_code=201)
def create_intervention(body: InterventionIn, services: ServicesDep, operator: AdminDep) -> dict:
    """Create an intervention; a sensitive one is stored as a pending proposal (see the module docstring)."""
    return propose(services, body, operator)


def propose(services, body: InterventionIn, operator: str) -> dict:
    """Validate against the running catalog, store (active, or pending when sensitive), log."""
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
    front = settings.policy.front_screen
    sensitive = oversight.requires_approval(body.kind, body.surface, 0, settings.oversight, front.surfaces, front.pages)
    values = body.to_intervention(operator).model_dump(include=STORED_FIELDS)
    values.update(created_at=now, expires_at=now + timedelta(seconds=body.ttl_seconds or 7 * 86400),
                  status=oversight.PENDING if sensitive else oversight.ACTIVE)
    row = services.store.add_intervention(values)
    action = "propose" if sensitive else "create"
    services.logstore.append("intervention", {"action": action, "operator": operator, "intervention": _public(row)})
    return _public(row)


@router.get("/interventions")
def list_interventions(
    services: ServicesDep, operator: ReadAdminDep, include_inactive: bool = False,
    status: Annotated[str | None, Query(pattern="^(active|pending|rejected)$")] = None,
) -> list[dict]:
    """Interventions in force and pending proposals (not revoked, not expired); `status` narrows."""
    rows = services.store.list_interventions(now=services.clock(), include_inactive=include_inactive)
    return [_public(r) for r in rows if status is None or r["status"] == status]


@router.post("/interventions/{intervention_id}/approve")
def approve_intervention(intervention_id: InterventionId, body: DecisionIn, services: ServicesDep, operator: OperatorDep) -> dict:
    """Approve another account's pending proposal (approver role; two-person rule): it takes effect from the next request."""
    return decide(services, intervention_id, operator, approve=True, reason=body.reason)


@router.post("/interventions/{intervention_id}/reject")
def reject_intervention(intervention_id: InterventionId, body: DecisionIn, services: ServicesDep, operator: OperatorDep) -> dict:
    """Reject a pending proposal (approver role): it never takes effect."""
    return decide(services, intervention_id, operator, approve=False, reason=body.reason)


def decide(services, intervention_id: int, operator: Operator, approve: bool, reason: str) -> dict:
    row = services.store.get_intervention(intervention_id)
    if row is None:
        raise HTTPException(404, detail=f"no intervention {intervention_id}")
    status = "revoked" if row["revoked_at"] is not None else row["status"]
    try:
        if approve and operator.service:
            # The admin token is shared by automation, not a person: whoever proposed under their own
            # name could approve with it, one person acting as two (Art. 7 accountability).
            raise oversight.OversightError(f"two-person rule: {operator.name!r} is the admin token's service account; "
                                           "a named approver must approve (POST /v1/admin/login)")
        if approve:
            oversight.check_approval(row["operator"], operator.name, operator.role, status)
        elif not oversight.may_approve(operator.role):
            raise oversight.OversightError(f"account {operator.name!r} has role {operator.role!r}: only an approver may reject")
        elif status != oversight.PENDING:
            raise oversight.OversightError(f"the intervention is {status}, not pending: nothing to reject")
    except oversight.OversightError as exc:
        raise HTTPException(409 if "not pending" in str(exc) else 403, detail=str(exc)) from None
    new_status = oversight.ACTIVE if approve else oversight.REJECTED
    decided = services.store.decide_intervention(intervention_id, new_status, operator.name, reason, services.clock())
    if decided is None:
        raise HTTPException(409, detail=f"intervention {intervention_id} was decided or revoked meanwhile; read it again")
    services.logstore.append("intervention", {"action": "approve" if approve else "reject", "operator": operator.name,
                                              "reason": reason, "intervention": _public(decided)})
    return _public(decided)


@router.delete("/interventions/{intervention_id}")
def revoke_intervention(intervention_id: InterventionId, services: ServicesDep, operator: AdminDep) -> dict:
    """Revoke an intervention (or withdraw a proposal)."""
    return revoke(services, intervention_id, operator)


def revoke(services, intervention_id: int, operator: str) -> dict:
    row = services.store.get_intervention(intervention_id)
    if row is None:
        raise HTTPException(404, detail=f"no intervention {intervention_id}")
    if row["revoked_at"] is not None:
        raise HTTPException(409, detail=f"intervention {intervention_id} was already revoked")
    row = services.store.revoke_intervention(intervention_id, operator, services.clock())
    services.logstore.append("intervention", {"action": "revoke", "operator": operator, "intervention": _public(row)})
    return _public(row)


@router.get("/logs/verify")
def verify_logs(services: ServicesDep, operator: ReadAdminDep) -> dict:
    """Check the hash chain and the signed segment seals of the recommendation log (Art. 28 (draft 24))."""
    return log_verification(services)


def log_verification(services) -> dict:
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
