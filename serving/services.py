"""What one worker holds: settings, state store, log store, the loaded model and its pipeline.

Built at startup by `build_services`. Startup fails with a one-line reason when the log
directory is unusable (serving unlogged lists is never an option, Art. 23); a model that cannot
be loaded leaves the service up but not ready, so /healthz says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import numpy as np

from compliance.feature_library import FeatureEntry, FeatureLibrary
from compliance.logstore import LogStore
from serving.catalog import Catalog
from serving.config import Settings
from serving.pipeline import RecommendationPipeline, SharedState
from serving.state.db import make_engine
from serving.state.store import StateStore

log = logging.getLogger("recsys.serving")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    store: StateStore
    logstore: LogStore
    clock: Callable[[], datetime]
    catalog: Catalog | None = None
    pipeline: RecommendationPipeline | None = None
    model_error: str | None = None
    compute: anyio.CapacityLimiter | None = field(default=None, repr=False)  # see Settings.compute_threads
    _shared: SharedState | None = field(default=None, repr=False)
    _shared_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.compute is None:
            self.compute = anyio.CapacityLimiter(self.settings.compute_threads)

    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    def shared_state(self) -> SharedState:
        """Interventions and blocked items, reloaded when another worker changed them."""
        versions = self.store.versions("interventions", "features")
        shared = self._shared
        if shared is None or shared.versions != versions:
            with self._shared_lock:
                shared = self._shared
                if shared is None or shared.versions != versions:
                    shared = self._load_shared(versions)
                    self._shared = shared
        now = self.clock()
        active = [i for i in shared.interventions if i["expires_at"] is None or _aware(i["expires_at"]) > now]
        if len(active) != len(shared.interventions):
            return SharedState(active, self._blocked_mask(active, shared), shared.feature_match, shared.versions)
        return shared

    def _load_shared(self, versions: tuple[int, int]) -> SharedState:
        interventions = self.store.list_interventions()
        catalog = self.catalog
        match = None
        if catalog is not None:
            entries = [FeatureEntry.model_validate(e) for e in self.store.feature_entries()]
            if entries:
                library = FeatureLibrary(entries)
                match = library.match(
                    catalog.titles.tolist(), catalog.bundle.item_factors, [str(i) for i in catalog.bundle.item_ids],
                )
        shared = SharedState(interventions, np.zeros(0, dtype=bool), match, versions)
        shared.blocked_items = self._blocked_mask(interventions, shared)
        return shared

    def _blocked_mask(self, interventions: list[dict], shared: SharedState) -> np.ndarray:
        catalog = self.catalog
        if catalog is None:
            return np.zeros(0, dtype=bool)
        blocked = catalog.flagged.copy()
        if shared.feature_match is not None:
            blocked |= shared.feature_match.blocked
        index = catalog.bundle.item_index
        for intervention in interventions:
            if intervention["kind"] == "block" and intervention["item_id"] in index:
                blocked[index[intervention["item_id"]]] = True
        return blocked


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_services(settings: Settings, clock: Callable[[], datetime] | None = None, bundle_loader=None) -> Services:
    """Open the state database and the log store, then load the model (if it can be loaded)."""
    engine = make_engine(settings.database_url)
    store = StateStore(engine)
    logstore = LogStore(settings.logs)  # raises LogStoreUnavailable with the reason
    services = Services(settings=settings, store=store, logstore=logstore, clock=clock or utc_now)
    if bundle_loader is None:
        from training.registry import load_bundle as bundle_loader
    try:
        bundle, version = bundle_loader(settings.model_uri)
    except Exception as exc:  # the service stays up, not ready, and says why
        services.model_error = f"cannot load model {settings.model_uri}: {exc}"
        log.error(services.model_error)
        return services
    attach_model(services, bundle, str(version))
    return services


def attach_model(services: Services, bundle, version: str) -> None:
    settings = services.settings
    catalog = Catalog.from_bundle(bundle, version)
    users = getattr(bundle, "users", None)
    if users is not None and users.height:
        created = datetime(2020, 1, 1, tzinfo=UTC)  # dataset users predate the service
        source = (getattr(bundle, "manifest", None) or {}).get("dataset", {}).get("fingerprint") or f"model-{version}"
        services.store.seed_profiles(
            [{"user_id": u, "age": a, "created_at": created} for u, a in zip(users["user_id"].to_list(), users["age"].to_list())],
            source,
        )
    services.catalog = catalog
    services._shared = None
    services.pipeline = RecommendationPipeline(
        catalog,
        services.store,
        settings.policy,
        settings.minors,
        settings.tags,
        retrieval_candidates=settings.retrieval_candidates,
        popular_candidates=settings.popular_candidates,
        recent_pages_excluded=settings.recent_pages_excluded,
        shared_state_loader=services.shared_state,
    )
    services.model_error = None
