"""POST /v1/recommendations through FastAPI's client: the list, its policies, its log record."""

from __future__ import annotations

import polars as pl
import pytest

from tests.conftest import ADMIN, approve

FRONT_SCREEN, FRONT_REQUIRED = range(1, 11), 2  # the default: at least 2 editorial items in positions 1-10


@pytest.fixture(scope="module")
def minors_ids(data) -> list[str]:
    return data.users.filter(pl.col("age") < 18)["user_id"].sort().to_list()


def recommend(client, user_id, **body):
    response = client.post("/v1/recommendations", json={"user_id": user_id, **body})
    assert response.status_code == 200, response.text
    return response.json()


def window_violations(categories: list[str], window: int = 5, max_per_window: int = 2) -> int:
    bad = 0
    for start in range(0, max(0, len(categories) - window + 1)):
        chunk = categories[start : start + window]
        if max(chunk.count(c) for c in set(chunk)) > max_per_window:
            bad += 1
    return bad


def test_personalized_list_shape_headers_and_log(client, adults):
    response = client.post("/v1/recommendations", json={"user_id": adults[0], "surface": "home", "page": 0, "k": 10})
    assert response.status_code == 200
    body = response.json()
    assert response.headers["x-request-id"] == body["request_id"]
    assert response.headers["x-algorithm-filing-number"] == "TEST-FILING-0001"
    assert body["mode"] == "personalized"
    assert len(body["items"]) == 10
    assert [i["position"] for i in body["items"]] == list(range(1, 11))
    assert body["model_version"] and body["index_build_id"] and body["policy_hash"]
    for item in body["items"]:
        assert item["reason"]["code"] and item["reason"]["text"]
        assert item["slot"] in {"personalized", "mainstream", "pinned", "popular"}
    # the list served is the list logged, and only its user can read it back
    logged = client.get(f"/v1/recommendations/{body['request_id']}", params={"user_id": adults[0]})
    assert logged.status_code == 200
    assert [i["item_id"] for i in logged.json()["items"]] == [i["item_id"] for i in body["items"]]
    assert [i["reason"] for i in logged.json()["items"]] == [i["reason"] for i in body["items"]]
    assert client.get(f"/v1/recommendations/{body['request_id']}", params={"user_id": adults[1]}).status_code == 404


def test_front_screen_slots_are_mainstream_and_explained(client, adults):
    body = recommend(client, adults[2], surface="home", page=0, k=10)
    editorial = [body["items"][p - 1] for p in FRONT_SCREEN if body["items"][p - 1]["slot"] == "mainstream"]
    assert len(editorial) == FRONT_REQUIRED and not [v for v in body["violations"] if v["rule"] == "front_screen"]
    for item in editorial:
        assert "mainstream" in item["labels"]
        assert item["reason"]["code"] == "editorial_front_screen"
    # not on the feed surface, nor on page 1
    feed = recommend(client, adults[2], surface="feed", page=0, k=10)
    assert all(i["slot"] != "mainstream" for i in feed["items"])


def test_pages_of_a_session_never_repeat_and_dispersal_holds_across_pages(client, adults, trained):
    bundle, _ = trained
    content = dict(zip(bundle.items["item_id"].to_list(), bundle.items["content_key"].to_list()))
    for user in adults[:4]:
        first = recommend(client, user, surface="feed", page=0, k=10)
        pages = [first]
        for page in (1, 2, 3):
            pages.append(recommend(client, user, surface="feed", page=page, k=10, session_id=first["session_id"]))
        items = [i["item_id"] for p in pages for i in p["items"]]
        assert len(items) == len(set(items)), "an item repeated within a session"
        contents = [content[i] for i in items]
        assert len(contents) == len(set(contents)), "the same content repeated within a session"
        reported = sum(len(p["violations"]) for p in pages)
        assert window_violations([i["category"] for p in pages for i in p["items"]]) <= reported


def test_cold_users_get_the_same_non_personalized_list(client):
    a = recommend(client, "never-seen-1", surface="home", k=10)
    b = recommend(client, "never-seen-2", surface="home", k=10)
    assert a["mode"] == b["mode"] == "non_personalized"
    assert a["mode_reason"] == "cold_user"
    assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
    assert all(i["reason"]["code"] in {"popular", "popular_in_category", "editorial_front_screen"} for i in a["items"])


def test_switch_off_is_immediate_identical_and_reversible(client, adults):
    a, b = adults[3], adults[4]
    assert recommend(client, a)["mode"] == "personalized"
    for user in (a, b):
        assert client.put(f"/v1/users/{user}/settings", json={"personalization": False}).status_code == 200
    off_a, off_b = recommend(client, a), recommend(client, b)
    assert off_a["mode"] == off_b["mode"] == "non_personalized"
    assert off_a["mode_reason"] == "personalization_off"
    assert [i["item_id"] for i in off_a["items"]] == [i["item_id"] for i in off_b["items"]]
    client.put(f"/v1/users/{a}/settings", json={"personalization": True})
    assert recommend(client, a)["mode"] == "personalized"


