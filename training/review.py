"""The periodic review every training run performs (Art. 8), on the bundle it just wrote.

Art. 8 asks the provider to regularly review, evaluate and verify the algorithm's mechanism, models,
data and results, and forbids models that induce users into addiction. Here "regularly" means
"every model version, before it can serve":

1. `OfflineServing` runs the served path (`served.path.ServedPath`, the code the server runs) for
   one user history without a server: the user vector (the stored one for a user's own history,
   else recomputed), Faiss top-N, the sequential source's top items for the same history (when
   the model carries one), every seen item removed (any rating, `ModelBundle.user_seen`),
   flagged items removed, the popular and editorial sources, the ranker, the one constraint engine
   with the declared policy (page 0 of the home surface) — for an adult with default settings.
2. Over the test users of the protocol split (a seeded sample of `list_users` on big data) it measures what the lists served would show:
   dispersal and de-duplication violation rates, the share of flagged items, and the protocol
   metrics of the served lists next to those of the model alone.
3. `compliance.review.addiction_risk` simulates sessions with the served path and with the model
   alone (each session the user consumes the top item): how far the share of the user's dominant
   category grows.
4. Negative feedback (Art. 17 (draft 15)): for a sample of users, the first item of their first list
   is marked "not interested" and the second "fewer like this"; their next `feedback_pages` lists
   (sessions of five pages, rotating over the surfaces) are served through the same path and
   `compliance.review.feedback_effectiveness` counts rejected items (goal 0) and the share of the
   "fewer like this" category before and after.
5. Information cocoons: multi-page sessions of a sample of users, the dominant category's share of
   each session against the policy's cap (`compliance.review.session_diversity`).
6. `compliance.review.review` checks the numbers against `TrainingConfig.review`; training logs
   every figure to MLflow and withholds the serving alias from a version that fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from compliance.minors import MinorsConfig
from compliance.policy import PolicyConfig, config_hash, dispersal_violations
from compliance.review import (
    AddictionRisk,
    ReviewConfig,
    ReviewResult,
    addiction_risk,
    feedback_effectiveness,
    review,
    session_diversity,
)
from compliance.tags import TagPolicy
from recsys.bundle import ModelBundle
from recsys.evaluation import Split, summarize
from served.catalog import Catalog
from served.path import POPULAR_CANDIDATES, ServedPath, SharedState, Trace
from served.feedback import FEWER_LIKE_THIS, NOT_INTERESTED
from served.query import Audience, Feedback, RecommendationRequest, ServedPage, UserState

REVIEW_NOW = datetime(2026, 1, 1, tzinfo=UTC)  # no interventions offline; the date only gates their validity
OFFLINE_USER = "offline-replay"  # the user id of a replay that names no user
REPLAY_SURFACES = ("home", "feed", "related", "trending")  # the surfaces the feedback replay's sessions rotate over
REPLAY_SESSION_PAGES = 5  # pages per session in the feedback replay


class OfflineServing:
    """The served path for one user history, without server, state or log (see the module doc).

    `served_list` is what the server would put on the first page of `surface` for an adult with
    default settings and no state yet: the same code (`served.path.ServedPath`), no interventions,
    flagged items blocked. `model_list` is what the two-stage model alone ranks first.
    """

    def __init__(self, bundle: ModelBundle, policy: PolicyConfig | None = None, surface: str = "home",
                 n_candidates: int | None = None, popular_candidates: int = POPULAR_CANDIDATES):
        self.bundle = bundle
        self.policy = policy or PolicyConfig()
        self.surface = surface
        self.n_candidates = int(n_candidates or bundle.n_candidates)
        self.minors = MinorsConfig()
        catalog = Catalog.from_bundle(bundle, model_version="review")
        self.path = ServedPath(catalog, self.policy, self.minors, TagPolicy(), retrieval_candidates=self.n_candidates,
                               popular_candidates=popular_candidates)
        self.shared = SharedState(interventions=[], blocked_items=catalog.flagged.copy(), feature_match=None, versions=(0, 0))

    def _candidates(self, history: np.ndarray, seen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history, user vector, candidate items): Faiss top-N with the history and the `seen` items
        (any rating) removed."""
        history = np.asarray(history, dtype=np.int64)
        if not len(history):
            return history, np.zeros(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        known = history if seen is None else np.union1d(history, np.asarray(seen, dtype=np.int64))
        vector = self.bundle.user_vector(history)
        depth = min(len(self.bundle.item_ids), self.n_candidates + len(known))
        found = self.bundle.index.search(vector[None, :], depth)[1][0]
        return history, vector, found[(found >= 0) & ~np.isin(found, known)][: self.n_candidates]

    def _sequential_candidates(self, history: np.ndarray, known: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(the sequential source's query, its top items with `known` removed); (None, empty)
        when the bundle has no sequential source."""
        source = self.bundle.sequential
        query = self.bundle.sequence_query(history)
        if source is None or query is None:
            return None, np.empty(0, dtype=np.int64)
        depth = min(len(self.bundle.item_ids), source.n_candidates + len(known))
        found = source.search(query[None, :], depth)[1][0]
        return query, found[(found >= 0) & ~np.isin(found, known)][: source.n_candidates]

    def model_list(self, history: np.ndarray, k: int, seen: np.ndarray | None = None, user_id: str | None = None) -> np.ndarray:
        """Top-k of the two-stage model alone (both retrieval sources, no filter but the seen items,
        no policy); empty for an empty history."""
        history, vector, items = self._candidates(history, seen)
        if not len(items):
            return items
        known = history if seen is None else np.union1d(history, np.asarray(seen, dtype=np.int64))
        query, sequential = self._sequential_candidates(history, known)
        if len(sequential):
            items = np.concatenate([items, sequential[~np.isin(sequential, items)]])
        retrieval_scores = self.bundle.item_factors[items] @ vector
        features = self.bundle.features(vector, history, items, retrieval_scores, query,
                                        None if query is None else np.isin(items, sequential))
        scores = np.asarray(self.bundle.ranker.score(features))
        return items[np.argsort(-scores, kind="stable")[:k]]

    def served_list(self, history: np.ndarray, k: int, seen: np.ndarray | None = None, user_id: str | None = None) -> np.ndarray:
        """The first page the server would serve this history (`seen`: every item the user rated
        at any value). With the user's id and their stored history, the stored user vector is used,
        exactly as the server does; otherwise the vector is recomputed from `history`."""
        request = RecommendationRequest(user_id or OFFLINE_USER, self.surface, 0, k)
        audience = Audience.offline(request.user_id, REVIEW_NOW, self.minors)
        query = self.path.make_query(request, audience, "review", session_id="review",
                                     history=np.asarray(history, dtype=np.int64), known_items=seen)
        return self.path.select_items(query, self.shared)

    def scored(self, history: np.ndarray, seen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(candidate items, the ranker's scores) of the first page `served_list` would serve, before
        the policy: every source's candidates (the editorial pool's included), filtered and scored."""
        request = RecommendationRequest(OFFLINE_USER, self.surface, 0, 1)
        audience = Audience.offline(request.user_id, REVIEW_NOW, self.minors)
        query = self.path.make_query(request, audience, "review", session_id="review",
                                     history=np.asarray(history, dtype=np.int64), known_items=seen)
        _, items, scores, _, _ = self.path._ranked(query, self.shared, Trace())
        return items, np.asarray(scores, dtype=np.float64)

    def session(self, history: np.ndarray, k: int, pages: int, *, seen: np.ndarray | None = None,
                user: UserState | None = None, surface: str | None = None, session_id: str = "review") -> list[np.ndarray]:
        """Pages 0..pages-1 of one session as the server would serve them one after the other (each
        page knows the earlier ones: no repeats, dispersal and the session diversity cap across
        them), for `user` (default settings when None) with this `history`."""
        user_id = user.user_id if user is not None else OFFLINE_USER
        audience = Audience.offline(user_id, REVIEW_NOW, self.minors, user=user)
        catalog = self.path.catalog
        earlier: list[ServedPage] = []
        out = []
        for page in range(pages):
            request = RecommendationRequest(user_id, surface or self.surface, page, k, session_id)
            query = self.path.make_query(request, audience, "review", session_id=session_id, earlier_pages=earlier,
                                         history=np.asarray(history, dtype=np.int64), known_items=seen)
            items = self.path.select_items(query, self.shared)
            earlier.append(ServedPage(page, session_id, items.tolist(), catalog.category[items].tolist(),
                                      catalog.content[items].tolist()))
            out.append(items)
        return out

    def feedback_replay(self, history: np.ndarray, k: int, pages: int, *, seen: np.ndarray | None = None,
                        user_id: str | None = None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
        """A user marks the first item of their first list "not interested" and the second "fewer like
        this"; then `pages` more lists are served (sessions of `REPLAY_SESSION_PAGES` pages, rotating
        over `REPLAY_SURFACES`). Returns (first list, next lists, rejected items, fewer-like-this categories)."""
        user_id = user_id or OFFLINE_USER
        first = self.session(history, k, 1, seen=seen, user=UserState(user_id, True, None, True, None))[0]
        catalog = self.path.catalog
        kinds = (NOT_INTERESTED, FEWER_LIKE_THIS)
        rejected = first[: len(kinds)]
        feedback = tuple(Feedback(str(catalog.bundle.item_ids[item]), kind, catalog.category_of(int(item)), REVIEW_NOW)
                         for item, kind in zip(rejected, kinds))
        user = UserState(user_id, True, None, True, None, feedback=feedback)
        after: list[np.ndarray] = []
        for number in range(0, pages, REPLAY_SESSION_PAGES):
            surface = REPLAY_SURFACES[(number // REPLAY_SESSION_PAGES) % len(REPLAY_SURFACES)]
            after += self.session(history, k, min(REPLAY_SESSION_PAGES, pages - number), seen=seen, user=user,
                                  surface=surface, session_id=f"review-{number}")
        fewer = catalog.category[rejected[1:2]]
        return first, after, rejected, fewer

    def lists(self, histories: list[np.ndarray], k: int, served: bool = True,
              seen: list[np.ndarray] | None = None, user_ids: list[str] | None = None) -> np.ndarray:
        """(len(histories), k) item indices, -1 where a list is shorter than k; `seen[row]` (when
        given) are the items of that user to exclude besides the history."""
        out = np.full((len(histories), k), -1, dtype=np.int64)
        make = self.served_list if served else self.model_list
        for row, history in enumerate(histories):
            chosen = make(history, k, None if seen is None else seen[row], None if user_ids is None else user_ids[row])
            out[row, : len(chosen)] = chosen[:k]
        return out

    def recommender(self, k: int, served: bool = True, seen: list[np.ndarray] | None = None):
        """The batch form `compliance.review.addiction_risk` drives (`seen[u]`: user u's seen items,
        u as the simulation numbers users). A list shorter than k is padded with its own first item
        (the consumed one), so shares are measured over real items only."""

        def recommend(users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
            top = self.lists(histories, k, served, None if seen is None else [seen[int(u)] for u in users])
            empty = top[:, 0] < 0
            if empty.any():
                raise ValueError(f"review: no item left to recommend to {int(empty.sum())} simulated user(s); "
                                 "the catalog is too small for the simulation's sessions")
            return np.where(top >= 0, top, top[:, :1])

        return recommend


def list_violations(top: np.ndarray, category: np.ndarray, content: np.ndarray, flagged: np.ndarray,
                    window: int, max_per_window: int) -> dict[str, float]:
    """Dispersal violations (positions where a category exceeds `max_per_window` in the `window`
    ending there: `compliance.policy.dispersal_violations`), content duplicates and flagged items,
    per list and as the share of lists (or items) affected."""
    dispersal = duplicates = lists_dispersal = lists_duplicates = flagged_items = shown = 0
    for row in np.asarray(top):
        row = row[row >= 0]
        found = len(dispersal_violations(category[row].tolist(), window, max_per_window))
        repeated = len(row) - len(np.unique(content[row]))
        dispersal += found
        duplicates += repeated
        lists_dispersal += found > 0
        lists_duplicates += repeated > 0
        flagged_items += int(np.count_nonzero(flagged[row]))
        shown += len(row)
    n = max(1, len(top))
    return {
        "dispersal_violations_per_list": dispersal / n,
        "lists_with_dispersal_violation": lists_dispersal / n,
        "content_duplicates_per_list": duplicates / n,
        "lists_with_content_duplicate": lists_duplicates / n,
        "flagged_item_share": flagged_items / max(1, shown),
    }


@dataclass(frozen=True)
class ReviewReport:
    """Every figure of one review, the checks, and the two simulations."""

    metrics: dict[str, float]  # the names `compliance.review.CHECKS` reads, plus model/* and served/*
    result: ReviewResult
    served_risk: AddictionRisk
    model_risk: AddictionRisk
    policy_hash: str

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "policy_hash": self.policy_hash, "metrics": self.metrics,
                "simulation": {"served_slate_share_by_session": self.served_risk.slate_share_by_session.round(4).tolist(),
                               "model_slate_share_by_session": self.model_risk.slate_share_by_session.round(4).tolist(),
                               "users": self.served_risk.users}}

    def markdown(self) -> str:
        lines = [f"# Periodic review (Art. 8): {'PASSED' if self.passed else 'FAILED'}", "",
                 f"Policy config hash `{self.policy_hash}`; {self.served_risk.users} users simulated.", "",
                 "| check | value | threshold | result |", "| --- | ---: | ---: | --- |"]
        for check in self.result.checks:
            value = "missing" if check.value is None else f"{check.value:.4f}"
            lines.append(f"| {check.name} | {value} | {check.threshold:g} | {'pass' if check.passed else 'FAIL'} |")
        lines += ["", "| figure | value |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(self.metrics.items())]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Per-request work as serving does it: one torch, Faiss and BLAS thread. With their default
    pools these small calls spend most of their time waking threads (20x slower measured here)."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)


def run_review(bundle: ModelBundle, split: Split, config: ReviewConfig | None = None,
               policy: PolicyConfig | None = None, k: int = 10) -> ReviewReport:
    """Review `bundle` (trained on `split.train`) on the test users of `split` (see the module doc)."""
    with one_thread():
        return _review(bundle, split, config or ReviewConfig(), policy or PolicyConfig(), k)


def _review(bundle: ModelBundle, split: Split, config: ReviewConfig, policy: PolicyConfig, k: int) -> ReviewReport:
    path = OfflineServing(bundle, policy)
    users = split.test_users()
    if config.list_users is not None and len(users) > config.list_users:
        users = np.sort(np.random.default_rng(config.seed).choice(users, config.list_users, replace=False))
    known = split.known()  # every item rated (any value) before the test part: serving never shows them
    histories = [split.train.of(int(u)) for u in users]
    seen = [known.of(int(u)) for u in users]
    metrics: dict[str, float] = {}
    window, limit = policy.dispersal.window, policy.dispersal.max_per_window
    user_ids = [str(bundle.user_ids[int(u)]) for u in users]
    for prefix, served in (("model", False), ("served", True)):
        top = path.lists(histories, k, served, seen, user_ids)
        row = summarize(top, users, split, bundle.item_category, k)
        row.pop("users")
        row.update(list_violations(top, bundle.item_category, bundle.content_code, bundle.flagged, window, limit))
        metrics.update({f"{prefix}/{name}": float(value) for name, value in row.items() if np.isfinite(value)})
    every = [split.train.of(u) for u in range(split.n_users)]
    every_seen = [known.of(u) for u in range(split.n_users)]
    risks = {}
    for prefix, served in (("model", False), ("served", True)):
        risks[prefix] = addiction_risk(path.recommender(config.simulation_k, served, every_seen), every,
                                       bundle.item_category, config)
        metrics.update({f"{prefix}/{name}": value for name, value in risks[prefix].as_metrics().items()})
    metrics.update(_feedback_and_sessions(path, bundle, users, histories, seen, user_ids, config, policy, k))
    # The unprefixed names `compliance.review.CHECKS` reads: what users would be served.
    metrics.update({
        "dispersal_violation_rate": metrics["served/lists_with_dispersal_violation"],
        "dedup_violation_rate": metrics["served/lists_with_content_duplicate"],
        "flagged_served_rate": metrics["served/flagged_item_share"],
        "recall_at_10": metrics[f"served/recall_at_{k}"],
        "ndcg_at_10": metrics[f"served/ndcg_at_{k}"],
        "catalog_coverage": metrics[f"served/catalog_coverage_at_{k}"],
        **risks["served"].as_metrics(),
    })
    return ReviewReport(metrics, review(metrics, config), risks["served"], risks["model"], config_hash(policy))


def _feedback_and_sessions(path: OfflineServing, bundle: ModelBundle, users: np.ndarray, histories: list[np.ndarray],
                           seen: list[np.ndarray], user_ids: list[str], config: ReviewConfig, policy: PolicyConfig,
                           k: int) -> dict[str, float]:
    """The negative-feedback replay and the multi-page sessions (module doc, steps 4 and 5), on the
    first users of the review's sample that have a history."""
    rows = [row for row in range(len(users)) if len(histories[row])]
    replays = [path.feedback_replay(histories[row], k, config.feedback_pages, seen=seen[row], user_id=user_ids[row])
               for row in rows[: config.feedback_users]]
    effectiveness = feedback_effectiveness([r[0] for r in replays], [r[1] for r in replays], [r[2] for r in replays],
                                           [r[3] for r in replays], bundle.content_code, bundle.item_category)
    sessions = [path.session(histories[row], k, config.session_pages, seen=seen[row],
                             user=UserState(user_ids[row], True, None, True, None), surface="feed")
                for row in rows[: config.session_users]]
    diversity = policy.session_diversity
    return {**effectiveness.as_metrics(),
            **session_diversity(sessions, bundle.item_category, diversity.max_share, diversity.min_positions)}
