"""FastAPI dependencies: the worker's services, the admin operator, the ready pipeline.

All are `async def`: they only read the request, and FastAPI runs a plain `def` dependency in
its thread pool, one thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from compliance.oversight import may_change
from serving.auth import Principal
from serving.operators import Operator
from serving.pipeline import RecommendationPipeline
from serving.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_pipeline(services: ServicesDep) -> RecommendationPipeline:
    if services.pipeline is None:
        raise HTTPException(503, detail=f"not ready: {services.model_error or 'model not loaded'}")
    return services.pipeline


def get_operator(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description="Bearer: the admin token (service account) or an operator token")] = None,
) -> Operator:
    """The named account making an admin request (serving/operators.py); 401 when there is none.
    A plain `def`: it reads the account from the database (FastAPI runs it in the thread pool)."""
    operator = services.accounts.from_authorization(authorization)
    if operator is None:
        raise HTTPException(401, detail="admin endpoints need 'Authorization: Bearer <admin token or operator token>' "
                                        "(an operator token comes from POST /v1/admin/login)",
                            headers={"WWW-Authenticate": "Bearer"})
    return operator


OperatorDep = Annotated[Operator, Depends(get_operator)]


def require_admin(operator: OperatorDep) -> str:
    """Admin endpoints that change state: an operator or approver account; its name is what is recorded."""
    if not may_change(operator.role):
        raise HTTPException(403, detail=f"account {operator.name!r} has role {operator.role!r}, which reads only")
    return operator.name


AdminDep = Annotated[str, Depends(require_admin)]


def read_admin(operator: OperatorDep) -> str:
    """Admin endpoints that only read: any role, auditors included."""
    return operator.name


ReadAdminDep = Annotated[str, Depends(read_admin)]


def is_admin(services: Services, authorization: str | None) -> bool:
    """Whether `authorization` carries the admin bearer token."""
    expected = services.settings.admin_token.get_secret_value()
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


async def get_principal(request: Request) -> Principal:
    """The authenticated caller of a user route (serving/auth.py); 401 when not authenticated."""
    return request.app.state.authenticator.authenticate(request.headers)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]


@dataclass(frozen=True, slots=True)
class ListCall:
    """What the list route needs from the app and the request: the worker's services, the ready
    pipeline, the request id and the authenticated caller."""

    services: Services
    pipeline: RecommendationPipeline
    request_id: str
    principal: Principal


async def list_call(request: Request) -> ListCall:
    """The list route's four needs in ONE dependency, checked in the order four separate ones had:
    503 when the model is not ready, then 401 when the caller is not authenticated. The route is the
    hot path and FastAPI spends ~10 us of CPU per dependency per request (benchmarks/dependency_cost.py)."""
    services = request.app.state.services
    pipeline = await get_pipeline(services)
    principal = request.app.state.authenticator.authenticate(request.headers)
    return ListCall(services, pipeline, request.scope["state"]["request_id"], principal)


ListCallDep = Annotated[ListCall, Depends(list_call)]
