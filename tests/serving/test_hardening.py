"""The audit's findings, each as the request that broke the service at commit 54b04fe.

Every response here, errors included, must carry X-Request-ID and the filing number header and a
JSON body; no accepted write may make a later read fail.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from tests.conftest import ADMIN, approve


def assert_service_headers(response) -> None:
    assert response.headers.get("x-request-id"), response
    assert response.headers.get("x-algorithm-filing-number") == "TEST-FILING-0001", response
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "detail" in response.json() or response.status_code < 400


def lists_still_served(client, users) -> None:
    for user in users:
        for surface in ("home", "feed", "trending"):
            response = client.post("/v1/recommendations", json={"user_id": user, "surface": surface})
            assert response.status_code == 200, response.text
    assert client.get("/v1/trending", params={"user_id": users[0]}).status_code == 200


# -- finding 1: the API accepts only what serving can read; unreadable records are skipped -------
@pytest.mark.parametrize("body", [
    {"kind": "block", "item_id": "{item}", "category": "{category}", "reason": "x-x"},
    {"kind": "pin", "surface": "home", "item_id": "{item}", "position": 2, "category": "{category}", "reason": "x-x"},
    {"kind": "pin", "surface": "home", "item_id": "{item}", "position": 2, "factor": 2, "reason": "x-x"},
    {"kind": "boost", "item_id": "{item}", "category": "{category}", "factor": 2, "reason": "x-x"},
    {"kind": "boost", "category": "{category}", "factor": 2, "position": 3, "reason": "x-x"},
    {"kind": "block", "item_id": "{item}", "factor": 2, "reason": "x-x"},
    {"kind": "block", "category": "{category}", "position": 1, "reason": "x-x"},
    {"kind": "pin", "item_id": "{item}", "position": 2, "reason": "x-x"},
])
def test_an_intervention_serving_could_not_read_is_refused_at_write(client, adults, trained, body):
    bundle, _ = trained
    values = {"item": str(bundle.items["item_id"][5]), "category": bundle.category_names[0]}
    body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}
    response = client.post("/v1/admin/interventions", headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    assert_service_headers(response)
    lists_still_served(client, adults[:2])


def test_every_intervention_the_api_accepts_serves(client, adults, trained):
    """Writes every valid shape (and a few valid edge values), then serves lists: no accepted
    write can make a later read fail."""
    bundle, _ = trained
    item, other = str(bundle.items["item_id"][3]), str(bundle.items["item_id"][4])
    category = bundle.category_names[1]
    accepted = [
        {"kind": "pin", "surface": "home", "item_id": item, "position": 1},
        {"kind": "pin", "surface": "trending", "item_id": other, "position": 100, "ttl_seconds": 60},
        {"kind": "pin", "surface": "feed", "item_id": item, "position": 3},
        {"kind": "block", "item_id": other},
        {"kind": "block", "category": category, "surface": "feed"},
        {"kind": "boost", "item_id": item, "factor": 10},
        {"kind": "boost", "category": category, "factor": 1e-9, "surface": "home"},
    ]
    for body in accepted:
        response = client.post("/v1/admin/interventions", headers=ADMIN, json={**body, "reason": "a reason"})
        assert response.status_code == 201, (body, response.text)
        approve(client, response.json())
        lists_still_served(client, adults[:2])


def test_a_stored_record_that_cannot_be_read_never_takes_serving_down(client, adults, caplog):
    services = client.app.state.services
    from serving.state import db

    now = datetime.now(UTC)
    with services.store.engine.begin() as conn:  # written by an older version, or edited by hand
        conn.execute(insert(db.interventions).values(
            kind="block", item_id="172", category="Animation", operator="old", reason="x", created_at=now,
            expires_at=now + timedelta(days=1)))
        conn.execute(insert(db.interventions).values(
            kind="teleport", item_id="1", operator="old", reason="x", created_at=now, expires_at=None))
        services.store._bump(conn, "interventions")
        conn.execute(insert(db.feature_entries).values(id="bad", entry={"kind": "regex", "pattern": "("}, created_at=now))
        services.store._bump(conn, "features")
    with caplog.at_level(logging.ERROR, logger="recsys.serving"):
        lists_still_served(client, adults[:3])
    assert "skipping unreadable stored record" in caplog.text
    ready = client.get("/readyz")
    assert ready.status_code == 200
    unreadable = ready.json()["unreadable_records"]
    assert len(unreadable) == 3 and any("exactly one of item_id or category" in v for v in unreadable.values())
    assert "recsys_unreadable_records 3.0" in client.get("/metrics").text


# -- finding 2: malformed ids are a 404 or 422 with a message -------------------------------------
@pytest.mark.parametrize("request_id", [
    "not-a-uuid", "4b0c5d3e-9f1a-4c2b-8d7e-6f5a4b3c2d1e", "0" * 64, "00000000-0000-0000-0000-000000000000",
    "' OR 1=1 --", "ffffffff-ffff-7fff-bfff-ffffffffffff", "x" * 10_000,
])
def test_a_malformed_request_id_is_a_4xx(client, adults, request_id):
    response = client.get(f"/v1/recommendations/{request_id}", params={"user_id": adults[0]})
    assert response.status_code in (404, 422), response.text
    assert_service_headers(response)
    assert response.json()["detail"]


@pytest.mark.parametrize("intervention_id", ["99999999999999999999999", "-1", "0", "1e3", "abc"])
def test_a_malformed_intervention_id_is_a_4xx(client, intervention_id):
    response = client.delete(f"/v1/admin/interventions/{intervention_id}", headers=ADMIN)
    assert response.status_code in (404, 422), response.text
    assert_service_headers(response)


# -- finding 3: an unexpected error is a JSON 500 with both headers, logged with its request id ---
def test_an_unexpected_error_is_json_with_both_headers_and_logged(client, adults, monkeypatch, caplog):
    services = client.app.state.services

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.store, "list_state", broken)
    with caplog.at_level(logging.ERROR, logger="recsys.serving"):
        response = client.post("/v1/recommendations", json={"user_id": adults[0]})
    assert response.status_code == 500
    assert_service_headers(response)
    request_id = response.headers["x-request-id"]
    assert request_id in response.json()["detail"] and "disk on fire" not in response.text
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


# -- finding 6: an operator's pin holds for its TTL on every visit ---------------------------------
def test_a_pin_holds_on_every_visit_within_its_ttl(client, adults, trained):
    bundle, _ = trained
    ranked = client.post("/v1/recommendations", json={"user_id": adults[0], "surface": "home", "k": 10}).json()
    pinned = ranked["items"][4]["item_id"]  # an item personalized lists would also pick (and then skip as recent)
    response = client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "home", "item_id": pinned, "position": 1, "reason": "campaign", "ttl_seconds": 3600})
    assert response.status_code == 201
    approve(client, response.json())
    for user in adults[:20]:
        for visit in range(3):  # each visit a new session: recently shown items are skipped, the pin is not
            body = client.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10}).json()
            first = body["items"][0]
            assert (first["item_id"], first["slot"]) == (pinned, "pinned"), (user, visit, body["violations"])


def test_violations_name_public_item_ids_and_1_based_positions(client, adults, trained):
    bundle, _ = trained
    blocked = str(bundle.items["item_id"][7])
    approve(client, client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "block", "item_id": blocked, "reason": "unsafe"}).json())
    approve(client, client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "home", "item_id": blocked, "position": 3, "reason": "campaign"}).json())
    body = client.post("/v1/recommendations", json={"user_id": adults[0], "surface": "home"}).json()
    pins = [v for v in body["violations"] if v["rule"] == "pin"]
    assert pins and pins[0]["position"] == 3
    assert f"pinned item {blocked} at position 3" in pins[0]["reason"]


# -- finding 8: concurrent posts of the same events count each one once ----------------------------
def test_concurrent_posts_of_the_same_events_count_each_once(client, adults, trained):
    bundle, _ = trained
    item = str(bundle.items["item_id"][0])
    now = client.app.state.services.clock()
    for round_ in range(20):
        events = [{"event_id": f"r{round_}-e{i}", "user_id": adults[i % 5], "item_id": item, "type": "like",
                   "ts": now.isoformat()} for i in range(50)]
        accepted, barrier = [], threading.Barrier(4)

        def post():
            barrier.wait()
            response = client.post("/v1/events", json={"events": events})
            assert response.status_code == 200, response.text
            accepted.append(response.json()["accepted"])

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(accepted) == 50, (round_, accepted)


def test_the_documented_batch_of_1000_events_fits_the_body_limit(client, adults, trained):
    bundle, _ = trained
    item = str(bundle.items["item_id"][0])
    now = client.app.state.services.clock()
    longest = "u" * 128
    events = [{"event_id": f"{i:0128d}", "user_id": longest, "item_id": item, "type": "impression",
               "ts": now.isoformat()} for i in range(1000)]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"accepted": 1000, "duplicates": 0}
    too_many = client.post("/v1/events", json={"events": events + events[:1]})
    assert too_many.status_code == 422


# -- finding 11: one vocabulary for pages: the API's page 0 is the front screen everywhere ----------
def test_the_transparency_page_numbers_pages_as_the_api_does(client):
    page = client.get("/transparency").text
    document = client.get("/v1/transparency").text
    for text in (page, document):
        assert "front screen (page 0)" in text
        assert "page 1," not in text and "page 1 " not in text


def test_no_accepted_write_makes_a_later_read_fail(client_factory, adults, trained):
    """Property: whatever intervention, feature-library, settings or tag body the API accepts,
    the lists that follow are served (generated bodies, valid and invalid alike)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    bundle, _ = trained
    client = client_factory()
    items = [str(i) for i in bundle.items["item_id"][:5]] + ["nope", ""]
    categories = list(bundle.category_names[:3]) + ["Nope"]
    maybe = lambda strategy: st.one_of(st.none(), strategy)  # noqa: E731
    intervention = st.fixed_dictionaries({
        "kind": st.sampled_from(["pin", "block", "boost"]), "reason": st.sampled_from(["a reason", "x"])}, optional={
        "surface": maybe(st.sampled_from(["home", "feed", "trending", "nowhere"])),
        "item_id": maybe(st.sampled_from(items)), "category": maybe(st.sampled_from(categories)),
        "position": maybe(st.integers(-1, 120)), "factor": maybe(st.floats(-1, 20, allow_nan=False)),
        "ttl_seconds": maybe(st.integers(0, 10**8)), "page": st.integers(0, 3)})
    feature = st.fixed_dictionaries({
        "kind": st.sampled_from(["keyword", "regex", "exemplar"]),
        "category": st.sampled_from(["illegal", "spam"])}, optional={
        "pattern": maybe(st.sampled_from(["the", "(?i)^a", "(", "x{2,}", ".*", "[a-"])),
        "exemplar_item_id": maybe(st.sampled_from(items)), "threshold": st.floats(0.01, 1.0)})
    user_write = st.one_of(
        st.tuples(st.just("PUT"), st.just("settings"), st.fixed_dictionaries({}, optional={
            "personalization": maybe(st.booleans()), "minor_mode": maybe(st.booleans())})),
        st.tuples(st.just("POST"), st.just("tags"), st.fixed_dictionaries({"tag": st.sampled_from(categories)}, optional={
            "action": st.sampled_from(["add", "not_interested", "delete"])})),
    )

    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(st.tuples(st.just("intervention"), intervention), st.tuples(st.just("feature"), feature),
                              st.tuples(st.just("user"), user_write)), min_size=1, max_size=4))
    def writes_then_reads(writes):
        for kind, body in writes:
            if kind == "intervention":
                response = client.post("/v1/admin/interventions", headers=ADMIN, json=body)
            elif kind == "feature":
                response = client.post("/v1/admin/features", headers=ADMIN, json=body)
            else:
                method, what, values = body
                response = client.request(method, f"/v1/users/{adults[0]}/{what}", json=values)
            assert response.status_code < 500, response.text
        lists_still_served(client, adults[:2])

    writes_then_reads()


