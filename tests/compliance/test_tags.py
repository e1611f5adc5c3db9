"""User tags (Art. 10, Art. 17 (draft 15)): derivation, user choices and the banned-term filter, as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from compliance.tags import (
    DEFAULT_BANNED,
    RANKING_FORBIDDEN,
    Tag,
    TagPolicy,
    TagRejected,
    banned_features,
    category_mask,
    derive_tags,
    effective_profile,
    is_banned,
    tag_key,
)

POLICY = TagPolicy()
GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western", "unknown", "cat00", "cat17", "喜剧", "动画",
]
BANNED_CATEGORIES = ["Religion", "Health", "Gambling", "宗教", "赌博", "Sexual orientation", "毒品"]
categories = st.sampled_from(GENRES + BANNED_CATEGORIES)
histories = st.lists(st.lists(categories, min_size=0, max_size=4), min_size=0, max_size=60)
tag_names = st.sets(st.sampled_from(GENRES), max_size=6)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ("\u3000" if ch == " " else ch) for ch in text)


@st.composite
def disguised(draw, term: str) -> str:
    """The term with random casing, full-width forms and separators between characters, in context."""
    chars = []
    for ch in term:
        if ch == " ":
            chars.append(draw(st.sampled_from([" ", "", "_", "-", "  ", "\u3000"])))
            continue
        ch = ch.upper() if draw(st.booleans()) else ch
        ch = _fullwidth(ch) if draw(st.booleans()) else ch
        chars.append(ch)
        chars.append(draw(st.sampled_from(["", "", " ", ".", "-", "\u200b", "·"])))
    prefix = draw(st.sampled_from(["", "I like ", "喜欢", "#"]))
    suffix = draw(st.sampled_from(["", "!", " stuff", "。"]))
    return prefix + "".join(chars) + suffix


@given(data=st.data(), term=st.sampled_from(DEFAULT_BANNED))
def test_is_banned_sees_through_case_width_spacing_and_punctuation(data, term):
    text = data.draw(disguised(term))
    assert is_banned(text, POLICY) is not None, text


@pytest.mark.parametrize("genre", GENRES)
def test_ordinary_genres_are_not_banned(genre):
    assert is_banned(genre, POLICY) is None


@given(history=histories)
def test_derived_tags_are_weighted_bounded_and_never_banned(history):
    tags = derive_tags(history, POLICY)
    assert len(tags) <= POLICY.max_tags
    assert all(0.0 <= tag.weight <= 1.0 and tag.weight >= POLICY.min_weight for tag in tags)
    assert all(is_banned(tag.name, POLICY) is None for tag in tags)
    assert all(tag.source == "history" for tag in tags)
    assert [tag.weight for tag in tags] == sorted((tag.weight for tag in tags), reverse=True)
    assert len({tag_key(tag.name) for tag in tags}) == len(tags)


def test_weight_is_the_share_of_history_items_in_the_category():
    history = [["Comedy", "Romance"], ["Comedy"], ["Drama"], ["Comedy", "comedy"]]
    tags = {tag.name: tag for tag in derive_tags(history, POLICY, history_label="items you rated 4+")}
    assert tags["Comedy"].weight == 0.75
    assert tags["Comedy"].detail == "from 3 of 4 items you rated 4+"
    assert tags["Drama"].weight == 0.25 and tags["Romance"].weight == 0.25
    assert derive_tags([], POLICY) == []


def test_min_weight_and_max_tags_come_from_the_policy():
    history = [[genre] for genre in GENRES[:12]] + [["Comedy"]] * 12
    policy = TagPolicy(min_weight=0.1, max_tags=3)
    tags = derive_tags(history, policy)
    assert [tag.name for tag in tags] == ["Comedy"]
    assert len(derive_tags(history, TagPolicy(min_weight=0.0, max_tags=3))) == 3


@given(history=histories, deleted=tag_names, added=tag_names, not_interested=tag_names)
def test_user_choices_always_win(history, deleted, added, not_interested):
    profile = effective_profile(derive_tags(history, POLICY), deleted, added, not_interested, POLICY)
    shown = {tag_key(tag.name) for tag in profile.tags}
    for name in deleted - added:  # deleted and not added back: never shown, always suppressed
        assert tag_key(name) not in shown
        assert name in profile.suppressed_categories and profile.suppresses([name.upper()])
    for name in not_interested:  # not interested: never shown, always excluded
        assert tag_key(name) not in shown
        assert name in profile.excluded_categories and profile.excludes([name.upper()])
    for name in added - not_interested:
        assert any(tag_key(tag.name) == tag_key(name) and tag.source == "user" for tag in profile.tags)
    assert all(is_banned(tag.name, POLICY) is None for tag in profile.tags)


@given(history=histories)
def test_deleted_tag_stays_gone_until_added_back(history):
    derived = derive_tags(history, POLICY)
    if not derived:
        return
    target = derived[0].name
    again = derive_tags(history + [[target]], POLICY)  # more history in the category changes nothing
    profile = effective_profile(again, {target.lower()}, set(), set(), POLICY)
    assert tag_key(target) not in {tag_key(tag.name) for tag in profile.tags}
    assert profile.suppresses([target])
    restored = effective_profile(again, {target.lower()}, {target}, set(), POLICY)
    assert not restored.suppresses([target])
    assert tag_key(target) in {tag_key(tag.name) for tag in restored.tags}


@pytest.mark.parametrize("name", ["Religion", "ＨＥＡＬＴＨ", "sexual-orientation", "宗 教", "赌博游戏"])
def test_adding_a_banned_tag_is_rejected_with_the_term(name):
    with pytest.raises(TagRejected, match=r"matches the banned term .* Art\. 10"):
        effective_profile([], set(), {name}, set(), POLICY)


def test_suppressed_sets_carry_the_catalog_spelling_of_derived_tags():
    derived = derive_tags([["Comedy"], ["Drama"]], POLICY)
    profile = effective_profile(derived, {"comedy"}, set(), {"DRAMA"}, POLICY)
    assert {"Comedy", "comedy"} == profile.suppressed_categories  # plain set intersection with catalog names works
    assert {"Drama", "DRAMA"} == profile.excluded_categories
    assert profile.tags == []


def test_category_mask_ignores_case():
    profile = effective_profile([], {"comedy"}, set(), {"HORROR"}, POLICY)
    items = [["Comedy", "Drama"], ["Horror"], ["Drama"], []]
    assert category_mask(items, profile.suppressed_categories).tolist() == [True, False, False, False]
    assert category_mask(items, profile.excluded_categories).tolist() == [False, True, False, False]


def test_banned_features_catches_demographics_and_sensitive_attributes_only():
    names = [
        "user_age", "gender_F", "occupation_student", "zip_code", "userZipCode", "user_religion_onehot",
        "sex", "用户年龄", "item_average_rating", "usage_minutes", "page_rank", "als_score",
        "item_popularity", "genre_share_comedy", "user_item_dot",
    ]
    assert banned_features(names, POLICY) == names[:8]
    assert all(banned_features([term], POLICY) == [term] for term in RANKING_FORBIDDEN)


def test_policy_and_tag_validation_name_the_field():
    with pytest.raises(ValidationError, match="min_weight"):
        TagPolicy(min_weight=1.5)
    with pytest.raises(ValidationError, match="match everything"):
        TagPolicy(banned=("gambling", " - "))
    with pytest.raises(ValidationError, match="weight"):
        Tag(name="Comedy", weight=1.2, source="history", detail="")
    with pytest.raises(ValidationError, match="must not be blank"):
        Tag(name="   ", weight=0.5, source="user", detail="")
    custom = TagPolicy(banned=("astrology",))
    assert is_banned("ASTRO logy", custom) == "astrology" and is_banned("religion", custom) is None
