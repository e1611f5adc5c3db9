"""External id -> row lookups as two arrays (the ids sorted, their rows) searched with np.searchsorted.

A dict of five million ids holds five million Python strings per serving worker; these arrays are
plain .npy files that every worker maps read-only from the bundle, so one host keeps one copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class IdIndex(Mapping[str, int]):
    """A read-only mapping from an id (str) to its row (int), over `sorted_ids` (a numpy unicode
    array in ascending order, no duplicates) and `rows` (int64, row of `sorted_ids[j]`). Iteration
    yields the ids in row order, as the dict it replaces did."""

    def __init__(self, sorted_ids: np.ndarray, rows: np.ndarray):
        if sorted_ids.ndim != 1 or rows.shape != sorted_ids.shape:
            raise ValueError(f"IdIndex: ids {sorted_ids.shape} and rows {rows.shape} must be equal 1-d shapes")
        self.sorted_ids = sorted_ids
        self.rows = rows
        self._width = sorted_ids.dtype.itemsize // 4 if sorted_ids.dtype.kind == "U" else None

    @staticmethod
    def arrays(ids: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their rows) of `ids` (row i has id ids[i]), only the rows where `keep` is
        True when given. ValueError naming the first duplicate id."""
        ids = np.asarray(ids).astype(str)
        rows = np.arange(len(ids), dtype=np.int64) if keep is None else np.flatnonzero(keep).astype(np.int64)
        order = np.argsort(ids[rows], kind="stable")
        sorted_ids, sorted_rows = ids[rows][order], rows[order]
        duplicate = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if len(duplicate):
            raise ValueError(f"id {str(sorted_ids[duplicate[0]])!r} appears more than once")
        return sorted_ids, sorted_rows

    @classmethod
    def of(cls, ids: np.ndarray, keep: np.ndarray | None = None) -> IdIndex:
        """The index of `ids` built in memory (tests, small catalogs; bundles map theirs from disk)."""
        return cls(*cls.arrays(ids, keep))

    def _position(self, key: object) -> int:
        """Position of `key` in `sorted_ids`, or -1. Only str keys match (as with a dict of str);
        numpy unicode arrays cannot hold trailing NULs or more than their width, so such keys miss."""
        if not isinstance(key, str) or not len(self.sorted_ids) or key.endswith("\0"):
            return -1
        if self._width is not None and len(key) > self._width:
            return -1
        position = int(np.searchsorted(self.sorted_ids, key))
        if position < len(self.sorted_ids) and str(self.sorted_ids[position]) == key:
            return position
        return -1

    def __getitem__(self, key: str) -> int:
        position = self._position(key)
        if position < 0:
            raise KeyError(key)
        return int(self.rows[position])

    def __contains__(self, key: object) -> bool:
        return self._position(key) >= 0

    def get(self, key: str, default: int | None = None) -> int | None:  # type: ignore[override]
        position = self._position(key)
        return default if position < 0 else int(self.rows[position])

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """Rows of many keys at once (int64), -1 for a key not in the index."""
        return np.asarray([self.get(str(key), -1) for key in keys], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sorted_ids)

    def __iter__(self) -> Iterator[str]:
        for position in np.argsort(self.rows, kind="stable"):
            yield str(self.sorted_ids[position])
