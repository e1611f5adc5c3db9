"""The filing draft (Art. 23 (draft 19), Art. 24 (draft 20)) of a loaded model under these settings: what `recsys filing` writes
and what the console's download packs, built by one function."""

from __future__ import annotations

from datetime import date

from compliance.filing import FilingInfo, build_filing
from compliance.policy import config_hash, describe
from recsys.config import core_settings


def filing_for_bundle(settings, bundle, version: str, audit_report: dict | None, today: date) -> dict:
    """The filing of `bundle` (its manifest's metrics, config and Art. 8 review unless an audit report
    is given) with the provider and policy of `settings`. FilingError names what is missing."""
    manifest = bundle.manifest
    if audit_report is None:
        audit_report = manifest.get("review")  # the Art. 8 review every training run performs
    model = {
        "registered_name": core_settings().model_name,
        "version": str(version),
        "run_id": manifest.get("run_id"),
        "metrics": _flat_numbers(manifest.get("metrics", {})),
        "params": manifest.get("config", {}),
        "feature_names": list(bundle.feature_names),
        "data": f"dataset {manifest.get('dataset')}: user-item interactions (ratings) and item metadata; no demographic attributes in ranking",
    }
    policy = {"config": settings.policy.model_dump(mode="json"), "hash": config_hash(settings.policy),
              "descriptions": {p.name: p.text for p in describe(settings.policy)}}
    provider = FilingInfo(provider_name=settings.provider_name, service_name=settings.service_name,
                          filing_number=None if settings.filing_number.startswith("DEV-") else settings.filing_number)
    return build_filing(provider, model, policy, audit_report, today)


def _flat_numbers(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Nested metric tables (split -> model -> metric) as flat `split.model.metric` numbers."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_numbers(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
