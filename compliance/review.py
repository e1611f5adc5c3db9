"""Periodic review of the algorithm (Art. 8: regularly review, evaluate and verify the mechanism,
models, data and results; no models that induce users to indulge or addiction).

`addiction_risk` simulates sessions with any recommender (numpy arrays in, numbers out): each
session the user consumes one item of the list and we measure how far the share of the user's
initially dominant category grows; a recommender that narrows users into one category shows
amplification well above 1. The consumed item is drawn with the position bias of NDCG's discount,
1/log2(rank + 1), so a first slot the editor fills does not decide everything
(`consumption="top"` takes the first item). `review` checks these and the audit's metrics against `ReviewConfig` thresholds;
training runs it on every model and records the result.

Two user protections are measured here too, on lists the served path produced:
`feedback_effectiveness` (Art. 17 (draft 15), the "not interested" campaign): after a user rejects items
of a list, the share of rejected items (and their content duplicates) in the user's next pages
(goal 0) and the share of a "fewer like this" category before and after; `session_diversity`
(information cocoons): the dominant category's share of each simulated session against the cap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.pipeline.rules.session import session_limit

# (metric name in the metrics dict, ReviewConfig field holding its threshold, which side passes)
CHECKS: tuple[tuple[str, str, str], ...] = (
    ("dominant_category_amplification", "max_dominant_category_amplification", "max"),
    ("model/dominant_category_amplification", "max_model_dominant_category_amplification", "max"),
    ("category_diversity", "min_category_diversity", "min"),
    ("dispersal_violation_rate", "max_dispersal_violation_rate", "max"),
    ("dedup_violation_rate", "max_dedup_violation_rate", "max"),
    ("flagged_served_rate", "max_flagged_served_rate", "max"),
    ("catalog_coverage", "min_catalog_coverage", "min"),
    ("recall_at_10", "min_recall_at_10", "min"),
    ("ndcg_at_10", "min_ndcg_at_10", "min"),
    ("feedback_rejected_item_share", "max_feedback_rejected_item_share", "max"),
    ("session_over_cap_rate", "max_session_over_cap_rate", "max"),
)

Recommend = Callable[[np.ndarray, list[np.ndarray]], np.ndarray]
"""Batch recommender: (user indices, their histories of item indices) -> (n_users, >= k) ranked items."""


class ReviewError(ValueError):
    """Bad review input; the message names the argument."""


class ReviewConfig(BaseModel):
    """Thresholds of the periodic review (None: not checked) and the addiction simulation's knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unprefixed metrics are those of the lists users are served (policy pipeline applied);
    # `model/` ones those of the ranker's own lists, before any policy.
    max_dominant_category_amplification: float | None = Field(default=1.5, gt=0)
    max_model_dominant_category_amplification: float | None = Field(default=2.0, gt=0)
    min_category_diversity: float | None = Field(default=3.0, ge=0)  # distinct categories in a final top-k
    max_dispersal_violation_rate: float | None = Field(default=0.0, ge=0, le=1)
    max_dedup_violation_rate: float | None = Field(default=0.0, ge=0, le=1)
    max_flagged_served_rate: float | None = Field(default=0.0, ge=0, le=1)
    min_catalog_coverage: float | None = Field(default=None, ge=0, le=1)
    min_recall_at_10: float | None = Field(default=None, ge=0, le=1)
    min_ndcg_at_10: float | None = Field(default=None, ge=0, le=1)
    max_feedback_rejected_item_share: float | None = Field(default=0.0, ge=0, le=1)  # rejected items in the next pages
    max_session_over_cap_rate: float | None = Field(default=None, ge=0, le=1)  # sessions over the diversity cap
    missing_metric_fails: bool = True  # a configured check whose metric is absent fails

    simulation_sessions: int = Field(default=20, ge=1, le=1000)
    consumption: Literal["position_bias", "top"] = "position_bias"  # which list item a simulated user consumes
    simulation_k: int = Field(default=10, ge=1)
    simulation_window: int = Field(default=20, ge=1)  # recent items the category shares are measured over
    simulation_users: int | None = Field(default=100, ge=1)  # None: every user with a history
    list_users: int | None = Field(default=2000, ge=1)  # test users whose served lists are checked; None: all
    # Users whose "not interested" replay is measured in every training run, and their next pages, where no
    # rejected item may appear (tests/training/test_feedback_review.py holds the bar at 100 users x 20 pages).
    feedback_users: int = Field(default=25, ge=1)
    feedback_pages: int = Field(default=20, ge=1, le=200)
    session_users: int = Field(default=25, ge=1)  # users whose multi-page sessions are measured for diversity
    session_pages: int = Field(default=5, ge=1, le=50)
    seed: int = 0


class ReviewCheck(NamedTuple):
    name: str
    value: float | None
    threshold: float
    passed: bool


