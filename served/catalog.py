"""The serving view of a model bundle: every per-item lookup the request path needs, as arrays.

Built once when the model loads, so a request never touches a DataFrame: titles, categories,
labels, content codes, the popularity order and the editorial pool are numpy arrays indexed by
the catalog's item index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.bundle import ModelBundle
from recsys.datasets.labels import ensure_age_rating


@dataclass
class Catalog:
    bundle: ModelBundle
    model_version: str
    titles: np.ndarray  # str, by item index
    category: np.ndarray  # int32 primary category code
    category_names: list[str]
    item_categories: list[list[str]]  # every category of an item (for tags and "not interested")
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
        items = bundle.items
        popularity = np.asarray(bundle.popularity, dtype=np.float32)
        # Ties in popularity are broken by item index, so the order is deterministic.
        popular_order = np.lexsort((np.arange(len(popularity)), -popularity))
        popular_rank = np.empty_like(popular_order)
        popular_rank[popular_order] = np.arange(len(popular_order))
        category = np.asarray(bundle.item_category, dtype=np.int32)
        category_rank = np.empty(len(category), dtype=np.int64)
        ordered_categories = category[popular_order]
        for code in np.unique(category):
            members = popular_order[ordered_categories == code]
            category_rank[members] = np.arange(len(members))
        mainstream = np.asarray(bundle.mainstream, dtype=bool)
        log_pop = np.log1p(popularity)
        return cls(
            bundle=bundle,
            model_version=model_version,
            titles=items.get_column("title").to_numpy().astype(str),
            category=category,
            category_names=list(bundle.category_names),
            item_categories=items.get_column("categories").to_list(),
            content=np.asarray(bundle.content_code, dtype=np.int64),
            minor_safe=np.asarray(bundle.minor_safe, dtype=bool),
            # a bundle trained before age ratings gets the dataset's documented fallback
            age_rating=ensure_age_rating(items).get_column("age_rating").to_numpy().astype(np.int8),
            mainstream=mainstream,
            synthetic=np.asarray(bundle.synthetic, dtype=bool),
            flagged=np.asarray(bundle.flagged, dtype=bool),
            popularity=popularity,
            popular_order=popular_order,
            popular_rank=popular_rank,
            category_rank=category_rank,
            mainstream_order=popular_order[mainstream[popular_order]],
            popularity_score=(log_pop / max(float(log_pop.max()), 1e-9)).astype(np.float32),
        )

    def category_of(self, item: int) -> str:
        return self.category_names[int(self.category[item])]

    def attribute_codes(self, name: str) -> np.ndarray:
        """Integer codes of the items' column `name` (any column of the dataset's items frame):
        equal values get equal codes; a missing value is a code of its own (never equal to another
        item's). ValueError naming the column when the items have none of that name."""
        if name not in self._attributes:
            items = self.bundle.items
            if name not in items.columns:
                raise ValueError(f"policy names item attribute {name!r}, but the model's items have no such column "
                                 f"(columns: {', '.join(items.columns)})")
            column = items.get_column(name)
            missing = column.is_null().to_numpy()
            names, codes = np.unique(column.cast(str).fill_null("").to_numpy().astype(str), return_inverse=True)
            codes = codes.astype(np.int64)
            codes[missing] = -1 - np.flatnonzero(missing)  # distinct negative codes: no two missing values match
            self._attributes[name] = (codes, names)
        return self._attributes[name][0]

    def attribute_label(self, name: str, code: int) -> str:
        """The value behind a code of `attribute_codes(name)`."""
        return "(none)" if code < 0 else str(self._attributes[name][1][code])


