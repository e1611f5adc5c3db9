"""Explanations (Art. 12, Art. 17 (draft 15)) and content labels (Art. 9): why each item is in a list, in words
built from the signal that put it there.

Art. 12 asks for transparent, explainable retrieval, ranking and display; Art. 17 (draft 15) gives users the
right to an explanation. Every builder takes the real signal and refuses to run without it, so no
item is ever explained by generic filler. Art. 9 (second sentence) requires algorithm-generated
content to carry a conspicuous label: `content_labels` and `LABEL_TEXT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

ReasonCode = Literal[
    "similar_to_liked",
    "interest_tag",
    "editorial_front_screen",
    "pinned",
    "boosted",
    "popular",
    "popular_in_category",
    "trending",
    "minor_safe_pick",
]

AI_GENERATED = "ai_generated"
MINOR_SAFE = "minor_safe"
MAINSTREAM = "mainstream"
AI_GENERATED_TEXT = "AI-generated content"
AI_GENERATED_TEXT_ZH = "人工智能生成内容"
LABEL_TEXT: dict[str, str] = {
    AI_GENERATED: AI_GENERATED_TEXT,
    MINOR_SAFE: "Suitable for minors",
    MAINSTREAM: "From the editors' reviewed pool",
}


class ExplanationError(ValueError):
    """A reason was asked for without the signal that would justify it."""


class Reason(BaseModel):
    """Why one item is in a list: a stable code, a sentence for people, and the signal behind it."""

    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    text: str
    signals: dict[str, Any]


def _required_text(value: str, builder: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ExplanationError(f"{builder}: {field} must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _positive_count(value: int, builder: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ExplanationError(f"{builder}: {field} must be an integer >= 1 (the real signal), got {value!r}")
    return int(value)


def _join_titles(titles: list[str]) -> str:
    if len(titles) == 1:
        return titles[0]
    return f"{', '.join(titles[:-1])} and {titles[-1]}"


def because_liked(titles: Sequence[str], item_ids: Sequence[str] = ()) -> Reason:
    """'Because you liked Star Wars and Alien': needs at least one liked title."""
    if isinstance(titles, str):
        raise ExplanationError("because_liked: titles must be a sequence of titles, not one string")
    if len(titles) == 0:
        raise ExplanationError(
            "because_liked: at least one liked title is required (got none); "
            "use another reason when the user has no liked items"
        )
    clean = [_required_text(title, "because_liked", "each title") for title in titles]
    if item_ids and len(item_ids) != len(clean):
        raise ExplanationError(
            f"because_liked: item_ids has {len(item_ids)} entries for {len(clean)} titles; give one id per title"
        )
    signals: dict[str, Any] = {"liked_titles": clean}
    if item_ids:
        signals["liked_item_ids"] = [str(item_id) for item_id in item_ids]
    return Reason(code="similar_to_liked", text=f"Because you liked {_join_titles(clean)}", signals=signals)


def interest_tag(tag: str, weight: float | None = None) -> Reason:
    """'Matches your interest: Comedy': the user's tag (and its weight in (0, 1] when known)."""
    name = _required_text(tag, "interest_tag", "tag")
    signals: dict[str, Any] = {"tag": name}
    if weight is not None:
        if not 0.0 < weight <= 1.0:
            raise ExplanationError(f"interest_tag: weight must be in (0, 1], got {weight!r}")
        signals["weight"] = float(weight)
    return Reason(code="interest_tag", text=f"Matches your interest: {name}", signals=signals)


def editorial_front_screen(slot: int | None = None, pool: str = "mainstream") -> Reason:
    """'Editor's pick for the front screen': the editorial pool it came from (and the slot it fills)."""
    pool_name = _required_text(pool, "editorial_front_screen", "pool")
    signals: dict[str, Any] = {"pool": pool_name}
    if slot is not None:
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or slot < 0:
            raise ExplanationError(f"editorial_front_screen: slot must be a position >= 0, got {slot!r}")
        signals["slot"] = int(slot)
    return Reason(code="editorial_front_screen", text="Editor's pick for the front screen", signals=signals)


def _intervention(code: ReasonCode, prefix: str, reason: str, intervention_id: str | int | None) -> Reason:
    why = _required_text(reason, code, "reason")
    signals: dict[str, Any] = {"reason": why}
    if intervention_id is not None:
        signals["intervention_id"] = str(intervention_id)
    return Reason(code=code, text=f"{prefix}: {why}", signals=signals)


def pinned(reason: str, intervention_id: str | int | None = None) -> Reason:
    """'Pinned by the editors: <reason>': the recorded reason of the pin intervention."""
    return _intervention("pinned", "Pinned by the editors", reason, intervention_id)


def boosted(reason: str, intervention_id: str | int | None = None) -> Reason:
    """'Promoted by the editors: <reason>': the recorded reason of a boost intervention."""
    return _intervention("boosted", "Promoted by the editors", reason, intervention_id)


