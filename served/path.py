"""The served path: one implementation of what a user is shown, for the server, the Art. 8 review
and the benchmarks alike.

    query (mode, history, seen, profile) ► candidate sources ► filters ► scorer ► policy engine ► explanations

Personalized candidates come from two retrieval sources when the model carries both: Faiss over
the ALS vectors (the user's taste as a whole) and Faiss over the sequence model's item embeddings,
queried with the user's sequence (stored positives, then their engagement events, oldest first:
what they engaged with lately). The ranker sees both sources' scores and which source found an item.

`ServedPath.run(query, shared)` is pure: it reads the catalog, the query and the admin-edited
shared state (interventions, blocked items), and returns a `Recommendation`; it never touches a
database or a log. The server builds the query from its state store (serving/pipeline.py), the
review from a user's history (training/review.py), both through `ServedPath.make_query`, so the
lists the review judges are the lists the server would serve. Stages hold numpy arrays; every
filter reports what it removed and why (`Trace.dropped`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property, lru_cache, partial
from typing import Any

import numpy as np

from compliance import elderly, explanations, minors, tags
from compliance.feature_library import LibraryMatch
from compliance.policy import ITEM_DEDUP, Intervention, PolicyConfig, build_rules, config_hash
from recsys.pipeline.candidates import CandidateSet, Source, merge_sources
from recsys.pipeline.rerank import select
from recsys.pipeline.rules import Rule, UniqueItems
from recsys.pipeline.slate import Slate, SlateContext
from recsys.ranking.features import NO_CATEGORY
from served.catalog import Catalog
from served.feedback import NO_FEEDBACK, FeedbackSignals
from served.query import Audience, RecommendationRequest, ServedPage

log = logging.getLogger("recsys.served")

PERSONALIZED = "personalized"
NON_PERSONALIZED = "non_personalized"
# The server's defaults (serving/config.py reads them): Faiss top-N before the filters, and the
# size of the non-personalized popularity and editorial sources.
RETRIEVAL_CANDIDATES = 200
POPULAR_CANDIDATES = 300
Array = np.ndarray  # numpy arrays of the stages: item indices, scores, sources (int8)
RuleSet = tuple[list[Rule], tuple[str, ...]]  # the engine's rules and relaxation order for one list
STORED_TAGS_CACHED = 50_000  # users whose derived tags a worker keeps (a few hundred bytes each)
RULE_SETS_CACHED = 256  # (surface, page, active interventions) rule sets a worker keeps

@dataclass
class Query:
    """The hydrated request: who asks, in which mode, and what this session already showed."""

    request: RecommendationRequest
    request_id: str
    now: datetime
    audience: Audience  # admitted by the gate: minors' band, consent
    mode: str
    mode_reason: str
    session_id: str
    earlier_pages: list[ServedPage]
    history: np.ndarray  # effective history (suppressed tag categories removed), personalized only
    seen: np.ndarray  # every item the user interacted with (any rating, any event type), personalized only
    user_vector: np.ndarray | None
    profile: tags.Profile | None
    recent: np.ndarray  # items shown in the user's last N pages (personalized only)
    feedback: FeedbackSignals = NO_FEEDBACK  # the user's "not interested" / "fewer like this" (every mode)
    sequence_query: np.ndarray | None = None  # the sequential source's query for the user's sequence (personalized only)

    @cached_property
    def served_items(self) -> np.ndarray:
        """Items of the earlier pages of this session (never shown again in it)."""
        return np.fromiter((i for p in self.earlier_pages for i in p.items), dtype=np.int64)

    @cached_property
    def served_contents(self) -> np.ndarray:
        return np.fromiter((c for p in self.earlier_pages for c in p.contents), dtype=np.int64)


@dataclass
class Trace:
    """What each stage did: timings, candidate counts per source, drops per reason."""

    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    blocked_by_feature: dict[str, int] = field(default_factory=dict)
    retrieved: dict[str, np.ndarray] = field(default_factory=dict)  # items a retrieval source found (ranker features)


@dataclass
class ServedItem:
    item_id: str
    position: int
    score: float
    category: str
    slot: str
    labels: list[str]
    reason: explanations.Reason


@dataclass
class Recommendation:
    """One served list: the one shape the route answers with and the log records."""

    request_id: str
    user_id: str
    surface: str
    page: int
    session_id: str
    mode: str
    mode_reason: str
    minor: bool
    model_version: str
    index_build_id: str
    policy_hash: str
    items: list[ServedItem]
    violations: list[dict[str, Any]]
    policies: list[str]
    trace: Trace
    request: RecommendationRequest
    served_at: datetime
    item_rows: list[int]  # the catalog rows of `items`, in order (the page recorded)

    def log_record(self) -> dict[str, Any]:
        """The Art. 28 (draft 24) log record of this list: enough to explain and reproduce it."""
        request = self.request
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "surface": self.surface,
            "page": self.page,
            "session_id": self.session_id,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "minor_mode": self.minor,
            "model_version": self.model_version,
            "index_build_id": self.index_build_id,
            "policy_hash": self.policy_hash,
            "served_at": self.served_at.isoformat(),
            "candidates": self.trace.candidates,
            "dropped": {stage: dict(reasons) for stage, reasons in self.trace.dropped.items()},
            "feature_library_hits": self.trace.blocked_by_feature,
            "items": [
                {"item_id": i.item_id, "position": i.position, "slot": i.slot, "score": i.score, "category": i.category,
                 "labels": i.labels, "reason": {"code": i.reason.code, "text": i.reason.text}}
                for i in self.items
            ],
            "policies": self.policies,
            "violations": self.violations,
            "request": {"user_id": request.user_id, "surface": request.surface, "page": request.page, "k": request.k,
                        "session_id": request.session_id},
        }


@dataclass
class SharedState:
    """Admin-edited state every worker keeps a copy of, reloaded when its version moves."""

    interventions: list[Intervention]  # readable, not revoked, not expired
    blocked_items: np.ndarray  # bool mask: block interventions + feature-library matches + flagged
    feature_match: LibraryMatch | None
    versions: tuple[int, int]
    fraud_risk: np.ndarray | None = None  # bool mask: feature-library fraud-risk items (elderly mode, Art. 19)


class ServedPath:
    """Assembles one list for one query. Built once per worker (or per review) from the loaded model.

    `policies=False` keeps only item uniqueness (the benchmarks' "policies off" configuration)."""

    def __init__(self, catalog: Catalog, policy: PolicyConfig, minors_config: minors.MinorsConfig,
                 tag_policy: tags.TagPolicy, *, retrieval_candidates: int, popular_candidates: int,
                 policies: bool = True, model_healthy: bool = True):
        self.catalog = catalog
        self.policy = policy
        self.policies = policies
        self.policy_hash = config_hash(policy) if policies else "policies-off"
        self.minors_config = minors_config
        self.tag_policy = tag_policy
        self.retrieval_candidates = retrieval_candidates
        self.popular_candidates = popular_candidates
        self.model_healthy = model_healthy
        bundle = catalog.bundle
        self.index_build_id = bundle.index.build_id
        # The non-personalized sources per age band (None: adults), so a minor's are full-length.
        bands = {None, *(band.max_rating for band in minors_config.rating_bands)}
        self._popular = {r: self._rated(catalog.popular_order, r)[:popular_candidates] for r in bands}
        self._mainstream = {r: self._rated(catalog.mainstream_order, r)[:popular_candidates] for r in bands}
        self._category_code = {name: code for code, name in enumerate(catalog.category_names)}
        item_ids, categories = bundle.item_ids, catalog.category_names
        self._labels: dict[str, Callable[[int], str]] = {"item": lambda i: str(item_ids[i]),
                                                          "category": lambda c: categories[c]}
        # Item attributes the policy's declared rules name (a creator, a series...): coded once.
        self._extra = {name: catalog.attribute_codes(name) for name in policy.extra_attributes}
        for name in self._extra:
            self._labels[name] = partial(catalog.attribute_label, name)
        # Per-worker caches of what does not change between requests: a user's tags derived from
        # their stored history (the model's, fixed while it is loaded), and the policy's rules for
        # one surface, page and set of active interventions (rules are frozen values).
        self._stored_tags = lru_cache(maxsize=STORED_TAGS_CACHED)(self._derive_stored_tags)
        self._stored_sequence_query = lru_cache(maxsize=STORED_TAGS_CACHED)(self._sequence_query_of_stored)
        # `tags.derive_tags` over category codes instead of names: each category's tag spelling,
        # comparison key and whether the tag policy allows it, worked out once. Only when no two
        # category names share a key (else derive_tags, which merges them, runs as it is).
        names = catalog.category_names
        keys = [tags.tag_key(name) for name in names]
        named = [key for key in keys if key]
        self._tag_codes = catalog.category_codes if len(set(named)) == len(named) else None
        self._tag_names = [" ".join(name.split()) for name in names]
        self._tag_keys = keys
        self._tag_allowed = [bool(key) and tags.is_banned(name, tag_policy) is None
                             for key, name in zip(keys, self._tag_names)]
        self._rule_sets: dict[tuple[str, int, tuple[Intervention, ...]], RuleSet] = {}

    def _in_categories(self, items: np.ndarray, names: set[str]) -> np.ndarray:
        """Whether each of `items` has a category of exactly one of `names` (bool per item), read
        from the catalog's category code rows."""
        codes = [self._category_code[name] for name in names if name in self._category_code and name != NO_CATEGORY]
        if not codes or not len(items):
            return np.zeros(len(items), dtype=bool)
        mask = np.asarray(np.isin(self.catalog.category_codes[np.asarray(items, dtype=np.int64)], codes).any(axis=1))
        return mask

    def _rated(self, order: np.ndarray, max_rating: int | None) -> np.ndarray:
        return order if max_rating is None else order[self.catalog.age_rating[order] <= max_rating]

    # -- stage 1: the query ---------------------------------------------------------------------
    def make_query(self, request: RecommendationRequest, audience: Audience, request_id: str, *, session_id: str,
                   earlier_pages: Sequence[ServedPage] = (), recent: np.ndarray | None = None,
                   known_items: np.ndarray | None = None, history: np.ndarray | None = None,
                   engaged: np.ndarray | None = None) -> Query:
        """The mode and the personal signals of one request.

        `recent`: items shown in the user's last pages; `known_items`: items the user has events
        for; `engaged`: items of the user's engagement events (click, like, share), oldest first
        (all from the server's state). `history` replaces the model's stored history of the
        user (an offline replay of a changed history); `known_items` then also lists every item the
        user rated at any value. The stored user vector is used when the history is the stored one.
        The sequential source's query reads the history followed by `engaged`. A user who erased
        their history (`UserState.history_erased_at`) has no stored history: without a given
        `history` their list is the cold path's (mode reason "history_erased").
        """
        if audience.user_id != request.user_id:
            raise ValueError(f"audience is user {audience.user_id!r}, the request is for {request.user_id!r}")
        bundle = self.catalog.bundle
        user = audience.user
        user_idx = bundle.user_index.get(request.user_id)
        stored = history is None or (user_idx is not None and np.array_equal(history, bundle.user_history(user_idx)))
        mode, reason = PERSONALIZED, "personalized"
        if not user.personalization:
            mode, reason = NON_PERSONALIZED, "personalization_off"
        elif not audience.personalization_allowed:
            mode, reason = NON_PERSONALIZED, "minor_mode"
        elif not self.model_healthy:
            mode, reason = NON_PERSONALIZED, "model_unavailable"
        elif (user_idx is None and history is None) or (history is not None and not len(history)):
            mode, reason = NON_PERSONALIZED, "cold_user"
        elif history is None and user.history_erased_at is not None:
            # The user erased their history (PIPL Art. 47): the model's stored history, vector, tags and
            # sequence were made from it, so none is used; they are served as a cold user is.
            mode, reason = NON_PERSONALIZED, "history_erased"

        empty = np.empty(0, dtype=np.int64)
        seen = vector = profile = None
        if mode == PERSONALIZED:
            if history is None:
                assert user_idx is not None  # a cold user without a given history is not personalized
                history = bundle.user_history(user_idx)
            history = np.asarray(history, dtype=np.int64)
            # Seen means seen: every item of the training window at any rating (a 2-star film is not
            # recommended back) and every item of the user's stored events, of any type. `user_seen`
            # is sorted, distinct and holds the stored history.
            if user_idx is None:
                known = [history]
            elif stored:
                known = [bundle.user_seen(user_idx)]
            else:
                known = [bundle.user_seen(user_idx), history]
            if known_items is not None and len(known_items):
                known.append(np.asarray(known_items, dtype=np.int64))
            seen = known[0] if user_idx is not None and stored and len(known) == 1 else np.unique(np.concatenate(known))
            derived = list(self._stored_tags(user_idx)) if stored else self._derive_tags(history)
            profile = tags.effective_profile(derived, deleted=user.tags_in("deleted"), added=user.tags_in("added"),
                                             not_interested=user.tags_in("not_interested"), policy=self.tag_policy)
            if profile.suppressed_categories:
                history = history[~self._in_categories(history, profile.suppressed_categories)]
                vector = bundle.user_vector(history) if len(history) else None
            else:
                vector = bundle.user_factors[user_idx] if stored else bundle.user_vector(history)
            if vector is None:
                mode, reason = NON_PERSONALIZED, "no_history_left"
        sequence_query = None
        if mode == PERSONALIZED and history is not None and profile is not None:
            sequence_query = self._sequence_query(user_idx, history, engaged, profile, stored)
        if mode != PERSONALIZED or history is None or seen is None:
            history, seen, recent, profile, vector, sequence_query = empty, empty, empty, None, None, None
        recent = empty if recent is None else np.asarray(recent, dtype=np.int64)
        feedback = FeedbackSignals.of(self.catalog, user, audience.now, self.policy)
        return Query(request, request_id, audience.now, audience, mode, reason, session_id, list(earlier_pages), history,
                     seen, vector, profile, recent, feedback, sequence_query)

    def _sequence_query(self, user_idx: int | None, history: np.ndarray, engaged: np.ndarray | None,
                        profile: tags.Profile, stored: bool) -> np.ndarray | None:
        """The sequential source's query: the (effective) history, then the engaged items not in it,
        without the categories the user suppressed; None when the model has no sequential source.
        A stored history with no new engagement has its query precomputed in the bundle (read
        through `_stored_sequence_query`); only a user who engaged since is encoded per request."""
        bundle = self.catalog.bundle
        if bundle.sequential is None:
            return None
        extra = np.empty(0, dtype=np.int64) if engaged is None else np.asarray(engaged, dtype=np.int64)
        if stored and user_idx is not None and not len(extra) and not profile.suppressed_categories:
            return self._stored_sequence_query(user_idx)
        if len(extra) and profile.suppressed_categories:
            extra = extra[~self._in_categories(extra, profile.suppressed_categories)]
        sequence = np.concatenate([history, extra[~np.isin(extra, history)]]) if len(extra) else history
        return bundle.sequence_query(sequence)

    def _sequence_query_of_stored(self, user_idx: int) -> np.ndarray | None:
        return self.catalog.bundle.stored_sequence_query(user_idx)

    def _derive_tags(self, history: np.ndarray) -> list[tags.Tag]:
        """`tags.derive_tags` of the history's categories (the same tags, tested), counted with
        numpy over category codes rather than name by name."""
        if self._tag_codes is None or not len(history):
            return tags.derive_tags([self.catalog.item_categories[i] for i in history], self.tag_policy)
        codes = self._tag_codes[history]
        counts = np.bincount(codes[codes >= 0], minlength=len(self._tag_names)).tolist()
        n_items = len(history)
        policy = self.tag_policy
        kept = [(count, code) for code, count in enumerate(counts)
                if count and self._tag_allowed[code] and count / n_items >= policy.min_weight]
        kept.sort(key=lambda entry: (-entry[0], self._tag_keys[entry[1]]))  # heaviest first, ties by name
        return [tags.Tag(name=self._tag_names[code], weight=count / n_items, source="history",
                         detail=f"from {count} of {n_items} items in your history")
                for count, code in kept[: policy.max_tags]]

    def _derive_stored_tags(self, user_idx: int) -> tuple[tags.Tag, ...]:
        return tuple(self._derive_tags(self.catalog.bundle.user_history(user_idx)))

    # ------------------------------------------------------------------------------------------
    def run(self, query: Query, shared: SharedState) -> Recommendation:
        """One list for `query`, under the admin-edited `shared` state."""
        trace = Trace()
        clock = time.perf_counter
        query, items, scores, sources, trace = self._ranked(query, shared, trace)
        mark = clock()

        slate, rules = self.select(query, shared, items, scores, sources)
        trace.timings_ms["policy"] = (clock() - mark) * 1e3
        mark = clock()

        served = self.explain(query, shared, items, slate)
        chosen = items[slate.indices] if len(slate.indices) else np.empty(0, dtype=np.int64)
        trace.timings_ms["explain"] = (clock() - mark) * 1e3
        for violation in slate.dropped:
            trace.dropped["policy"][violation.reason] = trace.dropped["policy"].get(violation.reason, 0) + 1
        request = query.request
        return Recommendation(
            request_id=query.request_id,
            user_id=request.user_id,
            surface=request.surface,
            page=request.page,
            session_id=query.session_id,
            mode=query.mode,
            mode_reason=query.mode_reason,
            minor=query.audience.minor,
            model_version=self.catalog.model_version,
            index_build_id=self.index_build_id,
            policy_hash=self.policy_hash,
            items=served,
            violations=[
                {"rule": v.rule, "position": None if v.position is None else v.position + 1, "reason": v.reason}
                for v in slate.violations
            ],
            policies=[rule.name for rule in rules],
            trace=trace,
            request=request,
            served_at=query.now,
            item_rows=chosen.tolist(),
        )

    def select_items(self, query: Query, shared: SharedState) -> np.ndarray:
        """The catalog indices `run` would serve, in order, without building explanations (for
        offline replays over many users: the Art. 8 review, the quality benchmark)."""
        query, items, scores, sources, _ = self._ranked(query, shared, Trace())
        slate, _ = self.select(query, shared, items, scores, sources)
        return items[slate.indices] if len(slate.indices) else np.empty(0, dtype=np.int64)

    def _ranked(self, query: Query, shared: SharedState, trace: Trace) -> tuple[Query, Array, Array, Array, Trace]:
        """Candidates, filtered and scored; a failing model never fails the request: the
        personalized path falls back to the non-personalized one."""
        try:
            return (query, *self._candidates_scored(query, shared, trace), trace)
        except Exception:
            if query.mode != PERSONALIZED:
                raise
            log.exception("personalized path failed for request %s; serving non-personalized", query.request_id)
            empty = np.empty(0, dtype=np.int64)
            query = replace(query, mode=NON_PERSONALIZED, mode_reason="model_error", history=empty, seen=empty,
                            user_vector=None, profile=None, recent=empty, sequence_query=None)
            trace = Trace(timings_ms=trace.timings_ms)
            return (query, *self._candidates_scored(query, shared, trace), trace)

    def _candidates_scored(self, query: Query, shared: SharedState, trace: Trace) -> tuple[Array, Array, Array]:
        clock = time.perf_counter
        mark = clock()
        items, scores, sources = self.candidate_sources(query, shared, trace)
        trace.timings_ms["sources"] = (clock() - mark) * 1e3
        mark = clock()
        items, scores, sources = self.filter(query, shared, items, scores, sources, trace)
        trace.timings_ms["filters"] = (clock() - mark) * 1e3
        mark = clock()
        scores = self.score(query, items, scores, sources, trace.retrieved.get("sequential"))
        trace.timings_ms["ranker"] = (clock() - mark) * 1e3
        return items, scores, sources

    # -- stage 2: candidate sources ------------------------------------------------------------------
    def candidate_sources(self, query: Query, shared: SharedState, trace: Trace) -> tuple[Array, Array, Array]:
        parts_items: list[Array] = []
        parts_scores: list[Array] = []
        parts_sources: list[Array] = []

        def add(name: str, items: np.ndarray, scores: np.ndarray, source: Source) -> None:
            trace.candidates[name] = int(len(items))
            parts_items.append(items.astype(np.int64, copy=False))
            parts_scores.append(scores.astype(np.float32, copy=False))
            parts_sources.append(np.full(len(items), int(source), dtype=np.int8))

        catalog = self.catalog
        band = query.audience.max_age_rating
        # Pins of this page come first, so an item both pinned and retrieved is a pin (pins are
        # exempt from the personal filters below; the safety filters still apply to them).
        pins = self._pins_for(query, shared)
        if len(pins):
            add("pinned", pins, catalog.popularity_score[pins], Source.PINNED)
        if query.mode == PERSONALIZED and query.user_vector is not None:
            # Deeper by what the seen filter will remove, so the ranker sees as many fresh
            # candidates as it was trained on (training retrieves n + |seen| and drops the seen).
            depth = min(self.retrieval_candidates + len(query.seen), catalog.n_items)
            scores, idx = catalog.bundle.index.search(query.user_vector[None, :].astype(np.float32), depth)
            found = idx[0] >= 0
            add("retrieval", idx[0][found], scores[0][found], Source.RANKED)
        sequential = catalog.bundle.sequential
        if query.mode == PERSONALIZED and query.sequence_query is not None and sequential is not None:
            # The sequence model's top items for what the user engaged with lately, as deep as ALS's.
            depth = min(sequential.n_candidates + len(query.seen), catalog.n_items)
            scores, idx = sequential.search(query.sequence_query[None, :], depth)
            found = idx[0] >= 0
            trace.retrieved["sequential"] = idx[0][found]
            add("sequential", idx[0][found], scores[0][found], Source.SEQUENTIAL)
        popular = self._popular[band]
        add("popular", popular, catalog.popularity_score[popular], Source.POPULAR)
        mainstream = self._mainstream[band]
        add("mainstream", mainstream, catalog.popularity_score[mainstream], Source.MAINSTREAM)
        # One row per item, the first source naming it (pins, retrieval, sequential, popular, mainstream).
        return merge_sources(parts_items, parts_scores, parts_sources)

    def _pins_for(self, query: Query, shared: SharedState) -> np.ndarray:
        """Items pinned on this surface and page (the pin rules of `select` place them)."""
        index = self.catalog.bundle.item_index
        request = query.request
        pins = [
            index[str(i.item_id)]
            for i in shared.interventions
            if i.kind == "pin" and str(i.item_id) in index and i.applies_to(request.surface) and i.page == request.page
        ]
        return np.asarray(pins, dtype=np.int64)

    # -- stage 3: filters (each removes items for one named reason) -------------------------------
    def filter(self, query: Query, shared: SharedState, items: Array, scores: Array, sources: Array,
               trace: Trace) -> tuple[Array, Array, Array]:
        catalog = self.catalog
        # Safety first, the same gate as every route (blocked, flagged, feature library, age rating).
        checks = query.audience.exclusions(items, shared.blocked_items, catalog.age_rating, shared.fraud_risk)
        # The user's "not interested" / "fewer like this" items and their content duplicates, in every mode.
        checks.append(("user_rejected", query.feedback.excludes(items, catalog.content)))
        if query.earlier_pages:
            checks.append(
                ("served_this_session", np.isin(items, query.served_items) | np.isin(catalog.content[items], query.served_contents))
            )
        if query.mode == PERSONALIZED:
            # An operator's pin holds for its TTL on every visit: the personal "already seen" and
            # "recently shown" filters do not remove it (the user's "not interested" still does).
            personal = sources != int(Source.PINNED)
            checks.append(("already_interacted", np.isin(items, query.seen) & personal))
            if len(query.recent):
                checks.append(("recently_shown", np.isin(items, query.recent) & personal))
            excluded = query.profile.excluded_categories if query.profile else set()
            if excluded:
                checks.append(("not_interested", self._in_categories(items, excluded)))
        keep = np.ones(len(items), dtype=bool)
        for reason, removed in checks:
            removed = removed & keep
            count = int(removed.sum())
            if count:
                trace.dropped["filters"][reason] = count
                if reason == "blocked" and shared.feature_match is not None:
                    for item in items[removed]:
                        entry = shared.feature_match.entry_for_item.get(int(item))
                        if entry:
                            trace.blocked_by_feature[entry] = trace.blocked_by_feature.get(entry, 0) + 1
            keep &= ~removed
        return items[keep], scores[keep], sources[keep]

    # -- stage 4: scorer ------------------------------------------------------------------------
    def score(self, query: Query, items: np.ndarray, scores: np.ndarray, sources: np.ndarray,
              sequential_found: np.ndarray | None = None) -> np.ndarray:
        """The ranker's scores of the filtered candidates (personalized), from both retrieval
        sources' scores (`sequential_found`: the items the sequential source retrieved); the
        candidates' own scores otherwise."""
        if query.mode != PERSONALIZED or query.user_vector is None or not len(items):
            return scores  # popularity: the same for everyone in the same situation
        bundle = self.catalog.bundle
        retrieval_scores = bundle.item_factors[items] @ query.user_vector
        from_sequential = None if sequential_found is None else np.isin(items, sequential_found)
        features = bundle.features(query.user_vector, query.history, items, retrieval_scores, query.sequence_query,
                                   from_sequential)
        return np.asarray(bundle.ranker.score(features), dtype=np.float32)

    # -- stage 5: the policy engine (Art. 11, Art. 12, Art. 14 (draft 13)) ---------------------------------------------
    def select(self, query: Query, shared: SharedState, items: Array, scores: Array,
               sources: Array) -> tuple[Slate, list[Rule]]:
        catalog = self.catalog
        request = query.request
        if self.policies:
            rules, relaxation = self._rules(query, shared.interventions)
        else:
            rules, relaxation = [UniqueItems(ITEM_DEDUP)], ()
        candidates = CandidateSet(
            item=items,
            score=scores,
            category=catalog.category[items],
            content=catalog.content[items],
            source=sources,
            pools={"mainstream": catalog.mainstream[items]},
            extra={name: codes[items] for name, codes in self._extra.items()},
        )
        trailing = [c for p in query.earlier_pages for c in p.categories]
        earlier = query.served_items
        context = SlateContext(
            served_items=frozenset(earlier.tolist()),
            served_contents=frozenset(query.served_contents.tolist()),
            trailing_categories=tuple(int(c) for c in trailing[-self.policy.dispersal.window :]),
            position_offset=sum(len(p.items) for p in query.earlier_pages),
            labels=self._labels,
            trailing_attributes={name: codes[earlier[-100:]] for name, codes in self._extra.items()},
            served_values={name: frozenset(codes[earlier].tolist()) for name, codes in self._extra.items()},
        )
        slate = select(candidates, request.k, rules, context, relaxation)
        return slate, rules

    def _rules(self, query: Query, interventions: list[Intervention]) -> RuleSet:
        """`build_rules` for one list. The shared part (surface, page, the interventions active now)
        is the same for many requests, so a rule set without a user part is built once per such set;
        a request with a user part (the session's earlier pages, "broaden my feed", "fewer like
        this") gets its own, built for it."""
        request, now = query.request, query.now
        active = tuple(i for i in interventions if i.is_active(now))
        session_categories = [c for p in query.earlier_pages for c in p.categories]
        broaden, fewer = query.audience.user.broaden_feed, query.feedback.categories
        personal = bool(session_categories or broaden or len(fewer))
        key = (request.surface, request.page, active)
        rule_set = None if personal else self._rule_sets.get(key)
        if rule_set is None:
            rule_set = build_rules(self.policy, surface=request.surface, page=request.page, interventions=active,
                                   item_index=self.catalog.bundle.item_index, category_index=self._category_code, now=now,
                                   session_categories=session_categories, broaden=broaden, fewer_categories=fewer)
            if not personal:
                if len(self._rule_sets) >= RULE_SETS_CACHED:
                    self._rule_sets.clear()
                self._rule_sets[key] = rule_set
        return rule_set

    # -- stage 6: explanations (Art. 12, Art. 17 (draft 15)) --------------------------------------------------------
    def explain(self, query: Query, shared: SharedState, items: Array, slate: Slate) -> list[ServedItem]:
        catalog = self.catalog
        chosen = items[slate.indices] if len(slate.indices) else np.empty(0, dtype=np.int64)
        pins = {}
        index = catalog.bundle.item_index
        for intervention in shared.interventions:
            if intervention.kind == "pin" and str(intervention.item_id) in index:
                pins[index[str(intervention.item_id)]] = intervention
        nearest = None
        if query.mode == PERSONALIZED and len(query.history) and len(chosen):
            unit = catalog.bundle.stats.unit_factors  # the bundle's L2-normalised item vectors
            nearest = explanations.nearest_liked_unit(unit[chosen], query.history, unit, top=2)
        interests = {t.name for t in query.profile.tags if t.source == "user"} if query.profile else set()
        served = []
        for position, (item, slot, score) in enumerate(zip(chosen, slate.slots, slate.scores)):
            item = int(item)
            category = catalog.category_of(item) or "uncategorised"
            if slot == "pinned" and item in pins:
                reason = explanations.pinned(pins[item].reason)
            elif slot == "mainstream":
                reason = explanations.editorial_front_screen()
            elif query.mode == PERSONALIZED:
                matched = interests & set(catalog.item_categories[item])
                if matched:
                    reason = explanations.interest_tag(sorted(matched)[0])
                else:
                    liked = [catalog.titles[j] for j in nearest[position] if j >= 0] if nearest is not None else []
                    reason = explanations.because_liked(liked) if liked else explanations.popular_in_category(
                        category, int(catalog.category_rank[item]) + 1
                    )
                slot = "personalized" if slot in ("ranked", "popular") else slot
            else:
                rank = int(catalog.popular_rank[item]) + 1
                reason = explanations.popular(rank) if rank <= 100 else explanations.popular_in_category(
                    category, int(catalog.category_rank[item]) + 1
                )
                slot = "popular" if slot == "ranked" else slot
            if query.audience.elderly:
                reason = elderly.plain_reason(reason)  # Art. 19: plain explanations in elderly mode
            labels = explanations.content_labels(
                synthetic=bool(catalog.synthetic[item]), minor_safe=bool(catalog.minor_safe[item]),
                mainstream=bool(catalog.mainstream[item]),
            )
            served.append(
                ServedItem(
                    item_id=str(catalog.bundle.item_ids[item]),
                    position=position + 1,
                    score=round(float(score), 6),
                    category=category,
                    slot=slot,
                    labels=labels,
                    reason=reason,
                )
            )
        return served

