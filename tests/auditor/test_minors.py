"""Art. 18 (draft 16) (auditor/articles/minors.py): minors mode passes with minor_safe labels and counted
refusals, and fails on an unlabelled item, another error or a setting left changed."""

from __future__ import annotations

from auditor.articles.minors import MinorsTrial, check_minors
from auditor.client import Exchange
from tests.auditor.builders import ex, item, page, rec, rotating, user_settings


# --- Art. 18 (draft 16) minors ----------------------------------------------------------------------------------
def _trial(*bodies_or_exchanges: dict | Exchange, restored: Exchange | None = None) -> MinorsTrial:
    """User 4 put in minors mode, these lists (bodies or exchanges) served, the setting restored."""
    responses = [b if isinstance(b, Exchange) else rec(b) for b in bodies_or_exchanges]
    return MinorsTrial("4", user_settings("4", minor_mode=True), responses, user_settings("4"),
                       restored or user_settings("4"))


def test_minors_pass_with_minor_safe_labels_and_counted_refusals():
    curfew = ex("POST", "/v1/recommendations", 403, {"detail": "Rest time", "code": "minors_curfew"})
    result = check_minors(_trial(page(rotating(0, 5), minor_mode=True), curfew))
    assert result.passed and result.counts["refused_curfew"] == 1 and result.counts["items"] == 5


def test_minors_fail_on_an_item_without_the_minor_safe_label():
    result = check_minors(_trial(page([item(1), item(2, labels=())], minor_mode=True)))
    assert not result.passed and result.counts["items_without_minor_safe"] == 1


def test_minors_fail_on_other_errors_and_on_unrestored_settings():
    server_error = ex("POST", "/v1/recommendations", 500, {"detail": "boom"})
    other_403 = ex("POST", "/v1/recommendations", 403, {"detail": "no", "code": "forbidden"})
    assert not check_minors(_trial(server_error)).passed
    assert not check_minors(_trial(other_403)).passed
    left_on = user_settings("4", minor_mode=True)
    assert not check_minors(_trial(page(rotating(0, 2), minor_mode=True), restored=left_on)).passed


def test_minors_fail_without_a_user_or_without_a_request():
    assert not check_minors(MinorsTrial()).passed
    assert not check_minors(_trial()).passed
