"""Seen means seen (issue 16): a personalized list never shows an item the user already
interacted with, at any rating (the bundle's seen arrays) or through any stored event."""

from __future__ import annotations

import polars as pl



def test_no_personalized_list_shows_an_item_rated_at_any_value(client, data, trained):
    bundle, _ = trained
    adults = set(data.users.filter(pl.col("age") >= 18)["user_id"].to_list())
    users = [u for u in bundle.user_index if u in adults][:60]
    checked = low_rated = 0
    for user in users:
        seen = {str(bundle.item_ids[i]) for i in bundle.user_seen(bundle.user_index[user])}
        low_rated += len(seen - {str(bundle.item_ids[i]) for i in bundle.user_history(bundle.user_index[user])})
        for surface in ("feed", "home"):
            body = client.post("/v1/recommendations", json={"user_id": user, "surface": surface, "k": 20}).json()
            assert body["mode"] == "personalized"
            personal = [i["item_id"] for i in body["items"] if i["slot"] != "pinned"]
            assert not set(personal) & seen, (user, surface, set(personal) & seen)
            checked += len(personal)
    assert checked > 1000 and low_rated > 0  # the data has low ratings to exclude: the test is not vacuous


def test_an_event_makes_an_item_seen_from_the_next_request(client, data, trained):
    bundle, _ = trained
    adults = set(data.users.filter(pl.col("age") >= 18)["user_id"].to_list())
    user = next(u for u in bundle.user_index if u in adults)
    first = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
    watched = [i["item_id"] for i in first["items"][:3]]
    now = client.app.state.services.clock().isoformat()
    events = [{"event_id": f"seen-{user}-{i}", "user_id": user, "item_id": item, "type": kind, "ts": now}
              for i, (item, kind) in enumerate(zip(watched, ("impression", "click", "like")))]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3
    client.put(f"/v1/users/{user}/settings", json={"personalization": True})
    for page_set in range(8):  # past the "recently shown" window: only the seen rule keeps them out
        body = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
        assert not set(watched) & {i["item_id"] for i in body["items"]}, page_set
