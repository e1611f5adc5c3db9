"""Art. 22 (draft 26) (auditor/articles/complaints.py): a complaint goes received -> acknowledged ->
resolved with due dates in order, and only its user can read it."""

from __future__ import annotations

from auditor.articles.complaints import ComplaintTrial, check_complaints
from tests.auditor.builders import ex


# --- Art. 22 (draft 26) complaints ------------------------------------------------------------------------------
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
