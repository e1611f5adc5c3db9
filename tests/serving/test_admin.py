"""Manual intervention (Art. 11, Art. 14 (draft 13)): auth, validation, effect on the next request, audit trail."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from compliance.logstore import query
from tests.conftest import ADMIN, approve


def first_items(client, user="never-seen-9", surface="home", k=10):
    body = client.post("/v1/recommendations", json={"user_id": user, "surface": surface, "k": k}).json()
    return [i["item_id"] for i in body["items"]], body


def test_admin_endpoints_need_the_bearer_token(client):
    assert client.get("/v1/admin/interventions").status_code == 401
    assert client.get("/v1/admin/interventions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/admin/interventions", headers=ADMIN).status_code == 200


def test_pin_block_and_boost_take_effect_and_are_recorded(client, trained, tmp_path):
    bundle, _ = trained
    before, _ = first_items(client)
    safe_unseen = bundle.items.filter(pl.col("minor_safe") & ~pl.col("flagged") & ~pl.col("item_id").is_in(before))
    pinned_item = safe_unseen["item_id"][0]
    pin = client.post("/v1/admin/interventions", headers={**ADMIN, "X-Operator": "editor-li"}, json={
        "kind": "pin", "surface": "home", "item_id": pinned_item, "position": 3, "reason": "public-service notice"})
    assert pin.status_code == 201, pin.text
    assert pin.json()["status"] == "pending"  # a front-screen pin waits for a second person
    assert first_items(client)[0][2] != pinned_item
    approve(client, pin.json())
    items, body = first_items(client)
    assert items[2] == pinned_item
    assert body["items"][2]["slot"] == "pinned"
    assert "public-service notice" in body["items"][2]["reason"]["text"]

    blocked_item = items[0] if items[0] != pinned_item else items[1]
    block = client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "block", "item_id": blocked_item, "reason": "rights complaint upheld"})
    assert block.status_code == 201
    approve(client, block.json())
    assert blocked_item not in first_items(client)[0]
    assert blocked_item not in first_items(client, surface="feed")[0]

    listed = client.get("/v1/admin/interventions", headers=ADMIN).json()
    assert {i["id"] for i in listed} >= {pin.json()["id"], block.json()["id"]}
    assert client.delete(f"/v1/admin/interventions/{pin.json()['id']}", headers=ADMIN).status_code == 200
    assert client.delete(f"/v1/admin/interventions/{pin.json()['id']}", headers=ADMIN).status_code == 409
    assert pinned_item not in first_items(client)[0][2:3]

    # every change is in the recommendation log with the account that made it (never a self-declared header)
    records = query(tmp_path / "logs", kind="intervention").to_dicts()
    assert len(records) == 5  # propose, approve, propose, approve, revoke
    logged = str(records)
    assert "automation" in logged and "approver-two" in logged and "editor-li" not in logged


def test_interventions_expire(client, trained, clock):
    bundle, _ = trained
    before, _ = first_items(client, surface="feed")
    item = bundle.items.filter(pl.col("minor_safe") & ~pl.col("flagged") & ~pl.col("item_id").is_in(before))["item_id"][0]
    client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "feed", "item_id": item, "position": 1, "reason": "short campaign", "ttl_seconds": 600})
    assert first_items(client, surface="feed")[0][0] == item
    clock.now += timedelta(minutes=11)
    assert first_items(client, surface="feed")[0][0] != item


def test_bad_interventions_get_clear_errors(client):
    cases = [
        ({"kind": "pin", "item_id": "i1", "reason": "x y z"}, 422, "a pin needs item_id, surface and position"),
        ({"kind": "block", "item_id": "nope", "reason": "bad item"}, 404, "unknown item"),
        ({"kind": "boost", "category": "nope", "factor": 2, "reason": "bad category"}, 404, "unknown category"),
        ({"kind": "boost", "category": "cat01", "factor": 50, "reason": "too much"}, 422, "factor"),
        ({"kind": "teleport", "reason": "what"}, 422, "kind"),
        ({"kind": "pin", "surface": "moon", "item_id": "i1", "position": 1, "reason": "where"}, 422, "surface"),
    ]
    for payload, status, fragment in cases:
        response = client.post("/v1/admin/interventions", headers=ADMIN, json=payload)
        assert response.status_code == status, (payload, response.text)
        assert fragment in response.json()["detail"], response.json()
    assert client.delete("/v1/admin/interventions/99999", headers=ADMIN).status_code == 404


def test_log_verify_endpoint(client):
    first_items(client)
    report = client.get("/v1/admin/logs/verify", headers=ADMIN).json()
    assert report["ok"] is True and report["records"] >= 1
