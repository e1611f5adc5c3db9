"""Candidates as the policy engine sees them: aligned numpy columns, one row per candidate item.

`CandidateSet` holds the built-in columns (item, score, category, content, source), named pool
masks and any other integer item attribute (`extra`) a rule may name; it validates them once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import SupportsInt

import numpy as np

__all__ = ["CandidateSet", "Source", "int_set", "int_tuple", "merge_sources"]


class Source(enum.IntEnum):
    """Which candidate source produced a row (the `source` column of a `CandidateSet`)."""

    RANKED = 0  # retrieval + ranker, personalized
    MAINSTREAM = 1  # curated editorial pool
    POPULAR = 2
    PINNED = 3  # an operator's pin
    TRENDING = 4
    SEQUENTIAL = 5  # the sequence model's retrieval (recsys/retrieval/sequential.py), personalized


_COLUMNS: dict[str, type] = {
    "item": np.int64,
    "score": np.float32,
    "category": np.int32,
    "content": np.int64,
    "source": np.int8,
}
_ATTRIBUTES = ("item", "category", "content", "source")  # built-in integer columns; `extra` adds any other


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Candidates as aligned numpy columns; row i is candidate i.

    `item` is the item index, `score` higher-is-better, `category` the primary category code,
    `content` a content key (equal keys = the same content), `source` a `Source` code, `pools`
    optional named boolean eligibility masks (e.g. ``pools["mainstream"]``), and `extra` any other
    integer item attribute a rule may name (e.g. ``extra["creator"]``: equal codes = same creator).
    """

    item: np.ndarray
    score: np.ndarray
    category: np.ndarray
    content: np.ndarray
    source: np.ndarray
    pools: Mapping[str, np.ndarray] = field(default_factory=dict)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        length = None
        for name, dtype in _COLUMNS.items():
            column = _column(getattr(self, name), f"CandidateSet.{name}", dtype)
            if length is None:
                length = column.shape[0]
            elif column.shape[0] != length:
                raise ValueError(f"CandidateSet.{name} has {column.shape[0]} rows, expected {length} (the length of item)")
            object.__setattr__(self, name, column)
        if not np.isfinite(self.score).all():
            raise ValueError("CandidateSet.score must be finite (found NaN or inf)")
        pools = {}
        for pool, mask in dict(self.pools).items():
            array = np.asarray(mask)
            if array.dtype != np.bool_ or array.shape != (length,):
                raise ValueError(
                    f"CandidateSet.pools[{pool!r}] must be a boolean array of shape ({length},), "
                    f"got dtype {array.dtype} shape {array.shape}"
                )
            pools[str(pool)] = array
        object.__setattr__(self, "pools", pools)
        extra = {}
        for name, values in dict(self.extra).items():
            if name in _COLUMNS:
                raise ValueError(f"CandidateSet.extra[{name!r}]: {name!r} is a built-in column")
            column = _column(values, f"CandidateSet.extra[{name!r}]", np.int64)
            if column.shape[0] != length:
                raise ValueError(f"CandidateSet.extra[{name!r}] has {column.shape[0]} rows, expected {length}")
            extra[str(name)] = column
        object.__setattr__(self, "extra", extra)

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def attribute(self, name: str) -> np.ndarray:
        """The integer column `name`: item, category, content, source, or one of `extra`."""
        if name in _ATTRIBUTES:
            column: np.ndarray = getattr(self, name)
            return column
        if name in self.extra:
            return self.extra[name]
        raise ValueError(f"unknown candidate attribute {name!r}; available: {', '.join([*_ATTRIBUTES, *self.extra])}")

    @classmethod
    def concat(cls, parts: Sequence[CandidateSet]) -> CandidateSet:
        """Merge candidate sets from several sources into one row per item.

        Each item keeps its best-scoring row (earlier parts win ties), and its pool eligibility is
        the OR over all its rows, so an item that one source marks as pool-eligible stays eligible.
        """
        if not parts:
            raise ValueError("CandidateSet.concat needs at least one part")
        names = sorted({name for part in parts for name in part.pools})
        extras = set(parts[0].extra)
        if any(set(p.extra) != extras for p in parts):
            raise ValueError("CandidateSet.concat: every part needs the same extra attributes")
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS}
        extra = {name: np.concatenate([p.extra[name] for p in parts]) for name in sorted(extras)}
        masks = {
            name: np.concatenate([p.pools.get(name, np.zeros(len(p), dtype=bool)) for p in parts]) for name in names
        }
        if not len(columns["item"]):
            return cls(**columns, pools=masks, extra=extra)
        by_item = np.lexsort((-columns["score"].astype(np.float64), columns["item"]))
        sorted_items = columns["item"][by_item]
        starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]])
        keep = by_item[starts]
        merged = {name: np.logical_or.reduceat(mask[by_item], starts) for name, mask in masks.items()}
        back = np.argsort(keep, kind="stable")  # restore the concatenation order of the kept rows
        keep = keep[back]
        return cls(
            **{name: column[keep] for name, column in columns.items()},
            pools={name: mask[back] for name, mask in merged.items()},
            extra={name: column[keep] for name, column in extra.items()},
        )


def merge_sources(items: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                  sources: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several sources' candidates (parts in priority order) as one row per item: each item keeps
    its first row, so the earlier source names it (pins before retrieval, ALS before the
    sequential source, both before popular and editorial), rows in concatenation order. The
    server's candidate stage and the ranker's training lists merge their sources with this."""
    if not items:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int8)
    all_items = np.concatenate([np.asarray(part, dtype=np.int64) for part in items])
    all_scores = np.concatenate([np.asarray(part, dtype=np.float32) for part in scores])
    all_sources = np.concatenate([np.asarray(part, dtype=np.int8) for part in sources])
    _, first = np.unique(all_items, return_index=True)
    first.sort()
    return all_items[first], all_scores[first], all_sources[first]


def _column(values: object, label: str, dtype: type) -> np.ndarray:
    """`values` as a 1-D array of `dtype`, refusing values that would not survive the cast."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{label} must be 1-D, got shape {array.shape}")
    if array.dtype == dtype:
        return array
    if array.size == 0:
        return array.astype(dtype)
    if dtype is np.float32:
        if array.dtype.kind not in "fiub":
            raise ValueError(f"{label} must be numeric, got dtype {array.dtype}")
        return array.astype(np.float32)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{label} must hold integers, got dtype {array.dtype}")
    info = np.iinfo(dtype)
    if array.min() < info.min or array.max() > info.max:
        raise ValueError(f"{label} values must fit {np.dtype(dtype).name} ({info.min}..{info.max})")
    return array.astype(dtype)


def int_set(values: Iterable[SupportsInt] | None, label: str) -> frozenset[int]:
    """A set of integer codes from any iterable or integer array (`label` names it in errors)."""
    if values is None:
        return frozenset()
    if isinstance(values, np.ndarray):
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{label} must hold integers, got dtype {values.dtype}")
        return frozenset(values.ravel().tolist())
    return frozenset(int(v) for v in values)


def int_tuple(values: Iterable[SupportsInt] | None, label: str) -> tuple[int, ...]:
    """A tuple of integer codes from any iterable or integer array, order kept."""
    if values is None:
        return ()
    if isinstance(values, np.ndarray):
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{label} must hold integers, got dtype {values.dtype}")
        return tuple(values.ravel().tolist())
    return tuple(int(v) for v in values)