def popular(rank: int) -> Reason:
    """'Popular with all users': the item's popularity rank (1 = most popular), the same for everyone."""
    position = _positive_count(rank, "popular", "rank")
    return Reason(code="popular", text="Popular with all users", signals={"popularity_rank": position})


def popular_in_category(category: str, rank: int) -> Reason:
    """'Popular in Comedy': the category and the item's popularity rank within it (1 = first)."""
    name = _required_text(category, "popular_in_category", "category")
    position = _positive_count(rank, "popular_in_category", "rank")
    return Reason(
        code="popular_in_category",
        text=f"Popular in {name}",
        signals={"category": name, "category_rank": position},
    )


def trending(events: int, window_hours: float) -> Reason:
    """'Trending now': the de-duplicated events counted in the trending window."""
    count = _positive_count(events, "trending", "events")
    if not window_hours > 0:
        raise ExplanationError(f"trending: window_hours must be > 0, got {window_hours!r}")
    return Reason(code="trending", text="Trending now", signals={"events": count, "window_hours": window_hours})


def minor_safe_pick(rank: int) -> Reason:
    """'Suitable for minors, popular with all users': a popular item (its rank) from the minor-safe pool."""
    position = _positive_count(rank, "minor_safe_pick", "rank")
    return Reason(
        code="minor_safe_pick",
        text="Suitable for minors, popular with all users",
        signals={"minor_safe": True, "popularity_rank": position},
    )


def content_labels(synthetic: bool, minor_safe: bool, mainstream: bool = False) -> list[str]:
    """Labels to show with an item; `LABEL_TEXT` gives the visible text (Art. 9: AI-generated)."""
    flags = ((synthetic, AI_GENERATED), (minor_safe, MINOR_SAFE), (mainstream, MAINSTREAM))
    return [label for flag, label in flags if flag]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def nearest_liked(
    candidate_vectors: np.ndarray,
    liked_idx: np.ndarray,
    item_factors: np.ndarray,
    top: int = 2,
) -> np.ndarray:
    """For each candidate, the `top` liked items nearest by cosine, most similar first.

    candidate_vectors (n, d), liked_idx (k,) indexes into item_factors (m, d). Returns (n, top)
    item indices; rows are padded with -1 when fewer than `top` items are liked.
    """
    candidates = np.asarray(candidate_vectors, dtype=np.float32)
    factors = np.asarray(item_factors, dtype=np.float32)
    liked = np.asarray(liked_idx)
    if candidates.ndim != 2 or factors.ndim != 2:
        raise ValueError(
            f"nearest_liked: candidate_vectors and item_factors must be 2-D, got shapes "
            f"{candidates.shape} and {factors.shape}"
        )
    if candidates.shape[1] != factors.shape[1]:
        raise ValueError(
            f"nearest_liked: candidate_vectors has dimension {candidates.shape[1]}, "
            f"item_factors {factors.shape[1]}"
        )
    if liked.ndim != 1 or (liked.size and not np.issubdtype(liked.dtype, np.integer)):
        raise ValueError(f"nearest_liked: liked_idx must be a 1-D integer array, got {liked.dtype} {liked.shape}")
    if liked.size and (liked.min() < 0 or liked.max() >= factors.shape[0]):
        raise ValueError(f"nearest_liked: liked_idx values must be in 0..{factors.shape[0] - 1}")
    if top < 1:
        raise ValueError(f"nearest_liked: top must be >= 1, got {top}")

    if liked.size == 0:
        return np.full((candidates.shape[0], top), -1, dtype=np.int64)
    # Normalise only the liked rows; positions in `liked` come back, mapped to item indices.
    positions = nearest_liked_unit(_unit_rows(candidates), np.arange(liked.size), _unit_rows(factors[liked]), top)
    return np.where(positions >= 0, liked[np.maximum(positions, 0)], -1)


def nearest_liked_unit(candidate_units: np.ndarray, liked_idx: np.ndarray, unit_factors: np.ndarray,
                       top: int = 2) -> np.ndarray:
    """`nearest_liked` on vectors already L2-normalised (a model bundle keeps its items' unit
    vectors), so the request path does not normalise the catalog or the history again. Only the
    liked rows of `unit_factors` are read."""
    liked = np.asarray(liked_idx)
    result = np.full((candidate_units.shape[0], top), -1, dtype=np.int64)
    if liked.size == 0 or candidate_units.shape[0] == 0:
        return result
    similarity = candidate_units @ unit_factors[liked].T  # (n, k) cosines
    keep = min(top, liked.size)
    if keep < liked.size:
        part = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
    else:
        part = np.broadcast_to(np.arange(liked.size), similarity.shape).copy()
    order = np.argsort(-np.take_along_axis(similarity, part, axis=1), axis=1, kind="stable")
    result[:, :keep] = liked[np.take_along_axis(part, order, axis=1)]
    return result
