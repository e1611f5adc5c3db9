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


def test_a_heavy_user_never_gets_back_an_item_seen_before_their_latest_events(client, data, trained):
    """A list reads only the user's latest MAX_EVENTS_READ events for the sequential source, yet every
    item they ever had an event for stays seen: impressions of items shown a day ago, then more
    than MAX_EVENTS_READ newer events on other items (about 200 lists' impressions), and the items
    of a day ago still never come back, past the "recently shown" window."""
    from datetime import timedelta

    from serving.state.store import MAX_EVENTS_READ

    bundle, _ = trained
    adults = set(data.users.filter(pl.col("age") >= 18)["user_id"].to_list())
    user = [u for u in bundle.user_index if u in adults][1]
    first = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
    watched = [i["item_id"] for i in first["items"] if i["slot"] != "pinned"][:3]
    now = client.app.state.services.clock()
    old = [{"event_id": f"heavy-old-{i}", "user_id": user, "item_id": item, "type": "impression",
            "ts": (now - timedelta(days=1)).isoformat()} for i, item in enumerate(watched)]
    assert client.post("/v1/events", json={"events": old}).json()["accepted"] == 3
    others = [str(item) for item in bundle.item_ids if str(item) not in watched][: MAX_EVENTS_READ + 1]
    newer = [{"event_id": f"heavy-new-{i}", "user_id": user, "item_id": item, "type": ("impression", "click")[i % 2],
              "ts": (now - timedelta(seconds=i)).isoformat()} for i, item in enumerate(others)]
    for start in range(0, len(newer), 1000):
        assert client.post("/v1/events", json={"events": newer[start : start + 1000]}).status_code == 200
    served = []
    for page_set in range(8):  # past the "recently shown" window: only the seen rule keeps them out
        body = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
        assert body["mode"] == "personalized"
        served += [i["item_id"] for i in body["items"] if i["slot"] != "pinned"]
        assert not set(watched) & {i["item_id"] for i in body["items"]}, page_set
    assert served and not set(served) & set(others)  # every item of an event is seen, newest and oldest alike
