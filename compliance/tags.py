"""User tags (Art. 10, Art. 17 (draft 15)): derived from the user's history, viewable, deletable, addable; never
sensitive, discriminatory or harmful.

Art. 10 forbids recording illegal or harmful keywords as interests and setting discriminatory or
biased tags; Art. 17 (draft 15) gives users the power to select, change and delete their tags. Matching is
deliberately conservative: text is normalised (case, full-width forms, accents, spaces,
punctuation, invisible characters) and a banned term anywhere in it rejects it, so "Ｒ e-ligion"
is caught and a harmless word that contains a banned one (e.g. "embrace" holds "race") is
rejected too. `RANKING_FORBIDDEN` adds the demographic columns a ranker must never read.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_BANNED: tuple[str, ...] = (
    # sensitive personal attributes (discriminatory or biased tags)
    "ethnicity", "ethnic origin", "race", "racial", "religion", "religious", "faith",
    "health", "disability", "disabled", "medical condition", "illness", "disease", "pregnancy",
    "sexual orientation", "sex life", "gender identity", "transgender", "homosexual",
    "political opinion", "political party", "trade union", "criminal record", "conviction",
    "biometric", "genetic", "income level", "debt",
    "民族", "种族", "宗教", "信仰", "健康", "疾病", "病史", "残疾", "性取向", "性别认同",
    "政治", "党派", "工会", "犯罪记录", "生物识别", "基因",
    # illegal or harmful keywords
    "gambling", "casino", "drug", "narcotic", "pornography", "porn", "terrorism", "self-harm",
    "suicide", "赌博", "博彩", "毒品", "色情", "恐怖主义", "自残", "自杀",
)

# Demographic columns a ranker must never use as input features, matched as whole name tokens
# ("user_age" is caught, "item_average_rating" is not).
RANKING_FORBIDDEN: tuple[str, ...] = (
    "age", "age_band", "birth_year", "birthday", "date_of_birth", "dob",
    "gender", "sex", "male", "female", "occupation", "job", "zip", "zip_code", "zipcode",
    "postcode", "postal_code", "ethnicity", "race", "religion", "nationality", "marital_status",
    "income", "年龄", "性别", "职业", "邮编", "民族",
)


def normalize_text(text: str) -> str:
    """Case-fold, fold full-width and accented forms, and drop everything but letters and digits."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


