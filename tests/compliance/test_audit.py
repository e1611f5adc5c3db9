"""Black-box audit (compliance/audit.py): every check passes on a compliant recorded response and
fails on a non-compliant one; the CLI refuses bad flags and unreachable servers with exit code 2."""

from __future__ import annotations

import json
import socket

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from compliance.audit import (
    AuditConfig,
    AuditError,
    AuditReport,
    ComplaintTrial,
    Exchange,
    ExpectedPolicy,
    Inspector,
    Replay,
    Session,
    SwitchTrial,
    TagTrial,
    check_base_url,
    check_complaints,
    check_dedup,
    check_dispersal,
    check_explanation_on_request,
    check_explanations,
    check_filing,
    check_front_screen,
    check_log,
    check_minors,
    check_personalization_switch,
    check_synthetic_labels,
    check_tag_deletion,
    dispersal_violations,
    expected_policy,
    run_audit,
    sessions_from,
)
from compliance.audit_cli import audit_command, print_failures, render_table
from compliance.policy import PolicyConfig, describe

FILING = "网信算备110108000000000001号"
ROTATION = ("Drama", "Comedy", "Action", "Thriller", "Romance")


# --- hand-made responses ---------------------------------------------------------------------------
def item(item_id, category="Drama", slot="personalized", labels=("minor_safe",), code="popular",
         text="Popular with all users", position=None) -> dict:
    return {"item_id": str(item_id), "position": position, "score": 1.0, "category": category, "slot": slot,
            "labels": list(labels), "reason": {"code": code, "text": text}}


def page(items, page_no=0, surface="home", user="1", session="s1", violations=(), request_id=None, mode="personalized",
         minor_mode=False) -> dict:
    for index, entry in enumerate(items):
        if entry.get("position") is None:
            entry["position"] = index + 1
    return {"request_id": request_id or f"r-{user}-{surface}-{session}-{page_no}", "user_id": user, "surface": surface,
            "page": page_no, "session_id": session, "mode": mode, "minor_mode": minor_mode, "filing_number": FILING,
            "items": list(items), "violations": list(violations)}


def rotating(start: int, n: int) -> list[dict]:
    """n items whose categories rotate through five names: never a dispersal violation."""
    return [item(start + i, ROTATION[(start + i) % len(ROTATION)]) for i in range(n)]


def ex(method="GET", path="/healthz", status=200, body=None, filing=FILING, sent=None) -> Exchange:
    headers = {"x-algorithm-filing-number": filing} if filing is not None else {}
    return Exchange(method, path, status, headers, body if body is not None else {}, sent=sent)


def rec(body: dict, sent: dict | None = None) -> Exchange:
    return ex("POST", "/v1/recommendations", 200, body, sent=sent)


def session(*pages: dict) -> Session:
    return Session(pages[0]["session_id"], pages[0]["user_id"], pages[0]["surface"], list(pages))


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


def test_front_screen_passes_with_mainstream_slots_and_reports_fill_rate():
    feed = page(rotating(20, 10), surface="feed")  # not the front screen: ignored
    result = check_front_screen([_front(), feed])
    assert result.passed and result.counts["front_screens"] == 1 and result.counts["fill_rate"] == 1.0


def test_front_screen_fails_on_an_unreported_non_mainstream_slot():
    result = check_front_screen([_front("personalized")])
    assert not result.passed and "position 5" in result.details[0]
    assert result.counts["fill_rate"] == 0.5


def test_front_screen_slot_the_server_reported_is_counted_not_failed():
    reported = [{"rule": "front_screen", "position": 4, "reason": "filled from outside pool 'mainstream'"}]
    result = check_front_screen([_front("popular", reported)])
    assert result.passed and result.counts["reported_unfilled"] == 1


def test_front_screen_uses_the_declared_positions_and_fails_without_a_front_screen():
    policy = ExpectedPolicy(front_positions=(2,))
    assert not check_front_screen([_front()], policy).passed  # position 2 is personalized
    assert not check_front_screen([page(rotating(0, 5), surface="feed")]).passed


def test_expected_policy_reads_the_policy_texts_the_server_publishes():
    default = expected_policy({"mechanism": {"policies": [t.text for t in describe(PolicyConfig())]}})
    assert (default.front_positions, default.dispersal_window, default.dispersal_max) == ((1, 5), 5, 2)
    assert default.source == "transparency text"
    custom = PolicyConfig.model_validate({
        "dispersal": {"window": 6, "max_per_window": 1, "across_pages": False},
        "front_screen": {"surfaces": ["home", "feed"], "pages": [0, 1], "positions": [2, 7]},
    })
    parsed = expected_policy({"policies": [t.model_dump() for t in describe(custom)]})
    assert parsed.front_positions == (2, 7) and parsed.front_pages == (0, 1)
    assert set(parsed.front_surfaces) == {"home", "feed"}
    assert (parsed.dispersal_window, parsed.dispersal_max, parsed.dispersal_across_pages) == (6, 1, False)


