"""The main parameters of each recommender surface and their relative importance (EU DSA Art. 27;
Provisions Art. 16 (draft 14): the basic principles and main operating mechanism; Art. 17 (draft 15)
(draft 15): the options a user has).

For each surface the page states, in plain words: where candidates come from; the signals the
ranker weighs, grouped into families a person can recognise, with their MEASURED relative
importance (permutation importance on held-out lists, recorded with the model at training:
`recsys.ranking.importance`); the policies that reorder the list there; what the option not based
on profiling (DSA Art. 38) shows instead; and the options the user has to change all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Families of ranker features, as a person would name the signal. A feature not listed (a fork's
# own) is shown under its own name.
SIGNAL_FAMILIES: dict[str, tuple[str, ...]] = {
    "how similar the item is to what you watched (learned from everyone's ratings)": (
        "retrieval_score", "retrieval_score_gap", "retrieval_rank_log", "max_cosine_recent", "mean_cosine_recent",
        "cosine_last_item"),
    "how popular the item is, overall and lately": ("item_log_popularity", "item_recent_log_popularity", "popularity_gap"),
    "how recent the item is, and how it fits the time of what you watched": (
        "item_recency_log_days", "item_time_gap_days", "item_release_year", "release_year_gap"),
    "your categories (the interest tags you can see, change and delete)": ("category_affinity", "primary_category_share"),
    "how much history you have": ("history_log_length",),
    "what usually comes next after what you watched lately (a sequence model, in time order)": (
        "sequential_score", "sequential_score_gap", "sequential_rank_log", "from_sequential"),
}

CANDIDATE_SOURCES = (
    "nearest items to your taste in a Faiss index of item embeddings (learned from ratings)",
    "items popular with all users",
    "the editors' mainstream pool",
)
SEQUENTIAL_SOURCE = ("what usually comes next after the items you watched and engaged with lately, in order "
                     "(a sequence model's Faiss index of item embeddings)")
NON_PROFILING = ("the same list as for everyone in your situation: items popular with all users and the editors' "
                 "pool, with the same safety filters and policies; nothing about you shapes it")
USER_OPTIONS = (
    "switch personalization off (the option not based on profiling) and on again",
    "see, add and delete your interest tags, or mark a category not interested",
    "mark an item not interested, or ask for fewer like it",
    "broaden my feed (a lower cap on one category's share of a session)",
)


def signal_importance(feature_importance: Mapping[str, float] | None,
                      feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """The ranker's signal families with their summed shares, most important first. Without
    measured importances (a model trained before they were recorded), shares are None."""
    family_of = {feature: family for family, features in SIGNAL_FAMILIES.items() for feature in features}
    shares: dict[str, float | None] = {}
    members: dict[str, list[str]] = {}
    for name in feature_names:
        family = family_of.get(name, name)
        members.setdefault(family, []).append(name)
        if feature_importance is None:
            shares[family] = None
        else:
            shares[family] = (shares.get(family) or 0.0) + float(feature_importance.get(name, 0.0))
    rows = [{"signal": family, "features": members[family],
             "relative_importance": None if share is None else round(share, 3)} for family, share in shares.items()]
    return sorted(rows, key=lambda r: (-(r["relative_importance"] or 0.0), r["signal"]))


def surface_parameters(surfaces: Sequence[str], policies_by_surface: Mapping[str, Sequence[str]],
                       feature_importance: Mapping[str, float] | None,
                       feature_names: Sequence[str], sequential_source: bool = False) -> list[dict[str, Any]]:
    """One entry per surface: candidate sources (`sequential_source`: the model carries the
    sequential one), ranking signals with relative importance, the policies applied there, the
    non-profiling alternative and the user's options."""
    signals = signal_importance(feature_importance, feature_names)
    sources = [CANDIDATE_SOURCES[0], *([SEQUENTIAL_SOURCE] if sequential_source else []), *CANDIDATE_SOURCES[1:]]
    return [{
        "surface": surface,
        "personalized": {
            "candidate_sources": sources,
            "ranking_signals": signals,
            "importance_measured_as": "share of the drop in NDCG@10 on held-out lists when the signal is shuffled",
            "policies": list(policies_by_surface.get(surface, ())),
        },
        "not_based_on_profiling": NON_PROFILING,
        "user_options": list(USER_OPTIONS),
    } for surface in surfaces]
