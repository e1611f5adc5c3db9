"""The serving view of a model bundle: every per-item lookup the request path needs, as arrays.

Built once when the model loads, so a request never touches a DataFrame: titles, categories,
labels, content codes, the popularity order and the editorial pool are numpy arrays indexed by
the catalog's item index, mapped read-only from the bundle's columns/ (recsys.columns), so the
serving workers of one host share them. Nothing here holds a Python object per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from recsys.bundle import ModelBundle
from recsys.ranking.features import NO_CATEGORY


class ItemCategories(Sequence[list[str]]):
    """Every category of each item, by item index, read from the category code rows (no list per
    item is kept): `item_categories[i]` is item i's category names, primary first."""

    def __init__(self, codes: np.ndarray, names: list[str]):
        self.codes = codes  # int32 (n_items, max categories), -1 pads
        self.names = names

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, item):  # type: ignore[no-untyped-def]
        if not isinstance(item, int | np.integer):
            raise TypeError(f"item categories: index with one item index, got {type(item).__name__}")
        # an item without categories is coded as NO_CATEGORY: it has none
        return [self.names[code] for code in self.codes[int(item)].tolist() if code >= 0 and self.names[code] != NO_CATEGORY]


@dataclass
class Catalog:
    bundle: ModelBundle
    model_version: str
    titles: np.ndarray  # str, by item index
    category: np.ndarray  # int32 primary category code
    category_names: list[str]
    item_categories: ItemCategories  # every category of an item (for tags and "not interested")
    category_codes: np.ndarray  # int32 (n_items, max categories), primary first, -1 pads
    content: np.ndarray  # int64 content code
    minor_safe: np.ndarray  # bool
    age_rating: np.ndarray  # int8: youngest age band the item is rated for (0, 8, 12, 16, 18)
    mainstream: np.ndarray  # bool
    synthetic: np.ndarray  # bool
    flagged: np.ndarray  # bool
    popularity: np.ndarray  # float32 interaction counts
    popular_order: np.ndarray  # item indices, most popular first
    popular_rank: np.ndarray  # rank of each item in popular_order (0 = most popular)
    category_rank: np.ndarray  # rank of each item by popularity within its primary category
    mainstream_order: np.ndarray  # editorial pool, most popular first
    popularity_score: np.ndarray  # float32 in [0, 1], log-scaled popularity
    _attributes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.titles)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, model_version: str) -> Catalog:
        columns = bundle.columns
        return cls(
            bundle=bundle,
            model_version=model_version,
            titles=columns.titles,
            category=columns.category_codes[:, 0],
            category_names=list(columns.category_names),
            item_categories=ItemCategories(columns.category_codes, list(columns.category_names)),
            category_codes=columns.category_codes,
            content=columns.content_code,
            minor_safe=columns.minor_safe,
            age_rating=columns.age_rating,
            mainstream=columns.mainstream,
            synthetic=columns.synthetic,
            flagged=columns.flagged,
            popularity=np.asarray(bundle.popularity, dtype=np.float32),
            popular_order=columns.popular_order,
            popular_rank=columns.popular_rank,
            category_rank=columns.category_rank,
            mainstream_order=columns.mainstream_order,
            popularity_score=columns.popularity_score,
        )

    def title_series(self) -> pl.Series:
        """The titles as one polars (Arrow) string column, for text matching over the catalog."""
        return pl.Series("title", np.asarray(self.titles), dtype=pl.Utf8)

    def category_of(self, item: int) -> str:
        return self.category_names[int(self.category[item])]

    def attribute_codes(self, name: str) -> np.ndarray:
        """Integer codes of the items' column `name` (any column of the dataset's items frame):
        equal values get equal codes; a missing value is a code of its own (never equal to another
        item's). ValueError naming the column when the items have none of that name."""
        if name not in self._attributes:
            column = self.bundle.item_column(name)
            if column is None:
                columns = self.bundle.items.columns
                raise ValueError(f"policy names item attribute {name!r}, but the model's items have no such column "
                                 f"(columns: {', '.join(columns)})")
            missing = column.is_null().to_numpy()
            names, codes = np.unique(column.cast(str).fill_null("").to_numpy().astype(str), return_inverse=True)
            codes = codes.astype(np.int64)
            codes[missing] = -1 - np.flatnonzero(missing)  # distinct negative codes: no two missing values match
            self._attributes[name] = (codes, names)
        return self._attributes[name][0]

    def attribute_label(self, name: str, code: int) -> str:
        """The value behind a code of `attribute_codes(name)`."""
        return "(none)" if code < 0 else str(self._attributes[name][1][code])


