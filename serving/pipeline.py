"""The server's request path: read the user's state, run the served path, remember the page.

    gate (serving/gate.py) ► hydrate: this session's pages, recent items, the user's events and
    the shared state's versions, read with the gate's read of the user in one statement
    (`list_read`, `ContentGate.admit_list_reading`, `StateStore.list_state`)
    ► ServedPath (served/path.py): sources ► filters ► ranker ► policy engine ► explanations
    ► serve, the one writer: a minor's usage at the budget's edge (before anything is released),
      the log record (before the response), the page, the metrics, a minor's usage otherwise (after)

Everything a user is shown is decided in `served.path.ServedPath`, the code the Art. 8 review and
the benchmarks run too; this module only adds what needs the state database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

import numpy as np

from compliance import minors, tags
from compliance.policy import PolicyConfig
from served.catalog import Catalog
from served.path import NON_PERSONALIZED, PERSONALIZED, Query, Recommendation, ServedPath, SharedState
from compliance.logstore import LogStore, new_request_id
from served.query import Audience, RecommendationRequest
from serving import metrics
from serving.gate import refusal
from serving.state.store import SHARED_STATE_VERSIONS, ListRead, RequestState, StateStore
from serving.usage import UsageCounter

__all__ = ["NON_PERSONALIZED", "PERSONALIZED", "Recommendation", "RecommendationPipeline", "RecommendationRequest",
           "SharedState"]


class RecommendationPipeline:
    """The served path with the server's state. Built once per worker from the loaded model."""

    def __init__(self, catalog: Catalog, store: StateStore, policy: PolicyConfig, minors_config: minors.MinorsConfig,
                 tag_policy: tags.TagPolicy, *, retrieval_candidates: int, popular_candidates: int,
                 recent_pages_excluded: int, shared_state_loader: Callable[[tuple[int, ...] | None], SharedState],
                 usage: UsageCounter | None = None,
                 model_healthy: bool = True,
                 policies: bool = True):
        self.catalog = catalog
        self.store = store
        self.usage = usage or UsageCounter(store, minors_config)
        self.recent_pages_excluded = recent_pages_excluded
        self._load_shared = shared_state_loader
        self.path = ServedPath(catalog, policy, minors_config, tag_policy, retrieval_candidates=retrieval_candidates,
                               popular_candidates=popular_candidates, policies=policies, model_healthy=model_healthy)

    @property
    def policy_hash(self) -> str:
        return self.path.policy_hash

    @property
    def index_build_id(self) -> str:
        return self.path.index_build_id

    def serve(self, request: RecommendationRequest, audience: Audience, request_id: str, logstore: LogStore,
              timings: Mapping[str, float] | None = None, state: RequestState | None = None) -> Recommendation:
        """The one place a served list is written: computed; a minor's activity counted toward the day's
        budget (`audience.charge`, serving/usage.py); logged before the response (Art. 28 (draft 24);
        `LogStoreUnavailable` refuses the request); remembered as a page of the session; counted in the
        metrics. At the budget's edge the activity is counted first, and only while the budget is not
        spent (else `AccessDenied`, logged: the list is never released); otherwise it is counted after
        the list is logged, by the worker's usage thread, without holding the response.
        `timings` are stages measured before this one (the gate's), for the stage metrics; `state`: the
        request's state already read with the gate's read (`list_read`), else hydrate reads it."""
        recommendation = self.run(request, audience, request_id, state)
        recommendation.trace.timings_ms = {**(timings or {}), **recommendation.trace.timings_ms}
        started = time.perf_counter()
        charge = audience.charge
        if charge is not None and charge.at_edge and not self.usage.charge_now(charge):
            raise refusal(logstore, charge.refusal, user_id=request.user_id, route="recommendations",
                          request_id=request_id, now=audience.now)
        logstore.append("recommendation", recommendation.log_record())
        self.record(recommendation, audience.now)
        if charge is not None and not charge.at_edge:
            self.usage.charge_later(charge)
        recommendation.trace.timings_ms["log"] = (time.perf_counter() - started) * 1e3
        for stage, ms in recommendation.trace.timings_ms.items():
            metrics.stage_seconds(stage).observe(ms / 1e3)
        metrics.RECOMMENDATIONS.labels(recommendation.surface, recommendation.mode).inc()
        for violation in recommendation.violations:
            metrics.VIOLATIONS.labels(violation["rule"]).inc()
        return recommendation

    def run(self, request: RecommendationRequest, audience: Audience, request_id: str | None = None,
            state: RequestState | None = None) -> Recommendation:
        """One list for `request`, for the `audience` the gate admitted (`state`: see `hydrate`)."""
        started = time.perf_counter()
        query, shared = self.hydrate(request, audience, request_id or new_request_id(), state)
        hydrate_ms = (time.perf_counter() - started) * 1e3
        recommendation = self.path.run(query, shared)
        recommendation.trace.timings_ms = {"hydrate": hydrate_ms, **recommendation.trace.timings_ms}
        return recommendation

    def list_read(self, request: RecommendationRequest) -> ListRead:
        """What hydrate reads for `request`, for the gate to read with the user in one round trip
        (`ContentGate.admit_list_reading`). The personal parts are read for every user the model
        knows, since whether the list is personal is only known once the gate has read the user;
        `hydrate` uses them only for a personal list."""
        return ListRead(surface=request.surface, session_id=request.session_id, page=request.page,
                        recent_pages=self.recent_pages_excluded,
                        personal=request.user_id in self.catalog.bundle.user_index,
                        version_names=SHARED_STATE_VERSIONS)

    def hydrate(self, request: RecommendationRequest, audience: Audience, request_id: str,
                state: RequestState | None = None) -> tuple[Query, SharedState]:
        """The query and the shared state, from ONE read of the state database: this session's
        earlier pages, for a user the model knows the items recently shown, the items of their
        stored events and those they engaged with in time order (the sequential source's
        recent history), and the versions of the shared state (reloaded only when they moved).
        `state`: that read, already made with the gate's (`list_read`); None: read here.
        Nothing is written here: the page is recorded by `serve` once the list is logged."""
        personal = (audience.personalization_allowed and audience.user.personalization
                    and audience.user.history_erased_at is None and request.user_id in self.catalog.bundle.user_index)
        if state is None:
            state = self.store.request_state(request.user_id, request.surface, session_id=request.session_id,
                                             page=request.page, recent_pages=self.recent_pages_excluded,
                                             personal=personal, version_names=SHARED_STATE_VERSIONS)
        shared = self._load_shared(state.versions)
        recent = known = engaged = None
        if personal:
            recent = np.asarray(state.recent_items, dtype=np.int64)
            index = self.catalog.bundle.item_index
            known = np.asarray([index[i] for i in state.event_items if i in index], dtype=np.int64)
            engaged = np.asarray([index[i] for i in state.engaged_items if i in index], dtype=np.int64)
        query = self.path.make_query(request, audience, request_id, session_id=state.session_id or uuid.uuid4().hex,
                                     earlier_pages=state.earlier_pages, recent=recent, known_items=known,
                                     engaged=engaged)
        return query, shared

    def record(self, recommendation: Recommendation, now: datetime) -> None:
        """Side effect: remember the page for session de-duplication and recent impressions."""
        item_idx = recommendation.item_rows
        category, content = self.catalog.category, self.catalog.content
        self.store.record_page(
            request_id=recommendation.request_id,
            user_id=recommendation.user_id,
            surface=recommendation.surface,
            session_id=recommendation.session_id,
            page=recommendation.page,
            items=item_idx,
            categories=category[item_idx].tolist(),
            contents=content[item_idx].tolist(),
            now=now,
        )

