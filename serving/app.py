"""The FastAPI application: `create_app()` builds it; `recsys serve` runs it under uvicorn.

Routes are grouped by resource in serving/routes/. Every response carries X-Request-ID and the
algorithm filing number header; every list served is logged before the response is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from compliance.logstore import LogStoreUnavailable
from serving.auth import Authenticator
from serving.config import Settings
from serving.gate import AccessDenied
from serving.middleware import ServiceHeadersMiddleware
from serving.routes import ROUTERS
from serving.services import Services, build_services
from serving import web

log = logging.getLogger("recsys.serving")


def create_app(
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
    bundle_loader=None,
    services: Services | None = None,
) -> FastAPI:
    """Build the app. `clock` and `bundle_loader` are injectable for tests (a moved clock, a model)."""
    settings = settings or Settings()
    authenticator = Authenticator(settings.auth)  # ValueError naming the setting when incomplete
    if settings.auth.mode == "development":
        log.warning("auth mode 'development': user ids are trusted as sent; never deploy this mode")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = services or build_services(settings, clock=clock, bundle_loader=bundle_loader)
        try:
            yield
        finally:
            app.state.services.gate.usage.close()  # minors' usage counted after responses: written before exit
            app.state.services.logstore.close()

    app = FastAPI(
        title=settings.service_name,
        version="0.1.0",
        description=(
            "Two-stage recommendations (Faiss retrieval, PyTorch ranker) with the algorithmic-recommendation "
            f"provisions built into the request path. Algorithm filing number: {settings.filing_number}."
        ),
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator
    app.add_middleware(ServiceHeadersMiddleware, filing_number=settings.filing_number, max_body_bytes=settings.max_body_bytes)
    for router in ROUTERS + web.ROUTERS:  # the JSON API, then the pages (/console, /me) over the same functions
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")

    document_errors(app)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": jsonable_errors(exc)})

    @app.exception_handler(AccessDenied)
    async def access_denied(request: Request, exc: AccessDenied) -> JSONResponse:
        decision = exc.decision  # logged and counted by the gate
        return JSONResponse(status_code=403, content={
            "detail": decision.message, "code": decision.code, "retry_after_seconds": decision.retry_after_seconds,
        })

    @app.exception_handler(LogStoreUnavailable)
    async def log_unavailable(request: Request, exc: LogStoreUnavailable) -> JSONResponse:
        log.error("refusing to serve: %s", exc)
        return JSONResponse(status_code=503, content={"detail": f"recommendation log unavailable, refusing to serve unlogged lists: {exc}"})

    return app


ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "what is wrong, naming the field"},
        "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array", "items": {"type": "string"}}, "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
}


def document_errors(app: FastAPI) -> None:
    """The OpenAPI schema documents the 422 body this app sends (`{"detail": "...", "errors": [...]}`),
    not FastAPI's default list-shaped one, so clients and the API fuzzer can rely on it."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
