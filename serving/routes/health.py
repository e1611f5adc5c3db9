"""GET /healthz (model version and readiness), /readyz, and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving import metrics
from serving.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(services: ServicesDep) -> dict:
    pipeline = services.pipeline
    return {
        "status": "ok" if services.ready else "not_ready",
        "ready": services.ready,
        "model_uri": services.settings.model_uri,
        "model_version": services.catalog.model_version if services.catalog else None,
        "index_build_id": pipeline.index_build_id if pipeline else None,
        "policy_hash": pipeline.policy_hash if pipeline else None,
        "items": services.catalog.n_items if services.catalog else 0,
        "filing_number": services.settings.filing_number,
        "log_dir": str(services.settings.logs.dir),
        "error": services.model_error,
    }


@router.get("/readyz")
def readyz(services: ServicesDep, response: Response) -> dict:
    """Ready when the model is loaded. Stored records that cannot be read (skipped, never served)
    are listed under `unreadable_records`: they do not stop serving, but an operator must fix them."""
    if not services.ready:
        response.status_code = 503
    else:
        services.shared_state()  # re-reads the interventions and feature library when they changed
    return {"ready": services.ready, "error": services.model_error, "unreadable_records": dict(services.unreadable)}


@router.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
