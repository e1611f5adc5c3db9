"""FastAPI dependencies: the worker's services, the admin operator, the ready pipeline.

All are `async def`: they only read the request, and FastAPI runs a plain `def` dependency in
its thread pool, one thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from serving.auth import Principal
from serving.pipeline import RecommendationPipeline
from serving.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_pipeline(services: ServicesDep) -> RecommendationPipeline:
    if services.pipeline is None:
        raise HTTPException(503, detail=f"not ready: {services.model_error or 'model not loaded'}")
    return services.pipeline


PipelineDep = Annotated[RecommendationPipeline, Depends(get_pipeline)]


async def require_admin(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description="Bearer token of an operator")] = None,
    x_operator: Annotated[str | None, Header(description="Name of the operator acting")] = None,
) -> str:
    """Admin endpoints (manual intervention, complaint handling) need the bearer token."""
    if not is_admin(services, authorization):
        raise HTTPException(401, detail="admin endpoints need 'Authorization: Bearer <admin token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return (x_operator or "admin")[:128]


AdminDep = Annotated[str, Depends(require_admin)]


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