def test_expected_policy_prefers_structured_fields_and_falls_back_to_defaults():
    structured = expected_policy({"policy": {"front_screen": {"positions": [3]},
                                             "dispersal": {"window": 4, "max_per_window": 1}}})
    assert structured.front_positions == (3,) and structured.dispersal_window == 4
    assert expected_policy({}) == ExpectedPolicy()


# --- Art. 15 switch ----------------------------------------------------------------------------------
def _settings(user, personalization=True, minor_mode=None):
    return ex("GET", f"/v1/users/{user}/settings", body={"user_id": user, "personalization": personalization,
                                                           "minor_mode": minor_mode, "minor": bool(minor_mode)})


def _switch(off_modes=("non_personalized", "non_personalized"), second_list=None, restored_personalization=True):
    trial = SwitchTrial(users=["1", "2"], had_personalized={"1", "2"})
    for user, mode in zip(trial.users, off_modes):
        trial.original[user] = _settings(user)
        trial.off[user] = _settings(user, personalization=False)
        items = second_list if (second_list is not None and user == "2") else rotating(0, 5)
        trial.off_list[user] = rec(page(items, user=user, mode=mode))
        trial.on[user] = _settings(user)
        trial.on_list[user] = rec(page(rotating(50, 5), user=user))
        trial.restored[user] = _settings(user, personalization=restored_personalization)
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


# --- Art. 15 tags ------------------------------------------------------------------------------------
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


# --- Art. 15 explanation on request ------------------------------------------------------------------
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


# --- Art. 16 minors ----------------------------------------------------------------------------------
def _minor_lists(*bodies_or_exchanges):
    return [b if isinstance(b, Exchange) else rec(b) for b in bodies_or_exchanges]


def test_minors_pass_with_minor_safe_labels_and_counted_refusals():
    curfew = ex("POST", "/v1/recommendations", 403, {"detail": "Rest time", "code": "minors_curfew"})
    responses = _minor_lists(page(rotating(0, 5), minor_mode=True), curfew)
    result = check_minors("4", _settings("4", minor_mode=True), responses, _settings("4"), _settings("4"))
    assert result.passed and result.counts["refused_curfew"] == 1 and result.counts["items"] == 5


def test_minors_fail_on_an_item_without_the_minor_safe_label():
    unsafe = page([item(1), item(2, labels=())], minor_mode=True)
    result = check_minors("4", _settings("4", minor_mode=True), _minor_lists(unsafe), _settings("4"), _settings("4"))
    assert not result.passed and result.counts["items_without_minor_safe"] == 1


def test_minors_fail_on_other_errors_and_on_unrestored_settings():
    server_error = ex("POST", "/v1/recommendations", 500, {"detail": "boom"})
    other_403 = ex("POST", "/v1/recommendations", 403, {"detail": "no", "code": "forbidden"})
    on = _settings("4", minor_mode=True)
    assert not check_minors("4", on, [server_error], _settings("4"), _settings("4")).passed
    assert not check_minors("4", on, [other_403], _settings("4"), _settings("4")).passed
    ok_list = _minor_lists(page(rotating(0, 2), minor_mode=True))
    assert not check_minors("4", on, ok_list, _settings("4"), _settings("4", minor_mode=True)).passed


# --- Art. 22 filing ----------------------------------------------------------------------------------
def _transparency(number=FILING):
    return ex(path="/v1/transparency", body={"filing_number": number})


def _html(text=f"<p>Algorithm filing number: <strong>{FILING}</strong></p>"):
    return Exchange("GET", "/transparency", 200, {"x-algorithm-filing-number": FILING}, text)


def test_filing_passes_when_every_response_carries_the_published_number():
    exchanges = [ex(), rec(page(rotating(0, 3))), ex(status=404, body={"detail": "x"})]
    result = check_filing(exchanges, _transparency(), _html())
    assert result.passed and result.counts["responses"] == 3


def test_filing_fails_on_a_missing_header():
    exchanges = [ex(), ex(path="/v1/complaints/1", status=404, filing=None)]
    result = check_filing(exchanges, _transparency(), _html())
    assert not result.passed and result.counts["header_missing"] == 1


def test_filing_fails_on_another_number_in_header_body_or_page():
    assert not check_filing([ex(filing="OTHER-1")], _transparency(), _html()).passed
    wrong_body = rec({**page(rotating(0, 2)), "filing_number": "OTHER-1"})
    assert not check_filing([wrong_body], _transparency(), _html()).passed
    assert not check_filing([ex()], _transparency(), _html("<p>no number here</p>")).passed
    assert not check_filing([ex()], ex(path="/v1/transparency", status=500, body={"detail": "x"}), _html()).passed


def test_filing_ignores_requests_that_got_no_response_and_reads_escaped_html():
    lost = Exchange("GET", "/healthz", 0, error="ReadTimeout")
    number = "A&B-0001"
    result = check_filing([ex(filing=number), lost], _transparency(number), _html("<strong>A&amp;B-0001</strong>"))
    assert result.passed and result.counts["no_response"] == 1


