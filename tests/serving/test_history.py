"""A user's interaction history over HTTP (PIPL Art. 45, PIPL Art. 47): they see exactly their stored
events, page by page, and erase them; after an erasure their lists are no longer built from the erased
events nor from the model's training-time history of them (served as a cold user is), their derived
tags are gone, and the served-list log is kept. The store's part on both backends is in
tests/serving/test_state_store.py."""

from __future__ import annotations

import time
from datetime import timedelta

import polars as pl
import pytest

from compliance.logstore.query import query
from serving.auth import AuthConfig, gateway_signature
from tests.serving.test_auth import SECRET, token


@pytest.fixture(scope="module")
def two_adults(data, trained) -> tuple[str, str]:
    bundle, _ = trained
    users = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()
    known = [u for u in users if u in bundle.user_index]
    return known[0], known[1]


def post_events(client, user: str, items: list[str], prefix: str, kinds=("click", "like", "impression")) -> list[dict]:
    now = client.app.state.services.clock()
    events = [{"event_id": f"{prefix}-{n}", "user_id": user, "item_id": item, "type": kinds[n % len(kinds)],
               "ts": (now - timedelta(minutes=n)).isoformat()} for n, item in enumerate(items)]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 200 and response.json()["accepted"] == len(events), response.text
    return events


def history(client, user: str, **params) -> dict:
    response = client.get(f"/v1/users/{user}/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def rec(client, user: str, **body) -> dict:
    response = client.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10, **body})
    assert response.status_code == 200, response.text
    return response.json()


def item_ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_the_export_shows_exactly_the_users_events_newest_first_page_by_page(client, two_adults, trained):
    a, b = two_adults
    bundle, _ = trained
    items = [str(i) for i in bundle.item_ids[:40]]
    mine = post_events(client, a, items[:23], f"mine-{a}")
    post_events(client, b, items[10:30], f"theirs-{b}")
    whole = history(client, a, limit=500)
    assert (whole["events_stored"], whole["seen_items"], whole["erased"], whole["erased_at"]) == (23, 23, False, None)
    assert [e["event_id"] for e in whole["events"]] == [e["event_id"] for e in mine]  # newest first
    assert {e["item_id"] for e in whole["events"]} == set(items[:23]) and whole["next_before"] is None
    assert {e["type"] for e in whole["events"]} == {"click", "like", "impression"}
    pages, cursor = [], None
    while True:  # pages of 5 by the cursor: every event once, in the same order, never one of b's
        body = history(client, a, limit=5, **({"before": cursor} if cursor else {}))
        pages.append(body["events"])
        cursor = body["next_before"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [e["event_id"] for p in pages for e in p] == [e["event_id"] for e in mine]
    assert history(client, b)["events_stored"] == 20
    assert all(e["event_id"].startswith(f"theirs-{b}") for e in history(client, b)["events"])


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"before": "yesterday"},
                                    {"before": "99999999999999999999:e1"}, {"before": "12:" + "x" * 200},
                                    {"before": "12:bad id"}])
def test_bad_parameters_are_a_4xx_with_a_json_message(client, two_adults, params):
    a, _ = two_adults
    response = client.get(f"/v1/users/{a}/history", params=params)
    assert response.status_code == 422, (params, response.status_code, response.text)
    assert response.json()["detail"] and response.headers["x-request-id"]


def test_an_unknown_user_is_a_404_and_a_user_with_events_only_is_not(client, trained):
    bundle, _ = trained
    assert client.get("/v1/users/nobody-at-all/history").status_code == 404
    assert client.delete("/v1/users/nobody-at-all/history").status_code == 404
    assert client.get("/v1/users/bad%20id/history").status_code == 422
    post_events(client, "events-only", [str(bundle.item_ids[0])], "events-only")  # events stored without a profile
    assert history(client, "events-only")["events_stored"] == 1
    assert client.delete("/v1/users/events-only/history").json()["events_deleted"] == 1


def test_an_erasure_deletes_events_and_seen_set_at_once_and_is_idempotent(client, clock, two_adults, trained):
    a, b = two_adults
    bundle, _ = trained
    items = [str(i) for i in bundle.item_ids[:12]]
    post_events(client, a, items + items[:4], f"erase-{a}")  # 16 events on 12 items
    post_events(client, b, items[:5], f"keep-{b}")
    first = client.delete(f"/v1/users/{a}/history")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["events_deleted"], body["seen_items_deleted"]) == (16, 12)
    assert body["erased_at"].startswith(clock().isoformat()[:19]) and "log" in body["kept"] and "kept" in body["kept"]
    after = history(client, a)
    assert (after["events"], after["events_stored"], after["seen_items"], after["erased"]) == ([], 0, 0, True)
    assert client.app.state.services.store.event_items(a) == []
    assert history(client, b)["events_stored"] == 5  # another user's history is untouched
    clock.now += timedelta(minutes=5)
    again = client.delete(f"/v1/users/{a}/history").json()  # nothing left: zero counts, the marker moves to now
    assert (again["events_deleted"], again["seen_items_deleted"]) == (0, 0)
    assert again["erased_at"] > body["erased_at"] and history(client, a)["erased_at"] == again["erased_at"]
    post_events(client, a, items[:2], f"later-{a}")  # events after the erasure are stored and shown
    later = history(client, a)
    assert (later["events_stored"], later["seen_items"], later["erased"]) == (2, 2, True)
    erasures = query(client.app.state.services.logstore.config.dir, user_id=a, kind="history")
    assert erasures.height == 2  # each erasure is in the tamper-evident log (its counts are in the response)