@lru_cache(maxsize=4096)
def tag_key(name: str) -> str:
    """The form tag and category names are compared in: case-folded, width-folded, single-spaced.
    Memoised: a pure function of a few hundred names (the catalog's categories, users' tags), and
    every personalized list compares its profile's tags."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


class TagRejected(ValueError):
    """A tag may not be recorded; the message says which banned term it matched."""


class TagPolicy(BaseModel):
    """What may never become a tag, and how many derived tags a profile shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    banned: tuple[str, ...] = DEFAULT_BANNED
    min_weight: float = Field(default=0.05, ge=0.0, le=1.0)
    max_tags: int = Field(default=10, ge=1, le=1000)

    @field_validator("banned")
    @classmethod
    def _terms_match_something(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        empty = [term for term in value if not normalize_text(term)]
        if empty:
            raise ValueError(f"banned: terms with no letters or digits match everything: {empty}")
        return value


@lru_cache(maxsize=64)
def _normalized_terms(banned: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((term, normalize_text(term)) for term in banned)


def is_banned(text: str, policy: TagPolicy) -> str | None:
    """The banned term `text` contains after normalisation, or None when it is allowed."""
    if not isinstance(text, str):
        raise TypeError(f"is_banned: expected a string, got {type(text).__name__}")
    return _banned_term(text, policy.banned)


@lru_cache(maxsize=4096)
def _banned_term(text: str, banned: tuple[str, ...]) -> str | None:
    """`is_banned`, memoised: a pure function of the text and the banned terms, asked for every
    derived tag of every personalized list (the same few dozen category names)."""
    normalized = normalize_text(text)
    for term, needle in _normalized_terms(banned):
        if needle in normalized:
            return term
    return None


class Tag(BaseModel):
    """One interest tag as the user sees it: name, weight in [0, 1], where it came from and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    weight: float = Field(ge=0.0, le=1.0)
    source: Literal["history", "user"]
    detail: str

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("name: a tag name must not be blank")
        return value


def derive_tags(
    history_categories: Sequence[Sequence[str]],
    policy: TagPolicy,
    history_label: str = "items in your history",
) -> list[Tag]:
    """Category-affinity tags: a category's weight is the share of history items in it.

    Weights are in [0, 1]; tags below `min_weight` are dropped, the `max_tags` heaviest kept
    (ties by name), and banned categories are never produced. `history_label` names the history
    in each tag's detail, e.g. "items you rated 4+".
    """
    counts: Counter[str] = Counter()
    display: dict[str, str] = {}
    for categories in history_categories:
        if isinstance(categories, str):
            raise TypeError("history_categories: expected one sequence of categories per item, got a string")
        keys = set()
        for category in categories:
            key = tag_key(category)
            if key:
                keys.add(key)
                display.setdefault(key, " ".join(category.split()))
        counts.update(keys)
    n_items = len(history_categories)
    tags = [
        Tag(
            name=display[key],
            weight=count / n_items,
            source="history",
            detail=f"from {count} of {n_items} {history_label}",
        )
        for key, count in counts.items()
        if count / n_items >= policy.min_weight and is_banned(display[key], policy) is None
    ]
    tags.sort(key=lambda tag: (-tag.weight, tag_key(tag.name)))
    return tags[: policy.max_tags]


class Profile(BaseModel):
    """The tags a user sees and the categories serving must leave out.

    `suppressed_categories` (deleted tags) and `excluded_categories` (not interested) hold the
    names as the user gave them plus the derived tag's spelling, so a plain intersection with
    catalog category names works; `suppresses`, `excludes` and `category_mask` also ignore case
    and width.
    """

    model_config = ConfigDict(frozen=True)

    tags: list[Tag]
    suppressed_categories: set[str]
    excluded_categories: set[str]

    def suppresses(self, categories: Iterable[str]) -> bool:
        """True when an item with these categories must not shape the user's vector or features."""
        keys = {tag_key(name) for name in self.suppressed_categories}
        return any(tag_key(category) in keys for category in categories)

    def excludes(self, categories: Iterable[str]) -> bool:
        """True when an item with these categories must stay out of personalized lists."""
        keys = {tag_key(name) for name in self.excluded_categories}
        return any(tag_key(category) in keys for category in categories)


def effective_profile(
    derived: list[Tag],
    deleted: set[str],
    added: set[str],
    not_interested: set[str],
    policy: TagPolicy,
) -> Profile:
    """Apply the user's choices to the derived tags.

    Deleted tags are suppressed (they stop influencing retrieval, ranking and explanations) and
    are not shown again until added back; adding a tag back lifts its deletion. Added interests
    appear with source "user". Not-interested categories are never shown and are excluded from
    personalized lists, whatever else was chosen. Adding a banned tag raises TagRejected.
    """
    for name in sorted(added):
        term = is_banned(name, policy)
        if term is not None:
            raise TagRejected(
                f"tag {name!r} cannot be added: it matches the banned term {term!r} "
                "(sensitive, discriminatory or harmful attributes are never recorded, Art. 10)"
            )
    added_keys = {tag_key(name): _clean(name) for name in added if tag_key(name)}
    excluded = {tag_key(name): _clean(name) for name in not_interested if tag_key(name)}
    suppressed = {tag_key(name): _clean(name) for name in deleted if tag_key(name) and tag_key(name) not in added_keys}
    excluded_names, suppressed_names = set(excluded.values()), set(suppressed.values())

    tags: list[Tag] = []
    for key, name in sorted(added_keys.items()):
        if key not in excluded:
            tags.append(Tag(name=name, weight=1.0, source="user", detail="added by you"))
    for tag in derived:
        key = tag_key(tag.name)
        if key in suppressed:
            suppressed_names.add(tag.name)
        if key in excluded:
            excluded_names.add(tag.name)
        if key in added_keys or key in suppressed or key in excluded or is_banned(tag.name, policy):
            continue
        tags.append(tag)
    return Profile(tags=tags, suppressed_categories=suppressed_names, excluded_categories=excluded_names)


def _clean(name: str) -> str:
    return " ".join(name.split())


def category_mask(item_categories: Sequence[Sequence[str]], categories: set[str]) -> np.ndarray:
    """Boolean mask of the items having any of `categories` (compared as `tag_key` forms)."""
    keys = {tag_key(name) for name in categories}
    if not keys:
        return np.zeros(len(item_categories), dtype=bool)
    return np.fromiter(
        (any(tag_key(c) in keys for c in cats) for cats in item_categories),
        dtype=bool,
        count=len(item_categories),
    )


_TOKEN = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _name_tokens(name: str) -> list[str]:
    return _TOKEN.findall(_CAMEL.sub("_", unicodedata.normalize("NFKC", name)).lower())


def _forbidden_for_ranking(name: str) -> str | None:
    tokens = _name_tokens(name)
    joined = set(tokens)
    compact = normalize_text(name)
    for term in RANKING_FORBIDDEN:
        term_tokens = _name_tokens(term)
        if not term_tokens:  # CJK terms have no ASCII tokens: match them as substrings
            if normalize_text(term) in compact:
                return term
            continue
        if "".join(term_tokens) in joined:
            return term
        width = len(term_tokens)
        if any(tokens[i : i + width] == term_tokens for i in range(len(tokens) - width + 1)):
            return term
    return None


def banned_features(feature_names: Sequence[str], policy: TagPolicy) -> list[str]:
    """The feature names that carry a banned attribute or a demographic column (RANKING_FORBIDDEN)."""
    return [
        name
        for name in feature_names
        if is_banned(name, policy) is not None or _forbidden_for_ranking(name) is not None
    ]
