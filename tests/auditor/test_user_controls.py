"""Art. 17 (draft 15) (auditor/articles/user_controls.py): the switch, tag deletion and explanation-on-request
checks pass on compliant recorded trials and fail on non-compliant ones."""

from __future__ import annotations

import json

from auditor.articles.user_controls import (
    Replay,
    SwitchTrial,
    TagTrial,
    check_explanation_on_request,
    check_personalization_switch,
    check_tag_deletion,
)
from tests.auditor.builders import ex, item, page, rec, rotating, user_settings


# --- Art. 17 (draft 15) switch ----------------------------------------------------------------------------------
def _switch(off_modes=("non_personalized", "non_personalized"), second_list=None, restored_personalization=True):
    trial = SwitchTrial(users=["1", "2"], had_personalized={"1", "2"})
    for user, mode in zip(trial.users, off_modes):
        trial.original[user] = user_settings(user)
        trial.off[user] = user_settings(user, personalization=False)
        items = second_list if (second_list is not None and user == "2") else rotating(0, 5)
        trial.off_list[user] = rec(page(items, user=user, mode=mode))
        trial.on[user] = user_settings(user)
        trial.on_list[user] = rec(page(rotating(50, 5), user=user))
        trial.restored[user] = user_settings(user, personalization=restored_personalization)
    return trial


def test_switch_passes_when_off_is_immediate_identical_and_reversible():
    result = check_personalization_switch(_switch())
    assert result.passed and result.counts["identical_non_personalized_lists"] == 2


def test_switch_fails_when_the_next_list_is_still_personalized():
    result = check_personalization_switch(_switch(off_modes=("personalized", "non_personalized")))
    assert not result.passed and "mode 'personalized'" in result.details[0]


def test_switch_fails_when_non_personalized_lists_differ():
    result = check_personalization_switch(_switch(second_list=rotating(1, 5)))
    assert not result.passed and "differ" in result.details[-1]


def test_switch_fails_when_a_setting_is_not_restored_or_only_one_user_is_known():
    assert not check_personalization_switch(_switch(restored_personalization=False)).passed
    assert not check_personalization_switch(SwitchTrial(users=["1"])).passed


# --- Art. 17 (draft 15) tags ------------------------------------------------------------------------------------
def _tags(tags=(), deleted=()):
    return ex("GET", "/v1/users/3/tags", body={"user_id": "3", "tags": [{"name": t, "weight": 0.5} for t in tags],
                                               "deleted": list(deleted), "not_interested": []})


def _tag_trial(after_items, deleted=("Comedy",), restored=("Comedy", "Drama")):
    cite = item(1, "Comedy", code="interest_tag", text="Matches your interest: Comedy")
    return TagTrial(user_id="3", tag="Comedy", users_tried=1, before=[page([cite], user="3")],
                    delete=_tags(("Drama",), deleted), after=[page(after_items, user="3", session="s2")],
                    tags_after=_tags(("Drama",), deleted), restore=_tags(restored))


def test_tag_deletion_passes_when_no_reason_cites_the_deleted_tag():
    impersonal = item(5, "Comedy", code="popular_in_category", text="Popular in Comedy")
    result = check_tag_deletion(_tag_trial([item(4, "Drama"), impersonal]))
    assert result.passed
    assert result.counts["citations_before"] == 1 and result.counts["impersonal_category_mentions_after"] == 1


def test_tag_deletion_fails_when_an_explanation_still_cites_the_tag():
    cited = item(6, "Comedy", code="interest_tag", text="Matches your interest: comedy")
    result = check_tag_deletion(_tag_trial([cited]))
    assert not result.passed and result.counts["citations_after"] == 1


def test_tag_deletion_fails_when_the_tag_is_not_shown_deleted_or_not_restored():
    assert not check_tag_deletion(_tag_trial([item(4)], deleted=())).passed
    assert not check_tag_deletion(_tag_trial([item(4)], restored=("Drama",))).passed
    assert not check_tag_deletion(TagTrial(users_tried=4)).passed


# --- Art. 17 (draft 15) explanation on request ------------------------------------------------------------------
def test_explanation_on_request_fails_on_a_different_order_or_a_foreign_200():
    served = page(rotating(0, 4))
    same = Replay(served, ex(path="/v1/recommendations/r", body=json.loads(json.dumps(served))))
    foreign_404 = ex(path="/v1/recommendations/r", status=404, body={"detail": "no list"})
    assert check_explanation_on_request([same], [foreign_404]).passed
    reordered = Replay(served, ex(path="/v1/recommendations/r", body=page(list(reversed(rotating(0, 4))))))
    assert not check_explanation_on_request([reordered], [foreign_404]).passed
    foreign_200 = ex(path="/v1/recommendations/r", status=200, body=served)
    result = check_explanation_on_request([same], [foreign_200])
    assert not result.passed and "expected 404" in result.details[0]