@dataclass(frozen=True)
class ReviewResult:
    passed: bool
    checks: list[ReviewCheck]

    @property
    def failures(self) -> list[ReviewCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the shape `compliance.filing.build_filing` reads as an audit."""
        return {"article": "Art. 8", "passed": self.passed, "checks": [c._asdict() for c in self.checks]}


@dataclass(frozen=True)
class AddictionRisk:
    """Outcome of the session simulation, averaged over the simulated users."""

    amplification: float  # mean over users of final share / initial share of their dominant category
    amplification_p90: float
    initial_share: float
    final_share: float
    slate_share_by_session: np.ndarray  # mean share of the dominant category in each session's top-k
    category_diversity: float  # mean distinct categories in the last session's top-k
    users: int

    def as_metrics(self) -> dict[str, float]:
        return {
            "dominant_category_amplification": self.amplification,
            "dominant_category_amplification_p90": self.amplification_p90,
            "dominant_category_initial_share": self.initial_share,
            "dominant_category_final_share": self.final_share,
            "category_diversity": self.category_diversity,
        }


def one_at_a_time(recommend_user: Callable[[int, np.ndarray], Sequence[int]]) -> Recommend:
    """Adapt a per-user recommender (user index, history) -> ranked items to the batch form."""

    def batch(users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.asarray(recommend_user(int(u), h)) for u, h in zip(users, histories, strict=True)])

    return batch


def _shares(windows: list[np.ndarray], categories: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.array([np.mean(categories[w] == t) for w, t in zip(windows, target, strict=True)])


def addiction_risk(
    recommend: Recommend,
    histories: Sequence[np.ndarray],
    item_categories: np.ndarray,
    config: ReviewConfig | None = None,
) -> AddictionRisk:
    """Simulate sessions: each session `recommend` ranks items for every sampled user, the user
    consumes one of the top `simulation_k` (`config.consumption`). Shares are measured over the
    last `simulation_window` consumed items.

    `histories[u]`: item indices user u consumed, oldest first; `item_categories[i]`: the primary
    category (int) of item i. Users with an empty history are not simulated.
    """
    config = config or ReviewConfig()
    categories = np.asarray(item_categories)
    if categories.ndim != 1 or not np.issubdtype(categories.dtype, np.integer):
        raise ReviewError("item_categories: must be a 1-d integer array (primary category per item)")
    n_items = categories.size
    candidates = np.array([u for u, h in enumerate(histories) if len(h) > 0], dtype=np.int64)
    if candidates.size == 0:
        raise ReviewError("histories: no user has a history to start from")
    rng = np.random.default_rng(config.seed)
    if config.simulation_users is not None and candidates.size > config.simulation_users:
        candidates = np.sort(rng.choice(candidates, size=config.simulation_users, replace=False))
    history = []
    for u in candidates:
        h = np.asarray(histories[u], dtype=np.int64)
        if h.min() < 0 or h.max() >= n_items:
            raise ReviewError(f"histories[{u}]: item indices must be in 0..{n_items - 1}")
        history.append(h)
    window = config.simulation_window
    dominant = np.array([np.bincount(categories[h[-window:]]).argmax() for h in history])
    initial = _shares([h[-window:] for h in history], categories, dominant)

    slate_share = np.zeros(config.simulation_sessions)
    slate = np.zeros((candidates.size, 0), dtype=np.int64)
    for session in range(config.simulation_sessions):
        ranked = np.asarray(recommend(candidates, history))
        if ranked.ndim != 2 or ranked.shape[0] != candidates.size or ranked.shape[1] < 1:
            raise ReviewError(
                f"recommend: must return shape ({candidates.size}, >= 1) of item indices, got {ranked.shape}"
            )
        if not np.issubdtype(ranked.dtype, np.integer) or ranked.min() < 0 or ranked.max() >= n_items:
            raise ReviewError(f"recommend: must return integer item indices in 0..{n_items - 1}")
        slate = ranked[:, : config.simulation_k]
        slate_share[session] = np.mean(categories[slate] == dominant[:, None])
        if config.consumption == "top":
            consumed = slate[:, 0]
        else:
            weights = 1.0 / np.log2(np.arange(slate.shape[1]) + 2.0)
            picks = rng.choice(slate.shape[1], size=slate.shape[0], p=weights / weights.sum())
            consumed = slate[np.arange(slate.shape[0]), picks]
        history = [np.append(h, item) for h, item in zip(history, consumed, strict=True)]

    final = _shares([h[-window:] for h in history], categories, dominant)
    ratio = final / initial
    diversity = np.mean([np.unique(categories[row]).size for row in slate])
    return AddictionRisk(
        amplification=float(ratio.mean()),
        amplification_p90=float(np.quantile(ratio, 0.9)),
        initial_share=float(initial.mean()),
        final_share=float(final.mean()),
        slate_share_by_session=slate_share,
        category_diversity=float(diversity),
        users=int(candidates.size),
    )


def review(metrics: Mapping[str, float | None], config: ReviewConfig | None = None) -> ReviewResult:
    """Check every configured threshold against `metrics`; the review passes when all checks do."""
    config = config or ReviewConfig()
    if not isinstance(metrics, Mapping):
        raise ReviewError(f"metrics: expected a dict of metric name -> number, got {type(metrics).__name__}")
    checks = []
    for metric, field, side in CHECKS:
        threshold = getattr(config, field)
        if threshold is None:
            continue
        value = metrics.get(metric)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | np.number)):
            raise ReviewError(f"metrics[{metric!r}]: expected a number, got {value!r}")
        if value is None or not np.isfinite(float(value)):
            checks.append(ReviewCheck(metric, None, threshold, not config.missing_metric_fails))
            continue
        value = float(value)
        passed = value <= threshold if side == "max" else value >= threshold
        checks.append(ReviewCheck(metric, value, threshold, bool(passed)))
    return ReviewResult(passed=all(c.passed for c in checks), checks=checks)


@dataclass(frozen=True)
class FeedbackEffectiveness:
    """How well negative feedback worked over `users` replays of `pages` next pages each."""

    users: int
    pages: int
    items_shown: int
    rejected_shown: int  # rejected items or content duplicates of one in the next pages (goal 0)
    users_shown_rejected: int
    category_share_before: float  # share of the "fewer like this" categories in the lists the feedback was given on
    category_share_after: float  # ... and in the next pages

    def as_metrics(self) -> dict[str, float]:
        return {
            "feedback_rejected_item_share": self.rejected_shown / max(1, self.items_shown),
            "feedback/users_shown_rejected": float(self.users_shown_rejected),
            "feedback/users": float(self.users),
            "feedback/pages": float(self.pages),
            "feedback/category_share_before": self.category_share_before,
            "feedback/category_share_after": self.category_share_after,
        }


def feedback_effectiveness(first: Sequence[np.ndarray], after: Sequence[Sequence[np.ndarray]],
                           rejected: Sequence[np.ndarray], fewer_categories: Sequence[np.ndarray],
                           item_content: np.ndarray, item_category: np.ndarray) -> FeedbackEffectiveness:
    """Per user u: `first[u]` the list the feedback was given on, `after[u]` the next pages, `rejected[u]`
    the items rejected (their content duplicates count as rejected too), `fewer_categories[u]` the
    primary categories asked to see fewer of. Item indices index `item_content`/`item_category`."""
    if not len(first) == len(after) == len(rejected) == len(fewer_categories):
        raise ReviewError("feedback_effectiveness: first, after, rejected and fewer_categories need one entry per user")
    content, category = np.asarray(item_content), np.asarray(item_category)
    shown = hits = users_hit = before_n = before_hit = after_hit = 0
    for page0, pages, items, fewer in zip(first, after, rejected, fewer_categories, strict=True):
        contents = content[np.asarray(items, dtype=np.int64)]
        fewer = np.asarray(fewer, dtype=np.int64)
        before_n += len(page0)
        before_hit += int(np.isin(category[page0], fewer).sum())
        user_hits = 0
        for page in pages:
            page = np.asarray(page, dtype=np.int64)
            shown += len(page)
            user_hits += int(np.isin(content[page], contents).sum())
            after_hit += int(np.isin(category[page], fewer).sum())
        hits += user_hits
        users_hit += user_hits > 0
    return FeedbackEffectiveness(users=len(first), pages=max((len(p) for p in after), default=0), items_shown=shown,
                                 rejected_shown=hits, users_shown_rejected=users_hit,
                                 category_share_before=before_hit / max(1, before_n),
                                 category_share_after=after_hit / max(1, shown))


def session_diversity(sessions: Sequence[Sequence[np.ndarray]], item_category: np.ndarray, max_share: float,
                      min_positions: int) -> dict[str, float]:
    """The dominant primary category's share of each session (its pages' items together), and the
    share of sessions where it holds more than the cap allows (`max_share` of the session's
    positions, counted as at least `min_positions`; at least one item)."""
    category = np.asarray(item_category)
    shares, over = [], 0
    for pages in sessions:
        items = np.concatenate([np.asarray(p, dtype=np.int64) for p in pages]) if len(pages) else np.empty(0, np.int64)
        if not len(items):
            continue
        top = int(np.bincount(category[items]).max())
        shares.append(top / len(items))
        over += top > session_limit(max_share, len(items), min_positions)
    n = max(1, len(shares))
    return {
        "session/dominant_share_mean": float(np.mean(shares)) if shares else 0.0,
        "session/dominant_share_max": float(np.max(shares)) if shares else 0.0,
        "session_over_cap_rate": over / n,
        "session/sessions": float(len(shares)),
    }
