"""How much each ranker feature matters: permutation importance on held-out ranking lists.

The transparency page (EU DSA Art. 27: "the main parameters ... and the reasons for their relative
importance"; Provisions Art. 16 (draft 14): the basic principles and main operating mechanism) states the
signals a surface uses and their relative weight. For the ranker those weights are measured, not
asserted: the drop in NDCG@k on the validation lists when one feature's values are shuffled across
the candidates (breaking its link to the label, keeping its distribution), averaged over `repeats`
seeded shuffles. A feature whose shuffling costs nothing gets share 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.ranking.model import Ranker, RankingLists


@dataclass(frozen=True)
class FeatureImportance:
    """NDCG@k of the intact lists, and per feature the mean drop and its share of all drops."""

    k: int
    baseline_ndcg: float
    drops: dict[str, float]
    shares: dict[str, float]  # max(drop, 0) / sum of positive drops; sums to 1 (or all 0)

    def ranked(self) -> list[tuple[str, float]]:
        """(feature, share), most important first."""
        return sorted(self.shares.items(), key=lambda kv: (-kv[1], kv[0]))


def list_ndcg(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, k: int) -> float:
    """Mean NDCG@k over lists with at least one positive; padded rows (mask False) never rank."""
    scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    gains = np.take_along_axis(labels * mask, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, order.shape[1] + 2))
    dcg = (gains * discounts).sum(axis=1)
    ideal_gains = -np.sort(-(labels * mask), axis=1)[:, :k]
    idcg = (ideal_gains * discounts[: ideal_gains.shape[1]]).sum(axis=1)
    has = idcg > 0
    return float((dcg[has] / idcg[has]).mean()) if has.any() else 0.0


def permutation_importance(ranker: Ranker, lists: RankingLists, k: int = 10, repeats: int = 3,
                           seed: int = 0) -> FeatureImportance:
    """Permutation importance of each of the ranker's features on `lists` (see the module docstring)."""
    users, n, f = lists.features.shape
    if f != len(ranker.feature_names):
        raise ValueError(f"lists have {f} features, the ranker {len(ranker.feature_names)}")

    def ndcg(features: np.ndarray) -> float:
        scores = ranker.score(features.reshape(users * n, f)).reshape(users, n)
        return list_ndcg(scores, lists.labels, lists.mask, k)

    baseline = ndcg(lists.features)
    rng = np.random.default_rng(seed)
    valid = lists.mask.reshape(-1)
    drops: dict[str, float] = {}
    for j, name in enumerate(ranker.feature_names):
        total = 0.0
        for _ in range(repeats):
            shuffled = lists.features.reshape(users * n, f).copy()
            column = shuffled[valid, j]
            shuffled[valid, j] = column[rng.permutation(len(column))]
            total += baseline - ndcg(shuffled)
        drops[name] = total / repeats
    positive = {name: max(drop, 0.0) for name, drop in drops.items()}
    denominator = sum(positive.values())
    shares = {name: (value / denominator if denominator > 0 else 0.0) for name, value in positive.items()}
    return FeatureImportance(k=k, baseline_ndcg=baseline, drops=drops, shares=shares)
