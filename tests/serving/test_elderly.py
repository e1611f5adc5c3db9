"""Elderly mode over HTTP (Provisions Art. 19): items the feature library flags as a fraud or
scam risk never reach a user in elderly mode, on any surface, page or route, while other users still
get them; explanations are plain; the mode follows the setting, else the profile age; the
transparency page describes it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from compliance.elderly import PLAIN_TEXT
from tests.conftest import ADMIN

SURFACES = ("home", "feed", "related", "trending")


@pytest.fixture(scope="module")
def people(data, adults) -> dict[str, str]:
    """An adult under the elderly age and a user aged 60 or more, both with a history."""
    ages = dict(zip(data.users["user_id"].to_list(), data.users["age"].to_list()))
    return {"younger": next(u for u in adults if ages[u] < 60), "older": next(u for u in adults if ages[u] >= 60)}


def rec(client, user, **body):
    response = client.post("/v1/recommendations", json={"user_id": user, **body})
    assert response.status_code == 200, response.text
    return response.json()


def items_of(body) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def flag_as_fraud_risk(client, trained, item_ids: list[str]) -> set[str]:
    """Feature-library entries (category fraud_risk) for these items' titles; returns every item flagged."""
    bundle, _ = trained
    titles = dict(zip([str(i) for i in bundle.item_ids], bundle.items["title"].to_list()))
    for item in item_ids:
        response = client.post("/v1/admin/features", headers=ADMIN,
                               json={"kind": "keyword", "pattern": titles[item], "category": "fraud_risk",
                                     "note": "scam-risk test entry"})
        assert response.status_code == 201 and response.json()["matched_items"] >= 1, response.text
    mask = client.app.state.services.shared_state().fraud_risk
    flagged = {str(bundle.item_ids[i]) for i in np.flatnonzero(mask)}
    assert set(item_ids) <= flagged
    return flagged


def test_a_fraud_flagged_item_never_reaches_a_user_in_elderly_mode(client, trained, people, adults):
    younger, older = people["younger"], people["older"]
    assert client.get(f"/v1/users/{older}/settings").json()["elderly"] is True  # by age, no setting made
    assert client.get(f"/v1/users/{younger}/settings").json()["elderly"] is False
    for user in (younger, older):  # non-personalized lists: the same popular items for both
        assert client.put(f"/v1/users/{user}/settings", json={"personalization": False}).status_code == 200
    popular = items_of(rec(client, younger, surface="home", k=20))
    risky = popular[:3]
    flagged = flag_as_fraud_risk(client, trained, risky)

    # not blocked for everyone: the younger user still gets them ...
    assert set(risky) <= set(items_of(rec(client, younger, surface="home", k=20)))
    # ... the older user (elderly by age) never, on any surface or page
    def every_list(user, personalized: bool) -> list[str]:
        client.put(f"/v1/users/{user}/settings", json={"personalization": personalized})
        shown = []
        for surface in SURFACES:
            session = None
            for page in range(3):
                body = rec(client, user, surface=surface, page=page, k=30, **({"session_id": session} if session else {}))
                session = body["session_id"]
                shown += items_of(body)
        return shown

    for personalized in (False, True):
        shown = every_list(older, personalized)
        assert len(shown) >= 300 and not flagged & set(shown), flagged & set(shown)

    # the setting wins over the age, both ways
    client.put(f"/v1/users/{younger}/settings", json={"elderly_mode": True, "personalization": False})
    settings = client.get(f"/v1/users/{younger}/settings").json()
    assert settings["elderly_mode"] is True and settings["elderly"] is True
    assert not flagged & set(every_list(younger, False))
    client.put(f"/v1/users/{older}/settings", json={"elderly_mode": False, "personalization": False})
    assert set(risky) <= set(items_of(rec(client, older, surface="home", k=20)))
    client.put(f"/v1/users/{older}/settings", json={"elderly_mode": None})
    assert client.get(f"/v1/users/{older}/settings").json()["elderly"] is True


def test_the_hot_list_leaves_out_fraud_risk_items_for_elderly_users(client, trained, people, data):
    younger, older = people["younger"], people["older"]
    hot = items_of(rec(client, younger, surface="feed", k=3))[:1]
    now = client.app.state.services.clock()
    engaged = data.users.filter(pl.col("age").is_between(20, 50))["user_id"].to_list()[:60]
    events = [{"event_id": f"hot-{n}", "user_id": u, "item_id": hot[0], "type": "share", "ts": now.isoformat()}
              for n, u in enumerate(engaged)]
    assert client.post("/v1/events", json={"events": events}, headers=ADMIN).status_code == 200
    assert hot[0] in items_of(client.get("/v1/trending", params={"user_id": younger}).json())
    flagged = flag_as_fraud_risk(client, trained, hot)
    assert hot[0] in items_of(client.get("/v1/trending", params={"user_id": younger}).json())
    assert not flagged & set(items_of(client.get("/v1/trending", params={"user_id": older, "k": 100}).json()))


def test_elderly_users_get_plain_explanations(client, people):
    older, younger = people["older"], people["younger"]
    plain = set(PLAIN_TEXT.values())
    for surface in SURFACES:
        body = rec(client, older, surface=surface, k=20)
        assert body["items"] and all(i["reason"]["text"] in plain for i in body["items"])
    assert not all(i["reason"]["text"] in plain for i in rec(client, younger, surface="feed", k=20)["items"])


def test_the_transparency_page_describes_elderly_mode(client):
    document = client.get("/v1/transparency").json()
    text = " ".join(document["user_options"])
    assert "Elderly mode (Art. 19)" in text and "fraud or scam risk" in text and "60" in text
    assert "Elderly mode (Art. 19)" in client.get("/transparency").text
