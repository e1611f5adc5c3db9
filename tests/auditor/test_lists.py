"""Art. 9, Art. 11, Art. 12 read off served lists (auditor/articles/lists.py): each check passes on a
compliant recorded response and fails on a non-compliant one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.articles.lists import (
    Session,
    check_dedup,
    check_dispersal,
    check_explanations,
    check_front_screen,
    check_synthetic_labels,
    dispersal_violations,
    sessions_from,
)
from auditor.policy import ExpectedPolicy
from compliance.policy import PolicyConfig
from tests.auditor.builders import ex, item, page, rec, rotating, session


# --- Art. 12 de-duplication ------------------------------------------------------------------------
def test_dedup_passes_a_clean_session_and_notes_content_duplicates_are_not_visible():
    result = check_dedup([session(page(rotating(0, 10)), page(rotating(10, 10), page_no=1))])
    assert result.passed and result.counts["items"] == 20
    assert any("content duplicates" in note for note in result.notes)


def test_dedup_fails_on_an_item_twice_in_one_list():
    items = rotating(0, 5) + [item(3, "Drama")]
    result = check_dedup([session(page(items))])
    assert not result.passed and result.counts["duplicates_within_list"] == 1
    assert "item 3 twice" in result.details[0]


def test_dedup_fails_on_an_item_repeated_on_a_later_page():
    result = check_dedup([session(page(rotating(0, 10)), page(rotating(9, 10), page_no=1))])
    assert not result.passed and result.counts["duplicates_across_pages"] == 1
    assert "already shown on page 0" in result.details[0]


def test_dedup_fails_when_the_server_changes_the_session_id():
    second = page(rotating(10, 5), page_no=1, session="other")
    result = check_dedup([Session("s1", "1", "home", [page(rotating(0, 5)), second])])
    assert not result.passed and result.counts["session_id_mismatches"] == 1


def test_dedup_fails_when_nothing_was_served():
    assert not check_dedup([]).passed


# --- Art. 12 dispersal -----------------------------------------------------------------------------
def test_dispersal_violation_not_reported_by_the_server_fails():
    items = [item(1, "A"), item(2, "A"), item(3, "A"), item(4, "B"), item(5, "C")]
    result = check_dispersal([session(page(items))], window=5, max_per_window=2)
    assert not result.passed
    assert result.counts["violations_observed"] == 1 and result.counts["violations_unreported"] == 1
    assert "position 3" in result.details[0]


def test_dispersal_violation_reported_by_the_server_is_counted_not_failed():
    items = [item(1, "A"), item(2, "A"), item(3, "A"), item(4, "B"), item(5, "C")]
    reported = [{"rule": "dispersal", "position": 2, "reason": "3 items with category A in 5 positions"}]
    result = check_dispersal([session(page(items, violations=reported))], window=5, max_per_window=2)
    assert result.passed
    assert result.counts["violations_reported_by_server"] == 1 and result.counts["server_reported_total"] == 1


def test_dispersal_accepts_a_server_that_reports_positions_from_one():
    items = [item(1, "A"), item(2, "A"), item(3, "A"), item(4, "A"), item(5, "B")]
    from_one = [{"rule": "dispersal", "position": p, "reason": "x"} for p in (3, 4)]
    assert check_dispersal([session(page(items, violations=from_one))]).passed
    assert not check_dispersal([session(page(items, violations=from_one[:1]))]).passed


def test_dispersal_is_counted_across_page_boundaries():
    first = page([item(1, "B"), item(2, "C"), item(3, "D"), item(4, "A"), item(5, "A")])
    second = page([item(6, "A"), item(7, "E")], page_no=1)
    assert not check_dispersal([session(first, second)]).passed
    assert check_dispersal([session(first, second)], across_pages=False).passed


def test_dispersal_fails_on_items_without_a_category():
    result = check_dispersal([session(page([item(1, ""), item(2, "B")]))])
    assert not result.passed and result.counts["items_without_category"] == 1


def _brute_force(categories, window, limit):
    return [i for i in range(len(categories))
            if sum(1 for j in range(max(0, i - window + 1), i + 1) if categories[j] == categories[i]) > limit]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("ABC"), max_size=30), st.integers(2, 6), st.integers(1, 3))
def test_dispersal_violations_match_the_definition(categories, window, limit):
    assert dispersal_violations(categories, window, limit) == _brute_force(categories, window, limit)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("ABC"), min_size=1, max_size=20))
def test_dispersal_check_passes_exactly_when_every_violation_is_reported(categories):
    window, limit = 4, 1
    violations = _brute_force(categories, window, limit)
    items = [item(i, c) for i, c in enumerate(categories)]
    all_reported = [{"rule": "dispersal", "position": p, "reason": "x"} for p in violations]
    assert check_dispersal([session(page(items, violations=all_reported))], window, limit).passed
    if violations:
        assert not check_dispersal([session(page(items, violations=all_reported[1:]))], window, limit).passed


# --- Art. 12 explanations --------------------------------------------------------------------------
def test_explanations_fail_on_empty_text_or_missing_reason():
    good = page(rotating(0, 3))
    assert check_explanations([good]).passed
    empty = page([item(1, text=" ")])
    missing = page([{**item(2), "reason": None}])
    result = check_explanations([good, empty, missing])
    assert not result.passed and result.counts["items_without_reason"] == 2


# --- Art. 11 front screen --------------------------------------------------------------------------
def _front(slot_at_5="mainstream", violations=()):
    items = rotating(0, 10)
    items[0]["slot"] = "mainstream"
    items[4]["slot"] = slot_at_5
    return page(items, violations=violations)


FIXED = ExpectedPolicy(front_positions=(1, 5), front_count=None)  # a server configured with positions 1 and 5


def test_the_contract_defaults_are_the_servers_default_policy():
    # A server that declares nothing is held to what the server does by default: "at least 2
    # editorial items within positions 1-10" on page 0 of home, dispersal 2 in any 5 positions.
    server, audit = PolicyConfig(), ExpectedPolicy()
    assert (audit.front_positions, audit.front_count) == (tuple(server.front_screen.positions), server.front_screen.count)
    assert (audit.front_surfaces, audit.front_pages, audit.front_pool) == (
        tuple(server.front_screen.surfaces), tuple(server.front_screen.pages), server.front_screen.pool)
    assert (audit.dispersal_window, audit.dispersal_max, audit.dispersal_across_pages) == (
        server.dispersal.window, server.dispersal.max_per_window, server.dispersal.across_pages)


def test_front_screen_passes_with_mainstream_slots_and_reports_fill_rate():
    feed = page(rotating(20, 10), surface="feed")  # not the front screen: ignored
    result = check_front_screen([_front(), feed])
    assert result.passed and result.counts["front_screens"] == 1 and result.counts["fill_rate"] == 1.0


def test_front_screen_fails_on_an_unreported_non_mainstream_slot():
    result = check_front_screen([_front("personalized")], FIXED)
    assert not result.passed and "position 5" in result.details[0]
    assert result.counts["fill_rate"] == 0.5
    # "at least 2 of 1-10" (the default): one editorial item short, reported missing at position 10
    flexible = check_front_screen([_front("personalized")])
    assert not flexible.passed and "position 10" in flexible.details[0] and flexible.counts["fill_rate"] == 0.5


def test_front_screen_slot_the_server_reported_is_counted_not_failed():
    reported = [{"rule": "front_screen", "position": 4, "reason": "filled from outside pool 'mainstream'"}]
    result = check_front_screen([_front("popular", reported)], FIXED)
    assert result.passed and result.counts["reported_unfilled"] == 1
    at_ten = [{"rule": "front_screen", "position": 9, "reason": "only 1 of the 2 required items"}]
    assert check_front_screen([_front("popular", at_ten)]).passed


def test_front_screen_at_least_n_accepts_editorial_items_anywhere_in_the_positions():
    items = rotating(0, 10)
    items[2]["slot"] = items[7]["slot"] = "mainstream"
    result = check_front_screen([page(items)])
    assert result.passed and result.counts["expected_slots"] == 2 and result.counts["fill_rate"] == 1.0


def test_front_screen_uses_the_declared_positions_and_fails_without_a_front_screen():
    policy = ExpectedPolicy(front_positions=(2,))
    assert not check_front_screen([_front()], policy).passed  # position 2 is personalized
    assert not check_front_screen([page(rotating(0, 5), surface="feed")]).passed


# --- Art. 9 synthetic label --------------------------------------------------------------------------
def test_synthetic_label_fails_when_an_ai_generated_item_loses_its_label():
    labelled = page([item(7, labels=("ai_generated",)), item(8)])
    assert check_synthetic_labels([labelled, labelled]).passed
    dropped = page([item(7, labels=())], session="s2")
    result = check_synthetic_labels([labelled, dropped])
    assert not result.passed and result.counts["label_dropped"] == 1


# --- recorded exchanges ------------------------------------------------------------------------------
def test_sessions_are_grouped_by_the_session_id_the_audit_sent():
    first = page(rotating(0, 3), session="A")
    second = page(rotating(3, 3), page_no=1, session="B")  # the server answered with another id
    other = page(rotating(0, 3), session="C", user="2")
    exchanges = [rec(first, {"user_id": "1", "surface": "home", "page": 0}),
                 rec(second, {"user_id": "1", "surface": "home", "page": 1, "session_id": "A"}),
                 rec(other, {"user_id": "2", "surface": "home", "page": 0}),
                 ex("POST", "/v1/recommendations", 403, {"code": "minors_curfew"})]
    sessions = sessions_from(exchanges)
    assert [len(s.pages) for s in sessions] == [2, 1]
    assert check_dedup(sessions).counts["session_id_mismatches"] == 1
