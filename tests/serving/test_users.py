"""User rights over HTTP (Art. 10, Art. 16 (draft 14), Art. 17 (draft 15), Art. 18 (draft 16), Art. 22 (draft 26), Art. 26 (draft 22)): settings, tags, minors clock, complaints, transparency."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from compliance.articles import TEXT
from tests.conftest import ADMIN


@pytest.fixture(scope="module")
def adult(data) -> str:
    active = data.interactions.group_by("user_id").len().filter(pl.col("len") >= 25)["user_id"].to_list()
    return data.users.filter((pl.col("age") >= 18) & pl.col("user_id").is_in(active))["user_id"].sort()[0]


@pytest.fixture(scope="module")
def child(data) -> tuple[str, int]:
    row = data.users.filter(pl.col("age") < 8).sort("user_id").row(0, named=True)
    return row["user_id"], row["age"]


def rec(client, user, **body):
    response = client.post("/v1/recommendations", json={"user_id": user, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_settings_round_trip_and_errors(client, adult, data):
    age = data.users.filter(pl.col("user_id") == adult)["age"][0]
    assert client.get(f"/v1/users/{adult}/settings").json() == {
        "user_id": adult, "personalization": True, "minor_mode": None, "minor": False,
        "elderly_mode": None, "elderly": age >= 60, "broaden_feed": False}
    assert client.put(f"/v1/users/{adult}/settings", json={"minor_mode": True}).json()["minor"] is True
    assert client.put(f"/v1/users/{adult}/settings", json={"minor_mode": None}).json()["minor"] is False
    assert client.get("/v1/users/nobody-here/settings").status_code == 404
    assert client.put(f"/v1/users/{adult}/settings", json={}).status_code == 422
    assert client.put(f"/v1/users/{adult}/settings", json={"personalization": "maybe"}).status_code == 422
    assert client.put(f"/v1/users/{adult}/settings", json={"volume": 11}).status_code == 422


def test_tags_delete_stops_citation_and_add_back(client, adult):
    view = client.get(f"/v1/users/{adult}/tags").json()
    assert view["tags"], "a user with history has derived tags"
    assert all(0 <= t["weight"] <= 1 and t["source"] == "history" and t["detail"] for t in view["tags"])
    top = view["tags"][0]["name"]
    after = client.delete(f"/v1/users/{adult}/tags/{top}").json()
    assert top in after["deleted"] and top not in [t["name"] for t in after["tags"]]
    body = rec(client, adult, surface="feed", k=20)
    assert body["mode"] == "personalized"
    for item in body["items"]:
        assert top not in item["reason"]["text"]
    assert client.delete(f"/v1/users/{adult}/tags/{top}").status_code == 404
    restored = client.post(f"/v1/users/{adult}/tags", json={"tag": top, "action": "add"}).json()
    assert top in [t["name"] for t in restored["tags"]] and top not in restored["deleted"]


def test_not_interested_removes_the_category(client, adult):
    body = rec(client, adult, surface="feed", k=20)
    category = body["items"][0]["category"]
    client.post(f"/v1/users/{adult}/tags", json={"tag": category, "action": "not_interested"})
    again = rec(client, adult, surface="feed", k=20)
    assert all(i["category"] != category for i in again["items"] if i["slot"] == "personalized")


def test_banned_and_unknown_tags_are_refused(client, adult):
    for tag in ("religion", "Sexual Orientation", "ｒｅｌｉｇｉｏｎ", "民族"):
        response = client.post(f"/v1/users/{adult}/tags", json={"tag": tag})
        assert response.status_code == 422 and "Art. 10" in response.json()["detail"]
    response = client.post(f"/v1/users/{adult}/tags", json={"tag": "Knitting"})
    assert response.status_code == 422 and "unknown" in response.json()["detail"]
    assert client.post(f"/v1/users/{adult}/tags", json={"tag": "x" * 65}).status_code == 422


def test_ranker_features_carry_no_banned_attribute(trained):
    from compliance.tags import TagPolicy, banned_features

    bundle, _ = trained
    assert bundle.feature_names
    assert banned_features(bundle.feature_names, TagPolicy()) == []


def test_minors_curfew_and_daily_budget_hold_with_a_moved_clock(client, clock, child):
    user, age = child
    # 23:30 in Asia/Shanghai is curfew
    clock.now = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    response = client.post("/v1/recommendations", json={"user_id": user})
    assert response.status_code == 403
    assert response.json()["code"] == "minors_curfew"
    assert response.headers["x-algorithm-filing-number"]
    # 09:00 local: allowed, then a child under 8 has 40 minutes a day
    clock.now = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    served = 0
    for _ in range(60):
        response = client.post("/v1/recommendations", json={"user_id": user})
        if response.status_code == 403:
            assert response.json()["code"] == "minors_daily_limit"
            break
        served += 1
        clock.now += timedelta(minutes=1)
    assert 35 <= served <= 42, served
    # the next local day the budget is fresh
    clock.now = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)
    assert client.post("/v1/recommendations", json={"user_id": user}).status_code == 200


def test_complaint_round_trip(client, adult):
    served = rec(client, adult)
    response = client.post("/v1/complaints", json={
        "kind": "complaint", "subject_type": "request", "subject_id": served["request_id"], "user_id": adult,
        "text": "This list keeps showing me the same kind of thing."})
    assert response.status_code == 201, response.text
    complaint = response.json()
    assert complaint["status"] == "received" and complaint["acknowledge_due"] and complaint["resolve_due"]
    assert client.get(f"/v1/complaints/{complaint['id']}", params={"user_id": adult}).json()["status"] == "received"
    assert client.get(f"/v1/complaints/{complaint['id']}", params={"user_id": "someone-else"}).status_code == 404
    assert client.post(f"/v1/admin/complaints/{complaint['id']}/acknowledge").status_code == 401
    assert client.post(f"/v1/admin/complaints/{complaint['id']}/acknowledge", headers=ADMIN).json()["status"] == "acknowledged"
    resolved = client.post(f"/v1/admin/complaints/{complaint['id']}/resolve", headers=ADMIN,
                           json={"status": "resolved", "resolution": "Dispersal tightened for this surface."})
    assert resolved.json()["status"] == "resolved"
    assert client.post(f"/v1/admin/complaints/{complaint['id']}/acknowledge", headers=ADMIN).status_code == 409
    final = client.get(f"/v1/complaints/{complaint['id']}", params={"user_id": adult}).json()
    assert final["resolution"] == "Dispersal tightened for this surface."


def test_complaint_bad_input(client, adult):
    base = {"kind": "complaint", "subject_type": "item", "subject_id": "i1", "user_id": adult, "text": "bad"}
    assert client.post("/v1/complaints", json={**base, "kind": "praise"}).status_code == 422
    assert client.post("/v1/complaints", json={**base, "text": "x" * 5000}).status_code == 422
    assert client.post("/v1/complaints", json={k: v for k, v in base.items() if k != "user_id"}).status_code == 422


def test_transparency_json_and_page(client):
    doc = client.get("/v1/transparency").json()
    text = str(doc)
    assert "TEST-FILING-0001" in text and "personalization" in text and "/v1/complaints" in text
    page = client.get("/transparency")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "TEST-FILING-0001" in page.text and "PUT /v1/users/" in page.text
    assert doc["legal_basis"]["text"] == TEXT and doc["legal_basis"]["draft_aliases"] is True
    assert html.escape(TEXT) in page.text
    # the policies cite final articles with their draft aliases, as compliance.articles.cite writes them
    assert any("(Art. 11, Art. 14 (draft 13))" in policy for policy in doc["mechanism"]["policies"])


def test_a_model_on_other_data_brings_its_users_into_a_used_state_database(client_factory, make_settings, adult):
    """The state database outlives models: one seeded by a model on other data (and holding a user's
    settings) still learns the users of the model served now, and keeps what it had."""
    from serving.state.db import make_engine
    from serving.state.store import StateStore

    store = StateStore(make_engine(make_settings().database_url))
    earlier = datetime(2024, 1, 1, tzinfo=UTC)
    assert store.seed_profiles([{"user_id": "other-1", "age": 30, "created_at": earlier}], "other-dataset") == 1
    store.put_settings("other-1", earlier, personalization=False, minor_mode=None)
    assert store.seed_profiles([{"user_id": "other-2", "age": 30, "created_at": earlier}], "other-dataset") == 0  # once per source
    store.engine.dispose()

    client = client_factory()
    assert client.get(f"/v1/users/{adult}/settings").status_code == 200
    kept = client.get("/v1/users/other-1/settings")
    assert kept.status_code == 200 and kept.json()["personalization"] is False
    assert client.get("/v1/users/other-2/settings").status_code == 404