# --- Art. 23 log -------------------------------------------------------------------------------------
def test_log_fails_on_an_unretrievable_list_a_broken_chain_or_an_open_verify_endpoint():
    served = page(rotating(0, 2))
    found = Replay(served, ex(body=served))
    verify_ok = ex(path="/v1/admin/logs/verify", body={"ok": True, "records": 10})
    refused = ex(path="/v1/admin/logs/verify", status=401, body={"detail": "token"})
    assert check_log([found], verify_ok, refused).passed
    lost = Replay(served, ex(status=404, body={"detail": "no list"}))
    assert not check_log([found, lost], verify_ok, refused).passed
    broken = ex(path="/v1/admin/logs/verify", body={"ok": False, "first_bad": {"line": 3}})
    assert not check_log([found], broken, refused).passed
    assert not check_log([found], verify_ok, verify_ok).passed


# --- Art. 26 complaints ------------------------------------------------------------------------------
def _complaint(status="resolved", resolution="done", foreign_status=404, ack_due="2026-01-01T10:00:00+00:00"):
    base = {"id": "c1", "user_id": "1", "acknowledge_due": ack_due, "resolve_due": "2026-01-15T09:00:00+00:00"}
    return ComplaintTrial(
        user_id="1", subject_id="r1", resolution="done",
        filed=ex("POST", "/v1/complaints", 201, {**base, "status": "received"}),
        fetched=ex(path="/v1/complaints/c1", body={**base, "status": "received"}),
        foreign=ex(path="/v1/complaints/c1", status=foreign_status, body={"detail": "no"}),
        acknowledged=ex("POST", "/v1/admin/complaints/c1/acknowledge", body={**base, "status": "acknowledged"}),
        resolved=ex("POST", "/v1/admin/complaints/c1/resolve",
                    body={**base, "status": status, "resolution": resolution}),
        final=ex(path="/v1/complaints/c1", body={**base, "status": status, "resolution": resolution}),
    )


def test_complaints_pass_through_received_acknowledged_resolved():
    result = check_complaints(_complaint())
    assert result.passed and result.counts["steps_ok"] == 4


def test_complaints_fail_on_a_wrong_outcome_a_foreign_reader_or_bad_due_dates():
    assert not check_complaints(_complaint(status="rejected")).passed
    assert not check_complaints(_complaint(resolution="something else")).passed
    assert not check_complaints(_complaint(foreign_status=200)).passed
    assert not check_complaints(_complaint(ack_due="2026-02-01T00:00:00+00:00")).passed  # after resolve_due
    assert not check_complaints(ComplaintTrial()).passed


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


# --- configuration, inspector and CLI ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_config_and_url_errors_name_the_flag():
    with pytest.raises(AuditError, match="--pages"):
        AuditConfig(pages=0)
    with pytest.raises(AuditError, match="--user-ids"):
        AuditConfig(user_ids=("ok", "not ok"))
    with pytest.raises(AuditError, match="--url"):
        check_base_url("127.0.0.1:8000")
    assert check_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_inspector_records_lost_requests_and_stops_at_its_budget():
    inspector = Inspector(f"http://127.0.0.1:{_free_port()}", AuditConfig(timeout_s=2.0))
    inspector.max_requests = 2
    try:
        assert inspector.request("GET", "/healthz").status == 0
        inspector.recommend("1", "home")
        with pytest.raises(AuditError, match="budget of 2"):
            inspector.request("GET", "/healthz")
    finally:
        inspector.close()
    assert all(e.error for e in inspector.exchanges)


def test_run_audit_refuses_an_unreachable_server():
    with pytest.raises(AuditError, match="cannot reach"):
        run_audit(f"http://127.0.0.1:{_free_port()}", AuditConfig(timeout_s=2.0))


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("audit")(audit_command)
    app.command("noop")(lambda: None)
    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://example"], "--url"),
        (["--url", "http://127.0.0.1:{port}"], "cannot reach"),
        (["--url", "http://127.0.0.1:{port}", "--out", "/no/such/dir/report.json"], "--out"),
        (["--url", "http://127.0.0.1:{port}", "--user-ids", "a b"], "--user-ids"),
    ],
)
def test_cli_exits_2_with_a_message_naming_the_problem(args, message):
    port = _free_port()
    result = CliRunner().invoke(_cli(), ["audit", *[a.format(port=port) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_help_describes_the_audit():
    result = CliRunner().invoke(_cli(), ["audit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "over HTTP only" in result.output and "--user-ids" in result.output


def test_table_and_failures_render_text_with_brackets_verbatim():
    failing = check_dedup([session(page(rotating(0, 3) + [item(1)]))])
    failing.details.append("item ['x'] [red]not markup[/red]")
    passing = check_explanations([page(rotating(0, 2))])
    report = AuditReport("http://127.0.0.1:1", "t0", "t1", {}, {}, {}, ["1"], [failing, passing], {"checks": 2})
    console = Console(record=True, width=200)
    console.print(render_table(report))
    print_failures(console, report, per_check=5)
    text = console.export_text()
    assert "FAIL (1)" in text and "pass" in text and "[red]not markup[/red]" in text
    assert not report.passed and "admin_token" not in json.dumps(report.to_dict())
