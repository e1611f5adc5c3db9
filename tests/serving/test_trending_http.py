"""Trending integrity over HTTP (Art. 11, Art. 14 (draft 13)): patient fake accounts do not reach the hot list,
genuine users do; the events come in through POST /v1/events as a client would send them."""

from __future__ import annotations

import random
from datetime import timedelta

import polars as pl



def post_events(client, events: list[dict]) -> None:
    for start in range(0, len(events), 1000):
        response = client.post("/v1/events", json={"events": events[start : start + 1000]})
        assert response.status_code == 200, response.text


def test_drip_fed_fake_accounts_stay_out_and_genuine_users_get_in(client, data):
    now = client.app.state.services.clock()
    rng = random.Random(11)
    servable = data.items.filter(~pl.col("flagged"))["item_id"]
    counts = data.interactions.group_by("item_id").len().filter(pl.col("item_id").is_in(servable.to_list()))
    obscure = counts.sort("len", "item_id")["item_id"].to_list()[:2]  # the two least engaged servable items
    target, genuine_item = obscure
    adults = data.users.filter(pl.col("age") >= 18)["user_id"]
    veterans = sorted(data.interactions.group_by("user_id").len().filter(
        (pl.col("len") >= 10) & pl.col("user_id").is_in(adults.to_list()))["user_id"].to_list())
    catalog = data.items["item_id"].to_list()
    events: list[dict] = []

    def event(user: str, item: str, kind: str, age: timedelta) -> None:
        events.append({"event_id": f"e{len(events)}", "user_id": user, "item_id": item, "type": kind,
                       "ts": (now - age).isoformat()})

    # background: 300 existing users browsing a few items each over the day
    for user in rng.sample(veterans, 300):
        for item in rng.sample(catalog, 5):
            event(user, item, rng.choice(["click", "like"]), timedelta(minutes=rng.uniform(0, 20 * 60)))
    # the attack: 200 fresh accounts like and share one obscure item, dripped over three hours
    for n in range(200):
        age = timedelta(minutes=180 * n / 200)
        event(f"fake-{n}", target, "like", age)
        event(f"fake-{n}", target, "share", age)
    # genuine interest: 200 existing users like another obscure item over the same hours
    for n, user in enumerate(rng.sample(veterans, 200)):
        event(user, genuine_item, "like", timedelta(minutes=180 * n / 200 + 1))
    post_events(client, events)

    body = client.get("/v1/trending", params={"user_id": veterans[0], "k": 10})
    assert body.status_code == 200, body.text
    top = [i["item_id"] for i in body.json()["items"]]
    assert target not in top, top
    assert genuine_item in top, top
