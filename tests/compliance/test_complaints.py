"""Complaints, reports and appeals (Art. 22 (draft 26)): status flow, deadlines and input validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from compliance.complaints import (
    ALLOWED_TRANSITIONS,
    STATUSES,
    ComplaintIn,
    ComplaintOut,
    ComplaintsConfig,
    TransitionError,
    due_dates,
    open_case,
    overdue,
    parse_complaint,
    transition,
)

CONFIG = ComplaintsConfig()
FILED = datetime(2024, 6, 3, 9, 30, tzinfo=timezone.utc)
VALID = {"kind": "complaint", "subject_type": "item", "subject_id": "42", "user_id": "u1", "text": "Wrong label."}


@given(current=st.sampled_from(STATUSES), new=st.sampled_from(STATUSES))
def test_transition_allows_exactly_the_declared_flow(current, new):
    expected = (current, new) in {
        ("received", "acknowledged"),
        ("acknowledged", "resolved"),
        ("acknowledged", "rejected"),
    }
    if expected:
        assert transition(current, new) == new
    else:
        with pytest.raises(TransitionError, match=f"cannot move a case from '{current}' to '{new}'"):
            transition(current, new)


@given(path=st.lists(st.sampled_from(STATUSES), max_size=6))
def test_any_walk_ends_in_at_most_two_steps_and_never_leaves_a_final_status(path):
    status, steps = "received", 0
    for new in path:
        try:
            status = transition(status, new)
            steps += 1
        except TransitionError:
            continue
    assert steps <= 2
    assert steps != 2 or status in ("resolved", "rejected")
    assert ALLOWED_TRANSITIONS["resolved"] == ALLOWED_TRANSITIONS["rejected"] == frozenset()


def test_transition_messages_list_allowed_and_unknown_statuses():
    with pytest.raises(TransitionError, match="allowed next: acknowledged"):
        transition("received", "resolved")
    with pytest.raises(TransitionError, match="'resolved' is final"):
        transition("resolved", "acknowledged")
    with pytest.raises(TransitionError, match="new status 'closed' is unknown; statuses are received"):
        transition("received", "closed")


@given(
    created=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    hours=st.integers(1, 72),
    days=st.integers(3, 60),
)
def test_due_dates_follow_the_config(created, hours, days):
    config = ComplaintsConfig(acknowledge_within_hours=hours, resolve_within_days=days)
    ack, resolve = due_dates(created.replace(tzinfo=timezone.utc), config)
    assert ack - created.replace(tzinfo=timezone.utc) == timedelta(hours=hours)
    assert resolve - created.replace(tzinfo=timezone.utc) == timedelta(days=days)
    assert ack <= resolve


def test_default_deadlines_and_naive_times():
    ack, resolve = due_dates(FILED, CONFIG)
    assert ack == FILED + timedelta(hours=24) and resolve == FILED + timedelta(days=15)
    with pytest.raises(ValueError, match="created_at: timezone-aware datetime required"):
        due_dates(datetime(2024, 6, 3), CONFIG)


def test_open_case_and_overdue():
    case = open_case(ComplaintIn(**VALID), "c-1", FILED, CONFIG)
    assert case.status == "received" and case.acknowledge_due == FILED + timedelta(hours=24)
    assert overdue(case, FILED + timedelta(hours=1)) is None
    assert overdue(case, FILED + timedelta(hours=25)) == "acknowledge"
    acknowledged = case.model_copy(update={"status": transition(case.status, "acknowledged")})
    assert overdue(acknowledged, FILED + timedelta(days=2)) is None
    assert overdue(acknowledged, FILED + timedelta(days=16)) == "resolve"
    closed = acknowledged.model_copy(update={"status": transition("acknowledged", "resolved")})
    assert overdue(closed, FILED + timedelta(days=100)) is None
    assert ComplaintOut.model_validate(case.model_dump()) == case


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "praise"}, "kind"),
        ({"subject_type": "user"}, "subject_type"),
        ({"subject_id": None}, "subject_id: required when subject_type is 'item'"),
        ({"subject_id": "  "}, "subject_id: required"),
        ({"text": "   "}, "text: describe the problem"),
        ({"text": "x" * 2001}, "text: at most 2000 characters allowed, got 2001"),
        ({"user_id": ""}, "user_id"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_bad_complaints_name_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        ComplaintIn(**{**VALID, **change})


def test_text_limit_comes_from_the_deployment_config():
    config = ComplaintsConfig(max_text_chars=50)
    with pytest.raises(ValidationError, match="at most 50 characters"):
        parse_complaint({**VALID, "text": "y" * 51}, config)
    assert parse_complaint({**VALID, "subject_type": "other", "subject_id": None}, config).subject_id is None
    assert ComplaintIn(**{**VALID, "text": "  spaced  "}).text == "spaced"


def test_config_validation():
    with pytest.raises(ValidationError, match="acknowledge_within_hours"):
        ComplaintsConfig(acknowledge_within_hours=0)
    with pytest.raises(ValidationError, match=r"must not exceed resolve_within_days \(1\) x 24"):
        ComplaintsConfig(acknowledge_within_hours=48, resolve_within_days=1)
