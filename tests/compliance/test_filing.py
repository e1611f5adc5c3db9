"""Filing package (Art. 23 (draft 19), Art. 24 (draft 20)): every Art. 24 (draft 20) field, readable renderings, change records, files."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.filing import (
    FILED_FIELDS,
    FilingError,
    FilingInfo,
    add_working_days,
    build_filing,
    change_record,
    read_filing,
    render_html,
    render_markdown,
    write_filing,
)
from compliance.articles import TEXT
from compliance.review import ReviewConfig, review

TODAY = date(2024, 6, 3)  # a Monday

PROVIDER = FilingInfo(
    provider_name="Example Provider Ltd.",
    service_name="Example Films",
    filing_number="NET-2024-0001",
    service_start=date(2024, 5, 27),
    user_scale="about 1 million monthly users",
)
MODEL = {
    "registered_name": "recsys-two-stage",
    "version": 3,
    "run_id": "abc123",
    "metrics": {"recall_at_10": 0.21, "ndcg_at_10": 0.18, "catalog_coverage": 0.4},
    "params": {"als_factors": 64, "ranker": "mlp"},
    "feature_names": ["als_score", "item_popularity", "category_match"],
    "data": {"dataset": "MovieLens-100K", "interactions": 55375, "positives": "rating >= 4"},
}
POLICY = {
    "config": {"dispersal": {"window": 5, "max_per_category": 2}},
    "hash": "sha256:policy-1",
    "descriptions": {"dispersal": "At most 2 items of a category in any 5 consecutive positions."},
}
AUDIT = review({"dominant_category_amplification": 1.2, "model/dominant_category_amplification": 1.4,
                "category_diversity": 4.0, "dispersal_violation_rate": 0.0,
                "dedup_violation_rate": 0.0, "flagged_served_rate": 0.0, "feedback_rejected_item_share": 0.0}, ReviewConfig()).to_dict()


def filing(**changes) -> dict:
    model = {**MODEL, **changes.pop("model", {})}
    policy = {**POLICY, **changes.pop("policy", {})}
    provider = PROVIDER.model_copy(update=changes.pop("provider", {}))
    return build_filing(provider, model, policy, changes.pop("audit", AUDIT), changes.pop("today", TODAY))


def test_filing_holds_every_field_article_24_names():
    f = filing()
    assert f["provider"]["provider_name"] == "Example Provider Ltd."
    assert f["provider"]["service_form"] and f["provider"]["application_field"]
    assert f["provider"]["algorithm_type"] == "personalised push; sorting and selection; retrieval and filtering"
    sa = f["self_assessment"]
    assert sa["data_used"]["dataset"] == "MovieLens-100K"
    assert sa["features"] == MODEL["feature_names"]
    names = {s["name"] for s in sa["safeguards"]}
    assert {"dedup", "dispersal", "minors_mode", "personalization_switch", "logs"} <= names
    assert next(s for s in sa["safeguards"] if s["name"] == "dispersal")["description"].startswith("At most 2")
    assert sa["quality"]["recall_at_10"] == 0.21
    assert sa["compliance"]["passed"] is True and len(sa["compliance"]["checks"]) == 7
    assert sa["model"]["version"] == "3" and sa["policy"]["hash"] == "sha256:policy-1"
    public = f["public_content"]
    assert all(public[k] for k in ("basic_principle", "purpose", "mechanism"))
    assert "recsys-two-stage version 3" in public["basic_principle"]
    assert f["classification"]["filing_required"] is True
    assert f["deadlines"]["initial_filing_due"] == "2024-06-10"  # 10 working days after Mon 27 May
    assert f["fingerprint"].startswith("sha256:")
    assert f["legal_basis"]["text"] == TEXT and f["legal_basis"]["draft_aliases"] is True
    assert f["articles"] == "Art. 23 (draft 19), Art. 24 (draft 20)"
    json.dumps(f)  # JSON-ready throughout


def test_failed_or_missing_audit_is_stated_in_the_conclusion():
    failing = review({"dominant_category_amplification": 2.5}, ReviewConfig()).to_dict()
    conclusion = filing(audit=failing)["self_assessment"]["conclusion"]
    assert "dominant_category_amplification" in conclusion and "category_diversity" in conclusion
    assert "No audit" in filing(audit=None)["self_assessment"]["conclusion"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"model": {"registered_name": ""}}, "model: registered_name"),
        ({"policy": {"hash": None}}, "policy: hash"),
        ({"audit": {"checks": ["not a check"]}}, "audit.checks[0]"),
    ],
)
def test_bad_inputs_name_the_argument_and_field(kwargs, fragment):
    with pytest.raises(FilingError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        filing(**kwargs)
    with pytest.raises(FilingError, match="model: expected a dict"):
        build_filing(PROVIDER, ["not", "a", "dict"], POLICY, None, TODAY)
    with pytest.raises(ValueError, match="provider_name"):
        FilingInfo(provider_name="  ")


def test_markdown_and_html_are_readable_and_self_contained():
    f = filing(provider={"provider_name": "A <b>&</b> | Co"})
    markdown = render_markdown(f)
    for heading in ("Provider and service", "Classification", "safeguards", "quality", "compliance", "publicised"):
        assert heading in markdown
    assert "A <b>&</b> \\| Co" in markdown and "NET-2024-0001" in markdown
    assert TEXT in markdown and "2021 draft's numbers as aliases" in markdown
    page = render_html(f)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "A &lt;b&gt;&amp;&lt;/b&gt; | Co" in page and "<b>&</b>" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    failing = review({"dominant_category_amplification": 2.5}, ReviewConfig()).to_dict()
    assert 'class="fail"' in render_html(filing(audit=failing))


def test_change_record_lists_changed_filed_fields_with_a_ten_working_day_deadline():
    before = filing()
    after = filing(model={"version": 4, "run_id": "def456", "metrics": {"recall_at_10": 0.25}},
                   policy={"hash": "sha256:policy-2"}, today=TODAY + timedelta(days=4))
    record = change_record(before, after, date(2024, 6, 7))  # a Friday
    fields = [c["field"] for c in record["changes"]]
    assert "self_assessment.model.version" in fields and "self_assessment.policy.hash" in fields
    assert "public_content.basic_principle" in fields  # names the model in service
    assert not any("quality" in f or "run_id" in f for f in fields)
    assert record["deadline"] == "2024-06-21"  # ten working days (final Art. 24 (draft 20) para. 2)
    assert "ten working days" in record["article"]
    assert record["filing_number"] == "NET-2024-0001"
    version = next(c for c in record["changes"] if c["field"] == "self_assessment.model.version")
    assert (version["previous"], version["current"]) == ("3", "4")


def test_no_change_record_when_only_metrics_audit_or_date_moved():
    before = filing()
    after = filing(model={"metrics": {"recall_at_10": 0.3}, "run_id": "other"}, audit=None, today=TODAY + timedelta(days=30))
    assert change_record(before, after, TODAY) is None
    assert before["fingerprint"] == after["fingerprint"]
    with pytest.raises(FilingError, match="previous: not a filing package"):
        change_record({"model": 1}, after, TODAY)


def test_feature_name_change_is_a_change():
    record = change_record(filing(), filing(model={"feature_names": ["als_score"]}), TODAY)
    assert [c["field"] for c in record["changes"]] == ["self_assessment.features"]


def test_deadline_skips_weekends_holidays_and_counts_working_weekends():
    assert add_working_days(date(2024, 6, 7), 5) == date(2024, 6, 14)
    assert add_working_days(date(2024, 6, 7), 5, holidays={date(2024, 6, 10)}) == date(2024, 6, 17)
    assert add_working_days(date(2024, 6, 7), 5, working_weekends={date(2024, 6, 8)}) == date(2024, 6, 13)
    record = change_record(filing(), filing(policy={"hash": "x"}), date(2024, 9, 30),
                           holidays={date(2024, 10, d) for d in range(1, 8)})
    assert record["deadline"] == "2024-10-21"  # National Day week skipped


@settings(max_examples=100, deadline=None)
@given(start=st.dates(date(2020, 1, 1), date(2030, 12, 31)), days=st.integers(1, 30),
       holidays=st.sets(st.dates(date(2020, 1, 1), date(2031, 3, 31)), max_size=20))
def test_property_deadline_is_exactly_n_working_days_later(start, days, holidays):
    deadline = add_working_days(start, days, holidays)
    span = [start + timedelta(days=i) for i in range(1, (deadline - start).days + 1)]
    working = [d for d in span if d.weekday() < 5 and d not in holidays]
    assert len(working) == days and working[-1] == deadline


def test_write_filing_writes_all_files_and_a_change_record_only_on_change(tmp_path):
    first = filing()
    written = write_filing(tmp_path, first)
    assert {p.name for p in written.values()} == {"filing.json", "filing.md", "filing.html"}
    assert read_filing(tmp_path / "filing.json") == first
    assert not (tmp_path / "change-record.json").exists()
    second = filing(model={"version": 4})
    written = write_filing(tmp_path, second, previous=read_filing(tmp_path / "filing.json"), changed_on=date(2024, 6, 5))
    record = json.loads(written["change_record"].read_text())
    assert record["changed_on"] == "2024-06-05" and record["deadline"] == "2024-06-19"
    assert "change_record" not in write_filing(tmp_path, second, previous=second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["change-record.json", "filing.html", "filing.json", "filing.md"]


def test_read_filing_names_the_bad_file(tmp_path):
    path = tmp_path / "filing.json"
    path.write_text("{broken")
    with pytest.raises(FilingError, match="filing.json: cannot read"):
        read_filing(path)
    path.write_text("{}")
    with pytest.raises(FilingError, match="filing.json: not a filing package"):
        read_filing(path)


def test_filed_fields_all_exist_in_a_built_filing():
    f = filing()
    for path in FILED_FIELDS:
        node = f
        for part in path.split("."):
            assert part in node, path
            node = node[part]