def test_after_an_erasure_a_known_users_lists_are_the_cold_path_and_their_tags_are_gone(client, two_adults, trained):
    """A user the model was trained on: personalized before; after the erasure their list is the list
    of a user the model never saw (the same items, in the same order), tags derived from the history
    are gone, the items of the erased events are no longer 'seen' (the cold list may hold them), and the
    list served before the erasure stays in the log."""
    a, _ = two_adults
    bundle, _ = trained
    before = rec(client, a)
    assert before["mode"] == "personalized"
    derived = [t for t in client.get(f"/v1/users/{a}/tags").json()["tags"] if t["source"] == "history"]
    assert derived
    cold = rec(client, "never-seen-erasure")
    assert cold["mode_reason"] == "cold_user" and item_ids(cold) != item_ids(before)
    watched = item_ids(cold)[:3]  # items of the cold list the user had events for: seen before the erasure
    post_events(client, a, watched, f"cold-{a}")
    assert not set(watched) & set(item_ids(rec(client, a, surface="feed")))  # personalized: seen, left out
    assert client.delete(f"/v1/users/{a}/history").status_code == 200
    after = rec(client, a)
    assert (after["mode"], after["mode_reason"]) == ("non_personalized", "history_erased")
    assert item_ids(after) == item_ids(cold)  # nothing of the erased history or of the model's stored one
    assert set(watched) <= set(item_ids(after))  # no longer seen: the erased events say nothing any more
    assert all(i["reason"]["code"] in {"popular", "popular_in_category", "editorial_front_screen"} for i in after["items"])
    tags = client.get(f"/v1/users/{a}/tags").json()
    assert not [t for t in tags["tags"] if t["source"] == "history"]
    post_events(client, a, [str(i) for i in bundle.item_ids[50:55]], f"post-{a}")  # new events: still cold
    assert item_ids(rec(client, a, surface="feed")) == item_ids(rec(client, "never-seen-erasure", surface="feed"))
    logged = client.get(f"/v1/recommendations/{before['request_id']}", params={"user_id": a})
    assert logged.status_code == 200 and item_ids(logged.json()) == item_ids(before)  # the log is kept


def test_user_a_cannot_read_or_erase_user_bs_history_jwt(client_factory, two_adults, trained):
    a, b = two_adults
    bundle, _ = trained
    client = client_factory(auth=AuthConfig(mode="jwt", jwt_secret=SECRET))
    now = client.app.state.services.clock().isoformat()
    event = {"event_id": f"jwt-{b}", "user_id": b, "item_id": str(bundle.item_ids[0]), "type": "click", "ts": now}
    assert client.post("/v1/events", json={"events": [event]}, headers=token(b)).status_code == 200
    for method in ("GET", "DELETE"):
        assert client.request(method, f"/v1/users/{b}/history", headers=token(a)).status_code == 403
        assert client.request(method, f"/v1/users/{b}/history").status_code == 401
    own = client.get(f"/v1/users/{b}/history", headers=token(b)).json()
    assert own["events_stored"] == 1 and not own["erased"]  # A's attempts erased nothing
    assert client.delete(f"/v1/users/{b}/history", headers=token(b)).json()["events_deleted"] == 1


def test_user_a_cannot_read_or_erase_user_bs_history_gateway(client_factory, two_adults):
    a, b = two_adults
    client = client_factory(auth=AuthConfig(mode="gateway", gateway_secret="gateway-shared-secret"))
    at = str(int(time.time()))

    def gateway(user, secret="gateway-shared-secret"):
        return {"X-Authenticated-User": user, "X-Authenticated-At": at,
                "X-Authenticated-Signature": gateway_signature(secret, user, at)}

    for method in ("GET", "DELETE"):
        assert client.request(method, f"/v1/users/{b}/history", headers=gateway(a)).status_code == 403
        assert client.request(method, f"/v1/users/{b}/history", headers=gateway(b, secret="guess")).status_code == 401
    assert client.get(f"/v1/users/{b}/history", headers=gateway(b)).json()["erased"] is False
    assert client.delete(f"/v1/users/{b}/history", headers=gateway(b)).status_code == 200


def test_the_transparency_page_says_what_an_erasure_keeps(client):
    options = client.get("/v1/transparency").json()["user_options"]
    text = next(o for o in options if "/v1/users/{user_id}/history" in o)
    assert "DELETE" in text and "log" in text and "180 days" in text


def test_a_hot_list_computed_from_erased_events_no_longer_verifies_and_the_erasure_is_named(client, clock, data, trained):
    """The hot list's verification recomputes each logged snapshot from the stored events: an erased
    user's events are gone, so a snapshot they engaged in no longer recomputes (still a mismatch: the
    events cannot be re-read, whoever removed them), and the report names the erasure."""
    from serving.trending import verify_snapshots

    bundle, _ = trained
    users = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()[:30]
    now = clock().isoformat()
    hot = [str(i) for i in bundle.item_ids[:2]]
    events = [{"event_id": f"hot-{u}", "user_id": u, "item_id": hot[n % 2], "type": "share", "ts": now}
              for n, u in enumerate(users)]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    assert client.get("/v1/trending", params={"user_id": users[0]}).status_code == 200
    services = client.app.state.services
    logs = services.logstore.config.dir
    assert verify_snapshots(services.store, logs).ok
    clock.now += timedelta(minutes=1)
    assert client.delete(f"/v1/users/{users[1]}/history").json()["events_deleted"] == 1
    outcome = verify_snapshots(services.store, logs)
    assert not outcome.ok
    assert any("erased their history" in line and users[1] in line for line in outcome.mismatches), outcome.mismatches
