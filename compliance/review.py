"""Periodic review of the algorithm (Art. 8: regularly review, evaluate and verify the mechanism,
models, data and results; no models that induce users to indulge or addiction).

`addiction_risk` simulates sessions with any recommender (numpy arrays in, numbers out): each
session the user consumes one item of the list and we measure how far the share of the user's
initially dominant category grows; a recommender that narrows users into one category shows
amplification well above 1. The consumed item is drawn with the position bias of NDCG's discount,
1/log2(rank + 1), so a first slot the editor fills does not decide everything
(`consumption="top"` takes the first item). `review` checks these and the audit's metrics against `ReviewConfig` thresholds;
training runs it on every model and records the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
    missing_metric_fails: bool = True  # a configured check whose metric is absent fails

    simulation_sessions: int = Field(default=20, ge=1, le=1000)
    consumption: Literal["position_bias", "top"] = "position_bias"  # which list item a simulated user consumes
    simulation_k: int = Field(default=10, ge=1)
    simulation_window: int = Field(default=20, ge=1)  # recent items the category shares are measured over
    simulation_users: int | None = Field(default=100, ge=1)  # None: every user with a history
    list_users: int | None = Field(default=2000, ge=1)  # test users whose served lists are checked; None: all
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