def test_a_served_page_that_cannot_be_read_is_skipped_not_a_500(client, adults):
    """Red team: the session rules (dedup, dispersal, the session diversity cap) and the recent-pages
    filter read the user's earlier pages from the state database. A page row whose JSON a hand edit
    broke (SQLite checks no JSON) made every later list of that user a 500; it is skipped and counted."""
    from sqlalchemy import text

    from serving import metrics

    user = adults[4]
    first = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
    client.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10})
    with client.app.state.services.store.engine.begin() as conn:
        conn.execute(text("UPDATE served_pages SET items = 'oops{' WHERE request_id = :r"), {"r": first["request_id"]})
        conn.execute(text("UPDATE served_pages SET categories = '{\"a\": 1}' WHERE user_id = :u AND surface = 'home'"),
                     {"u": user})
    before = metrics.UNREADABLE_READS.labels("served_page")._value.get()
    for surface, page, session in (("feed", 1, first["session_id"]), ("home", 0, None), ("home", 1, None), ("related", 0, None)):
        response = client.post("/v1/recommendations", json={"user_id": user, "surface": surface, "page": page, "k": 10,
                                                             **({"session_id": session} if session else {})})
        assert response.status_code == 200, (surface, page, response.text)
        assert response.json()["items"]
    assert metrics.UNREADABLE_READS.labels("served_page")._value.get() > before