def test_minors_only_get_items_rated_for_their_band_on_every_path(client, minors_ids, data, trained):
    bundle, _ = trained
    rating = dict(zip(bundle.items["item_id"].to_list(), bundle.items["age_rating"].to_list()))
    ages = dict(zip(data.users["user_id"].to_list(), data.users["age"].to_list()))
    config = client.app.state.services.settings.minors
    for user in minors_ids[:5]:
        limit = config.max_age_rating(ages[user])
        for surface in ("home", "feed"):
            first = recommend(client, user, surface=surface, k=20)
            assert first["minor_mode"] is True
            second = recommend(client, user, surface=surface, page=1, k=20, session_id=first["session_id"])
            for item in first["items"] + second["items"]:
                assert rating[item["item_id"]] <= limit, f"{item['item_id']} is rated {rating[item['item_id']]}+"
                assert ("minor_safe" in item["labels"]) == (rating[item["item_id"]] == 0)


def test_a_pin_never_overrides_minors_mode(client, minors_ids, trained):
    bundle, _ = trained
    unsafe = bundle.items.filter((pl.col("age_rating") == 18) & ~pl.col("flagged"))["item_id"][0]
    response = client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "home", "item_id": unsafe, "position": 2, "reason": "campaign"})
    assert response.status_code == 201
    assert approve(client, response.json())["status"] == "active"
    body = recommend(client, minors_ids[0], surface="home")
    assert unsafe not in [i["item_id"] for i in body["items"]]


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"user_id": "1", "k": 0}, "k"),
        ({"user_id": "1", "k": 101}, "k: must be in 1..100"),
        ({"user_id": "1", "surface": "basement"}, "surface: unknown 'basement'"),
        ({"user_id": "1", "page": -1}, "page"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "1", "colour": "red"}, "colour"),
        ({"user_id": "1", "k": "ten"}, "k"),
        ({}, "user_id"),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, payload, fragment):
    response = client.post("/v1/recommendations", json=payload)
    assert response.status_code == 422
    assert fragment in response.json()["detail"]
    assert response.headers["x-algorithm-filing-number"] == "TEST-FILING-0001"


def test_malformed_json_and_oversized_bodies_are_refused(client):
    response = client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    big = b'{"user_id": "1", "pad": "' + b"x" * 2_000_000 + b'"}'
    response = client.post("/v1/recommendations", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "request body over" in response.json()["detail"]


def test_a_failing_model_falls_back_to_the_non_personalized_path(client, adults, trained, monkeypatch):
    bundle, _ = trained

    def broken(*args, **kwargs):
        raise RuntimeError("ranker exploded")

    monkeypatch.setattr(bundle.ranker, "score", broken)
    body = recommend(client, adults[5])
    assert body["mode"] == "non_personalized"
    assert body["mode_reason"] == "model_error"
    assert len(body["items"]) == 10


def test_metrics_and_health(client, adults):
    recommend(client, adults[0])
    health = client.get("/healthz").json()
    assert health["ready"] is True and health["model_version"]
    text = client.get("/metrics").text
    assert "recsys_recommendations_total" in text and "recsys_stage_seconds_bucket" in text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_list_reads_the_state_database_once(backend, request, client_factory, adults, minors_ids):
    """Issue 17: a list costs ONE read round trip to the state database (the gate's read of the user,
    a minor's guardian and usage included, and hydrate's, in `StateStore.list_state`), on both
    backends, for an adult and a minor, on page 0 and on a later page of the same session; the
    only other statements of a list are its writes (the page; a minor's usage)."""
    from sqlalchemy import event as sqlalchemy_event

    overrides = {} if backend == "sqlite" else {"database_url": request.getfixturevalue("postgres_url")}
    client = client_factory(**overrides)
    engine = client.app.state.services.store.engine
    for user in (adults[0], minors_ids[0]):
        session = recommend(client, user, surface="home")["session_id"]  # warm: the shared state is loaded
        for page in (0, 1, 2):
            reads: list[str] = []

            def count(_conn, _cursor, statement, *_args, reads=reads) -> None:
                if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    reads.append(statement)

            sqlalchemy_event.listen(engine, "before_cursor_execute", count)
            try:
                recommend(client, user, surface="home", session_id=session, page=page)
            finally:
                sqlalchemy_event.remove(engine, "before_cursor_execute", count)
            assert len(reads) == 1, (user, page, reads)
