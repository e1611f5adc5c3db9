"""Transparency notice (Art. 16 (draft 14), Art. 26 (draft 22)): the JSON document and its HTML page."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.articles import TEXT, TEXT_ZH
from compliance.minors import MinorsConfig
from compliance.transparency import render_html, transparency_document

FIELDS = dict(
    service_name="Film picks",
    provider="Example Provider Ltd.",
    filing_number="网信算备110108000000000001号",
    model_card={"retrieval": "implicit ALS + Faiss", "ranker": "MLP", "version": 3, "metrics": {"ndcg@10": 0.21}},
    policy_descriptions=["At most 2 items of a category in any 5 consecutive items", "No duplicates across pages"],
    signals_used=["items you rated 4+", "your interest tags"],
    stages=["retrieval", "filters", "ranking", "policy", "explanation"],
    switch_off_instructions="Open Settings and turn off 'Personalised recommendations'.",
    complaint_instructions="File a complaint, report or appeal; we acknowledge within 24 hours.",
    minors=MinorsConfig(),
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_document_says_what_art_16_and_26_require():
    document = transparency_document(**FIELDS)
    assert document["uses_algorithmic_recommendation"] is True
    assert document["filing_number"] == FIELDS["filing_number"]
    assert document["basic_principles"] and document["purpose"]
    assert document["mechanism"]["stages"] == FIELDS["stages"]
    assert document["mechanism"]["signals_used"] == FIELDS["signals_used"]
    assert document["mechanism"]["policies"] == FIELDS["policy_descriptions"]
    assert document["switch_off"] == {
        "instructions": FIELDS["switch_off_instructions"],
        "method": "PUT",
        "path": "/v1/users/{user_id}/settings",
        "body": {"personalization": False},
    }
    assert document["complaints"]["method"] == "POST" and document["complaints"]["path"] == "/v1/complaints"
    minors = document["minors_mode"]
    assert [band["daily_minutes"] for band in minors["daily_limits"]] == [40, 60, 120]
    assert minors["curfew"] == "22:00-06:00 (Asia/Shanghai)" and minors["personalized"] is False
    json.dumps(document)  # served as JSON as is


def test_document_and_page_say_which_text_they_follow():
    """The final Provisions, with the 2021 draft's numbers given as aliases (issue 14)."""
    document = transparency_document(**FIELDS)
    basis = document["legal_basis"]
    assert basis["text"] == TEXT and basis["text_zh"] == TEXT_ZH and basis["draft_aliases"] is True
    page = render_html(document)
    assert html.escape(TEXT) in page and TEXT_ZH in page and "Art. 17 (draft 15)" in page


def test_html_shows_filing_number_first_and_the_switch_off_section():
    page = render_html(transparency_document(**FIELDS))
    assert page.startswith("<!DOCTYPE html>")
    body = page.split("<body>", 1)[1]
    assert body.index(FIELDS["filing_number"]) < body.index("<h1")
    assert "How to switch off personalised recommendations" in page
    assert "如何关闭个性化推荐" in page
    assert "PUT /v1/users/{user_id}/settings" in page
    assert html.escape('{"personalization": false}') in page
    assert "POST /v1/complaints" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    assert "<style>" in page
    collector = _parse(page)
    assert collector.tags.count("h2") >= 6


INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize(
    "field", ["service_name", "provider", "filing_number", "switch_off_instructions", "complaint_instructions"]
)
def test_injected_html_is_escaped(field):
    page = render_html(transparency_document(**{**FIELDS, field: INJECTION}))
    assert "<script" not in page and "<img" not in page
    assert html.escape(INJECTION) in page


def test_injection_in_lists_and_model_card_is_escaped():
    page = render_html(
        transparency_document(
            **{
                **FIELDS,
                "policy_descriptions": [INJECTION],
                "stages": [INJECTION],
                "model_card": {INJECTION: INJECTION, "nested": {"k": INJECTION}},
            }
        )
    )
    assert "<script" not in page and "<img" not in page


@settings(max_examples=60)
@given(text=st.text(min_size=1, max_size=40).filter(lambda t: t.strip()))
def test_any_text_round_trips_escaped(text):
    page = render_html(transparency_document(**{**FIELDS, "provider": text, "filing_number": text}))
    assert html.escape(text.strip()) in page
    assert text.strip() in "".join(_parse(page).text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filing_number": "  "}, "filing_number must be a non-empty string"),
        ({"stages": []}, "stages must list at least one entry"),
        ({"signals_used": "clicks"}, "signals_used must be a list of strings"),
        ({"model_card": {"trained": object()}}, "model_card must be JSON-serialisable"),
        ({"model_card": ["x"]}, "model_card must be a dict"),
    ],
)
def test_bad_inputs_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        transparency_document(**{**FIELDS, **change})


def test_render_rejects_an_incomplete_document():
    with pytest.raises(ValueError, match="document is missing filing_number"):
        render_html({key: value for key, value in transparency_document(**FIELDS).items() if key != "filing_number"})


# -- the hot-list rules (Art. 11, Art. 14 (draft 13); the 2024-25 hot-list campaign: rules published) -------------
@settings(max_examples=20, deadline=None)
@given(window=st.floats(1, 72), share=st.floats(0, 1), min_users=st.integers(1, 20))
def test_the_hot_list_rules_are_published_with_the_parameters_in_force(window, share, min_users):
    from compliance.trending import TRENDING_RULES, TrendingConfig

    config = TrendingConfig(window_hours=window, untrusted_max_share=share, min_distinct_users=min_users)
    document = transparency_document(**FIELDS, trending=config)
    hot_list = document["hot_list"]
    assert [r["rule"] for r in hot_list["rules"]] == [r.name for r in TRENDING_RULES]  # in the order applied
    published = {name: value for rule in hot_list["rules"] for name, value in rule["parameters"].items()}
    assert published == config.model_dump()  # every knob, with the value in force
    assert all(rule["article"].startswith("Art. ") and rule["what"] for rule in hot_list["rules"])
    assert "recsys trending verify" in " ".join(hot_list["verify"]["commands"])
    page = render_html(document)
    text = html.unescape(" ".join(_parse(page).text))
    assert "Hot-list rules" in text and "Manual changes" in text and "How to verify" in text
    for rule in hot_list["rules"]:
        assert rule["what"] in text
    assert f'"untrusted_max_share": {json.dumps(share)}' in text
