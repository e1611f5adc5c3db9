"""Art. 26 (draft 22) (auditor/articles/filing.py): the filing number in every response's header, equal to
the published one, and shown on the HTML notice."""

from __future__ import annotations

from auditor.articles.filing import check_filing
from auditor.client import Exchange
from tests.auditor.builders import FILING, ex, page, rec, rotating


# --- Art. 26 (draft 22) filing ----------------------------------------------------------------------------------
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
