"""What one worker holds: settings, state store, log store, the loaded model and its pipeline.

Built at startup by `build_services`. Startup fails with a one-line reason when the log
directory is unusable (serving unlogged lists is never an option, Art. 28 (draft 24)); a model that cannot
be loaded leaves the service up but not ready, so /healthz says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import numpy as np

from pydantic import ValidationError

from compliance.elderly import FRAUD_RISK
from compliance.feature_library import FeatureEntry, FeatureLibrary
from compliance.logstore import LogStore
from compliance.policy import Intervention
from serving import metrics
from served.catalog import Catalog
from serving.config import Settings
from serving.gate import ContentGate
from serving.operators import OperatorAccounts
from serving.pipeline import RecommendationPipeline, SharedState
from serving.state.db import make_engine
from serving.state.operators import OperatorStore
from serving.state.store import SHARED_STATE_VERSIONS, StateStore

log = logging.getLogger("recsys.serving")


def utc_now() -> datetime:
    return datetime.now(UTC)


TRENDING_CACHE_SECONDS = 30.0  # trending is a periodic computation: each worker keeps it this long


class TimedCache:
    """Values kept for `seconds` (monotonic clock) under a key; thread-safe."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.entries: dict[tuple, tuple[float, object]] = {}

    def get(self, key: tuple, compute: Callable[[], object]):
        now = time.monotonic()
        with self.lock:
            hit = self.entries.get(key)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        value = compute()
        with self.lock:
            self.entries = {k: v for k, v in self.entries.items() if now - v[0] < self.seconds}
            self.entries[key] = (now, value)
        return value


@dataclass
class Services:
    settings: Settings
    store: StateStore
    logstore: LogStore
    clock: Callable[[], datetime]
    gate: ContentGate
    accounts: OperatorAccounts | None = None  # named operators (serving/operators.py); built by build_services
    catalog: Catalog | None = None
    pipeline: RecommendationPipeline | None = None
    model_error: str | None = None
    compute: anyio.CapacityLimiter | None = field(default=None, repr=False)  # see Settings.compute_threads
    # Stored records that cannot be read (an older version's, or edited by hand): skipped, not served;
    # reported in /readyz, the `recsys_unreadable_records` metric and the log.
    unreadable: dict[str, str] = field(default_factory=dict)
    trending_cache: TimedCache = field(default_factory=lambda: TimedCache(TRENDING_CACHE_SECONDS), repr=False)
    _shared: SharedState | None = field(default=None, repr=False)
    _shared_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.compute is None:
            self.compute = anyio.CapacityLimiter(self.settings.compute_threads)

    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    def shared_state(self, versions: tuple[int, ...] | None = None) -> SharedState:
        """Interventions and blocked items, reloaded when another worker changed them. `versions`:
        the current versions of `SHARED_STATE_VERSIONS` when the caller has just read them (the
        request path reads them with the user's state, in one statement); else they are read here."""
        if versions is None:
            versions = self.store.versions(*SHARED_STATE_VERSIONS)
        shared = self._shared
        if shared is None or shared.versions != versions:
            with self._shared_lock:
                shared = self._shared
                if shared is None or shared.versions != versions:
                    shared = self._load_shared(versions)
                    self._shared = shared
        now = self.clock()
        active = [i for i in shared.interventions if i.is_active(now)]
        if len(active) != len(shared.interventions):
            return SharedState(active, self._blocked_mask(active, shared), shared.feature_match, shared.versions,
                               shared.fraud_risk)
        return shared

    def _load_shared(self, versions: tuple[int, int]) -> SharedState:
        unreadable: dict[str, str] = {}
        interventions = []
        for row in self.store.list_interventions():
            try:
                interventions.append(Intervention.model_validate(row))
            except ValidationError as exc:
                unreadable[f"intervention {row.get('id')}"] = one_line(exc)
        catalog = self.catalog
        match = None
        if catalog is not None:
            entries = []
            for raw in self.store.feature_entries():
                try:
                    entries.append(FeatureEntry.model_validate(raw))
                except (ValidationError, ValueError, TypeError) as exc:
                    name = raw.get("id") if isinstance(raw, dict) else None
                    unreadable[f"feature-library entry {name}"] = one_line(exc)
            if entries:
                library = FeatureLibrary(entries)
                match = library.match(
                    catalog.title_series(), catalog.bundle.item_factors, catalog.bundle.item_index,
                )
        for record, problem in unreadable.items():
            if record not in self.unreadable:
                log.error("skipping unreadable stored record %s: %s", record, problem)
        self.unreadable = unreadable
        metrics.UNREADABLE.set(len(unreadable))
        shared = SharedState(interventions, np.zeros(0, dtype=bool), match, versions)
        shared.blocked_items = self._blocked_mask(interventions, shared)
        if match is not None:
            shared.fraud_risk = match.flagged(FRAUD_RISK)  # excluded for users in elderly mode (Art. 19)
        return shared

    def _blocked_mask(self, interventions: list[Intervention], shared: SharedState) -> np.ndarray:
        catalog = self.catalog
        if catalog is None:
            return np.zeros(0, dtype=bool)
        blocked = catalog.flagged.copy()
        if shared.feature_match is not None:
            blocked |= shared.feature_match.blocked
        index = catalog.bundle.item_index
        for intervention in interventions:
            if intervention.kind == "block" and intervention.item_id is not None and str(intervention.item_id) in index:
                blocked[index[str(intervention.item_id)]] = True
        return blocked


def one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
    return " ".join(str(exc).split())


def build_services(settings: Settings, clock: Callable[[], datetime] | None = None, bundle_loader=None) -> Services:
    """Open the state database and the log store, then load the model (if it can be loaded)."""
    engine = make_engine(settings.database_url)
    store = StateStore(engine)
    logstore = LogStore(settings.logs)  # raises LogStoreUnavailable with the reason
    gate = ContentGate(store, logstore, settings.minors, settings.elderly)
    clock = clock or utc_now
    accounts = OperatorAccounts(OperatorStore(engine), settings.console, settings.admin_token.get_secret_value(), clock)
    services = Services(settings=settings, store=store, logstore=logstore, clock=clock, gate=gate, accounts=accounts)
    if bundle_loader is None:
        from recsys.registry import load_bundle as bundle_loader
    try:
        bundle, version = bundle_loader(settings.model_uri)
    except Exception as exc:  # the service stays up, not ready, and says why
        services.model_error = f"cannot load model {settings.model_uri}: {exc}"
        log.error(services.model_error)
        return services
    try:
        attach_model(services, bundle, str(version))
    except ValueError as exc:  # the policy and the model do not fit (e.g. a rule names a column the items lack)
        services.model_error = f"cannot serve model {settings.model_uri} with this policy: {exc}"
        log.error(services.model_error)
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
        usage=services.gate.usage,
    )
    services.model_error = None
