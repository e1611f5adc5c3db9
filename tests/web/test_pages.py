"""The pages over HTTP (no browser): every form refuses a post without this session's CSRF token,
sessions are signed, the complaints queue puts overdue ones first, and the pages answer 4xx, never
5xx, to what a browser would not send."""

from __future__ import annotations

import re
from html import escape
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.web.console import complaint_queue

PASSWORD = "a long enough password"
FORMS = [
    "/console/login", "/console/logout", "/console/interventions", "/console/interventions/1/approve",
    "/console/interventions/1/reject", "/console/interventions/1/revoke", "/console/complaints/abc/acknowledge",
    "/console/complaints/abc/resolve", "/console/features", "/console/features/fe-1/remove", "/me/login", "/me/logout", "/me/settings", "/me/tags/cat01/delete",
    "/me/tags/cat01/not-interested", "/me/complaints",
    "/me/feedback/0190d0a8-0000-7000-8000-000000000000/i1/not_interested", "/me/guardian/u1/controls",
    "/me/history/erase",
]


def csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def logged_in(client, area: str, **fields) -> str:
    """Log in to `area` (console or me); returns the session's CSRF token."""
    token = csrf(client.get(f"/{area}/login"))
    response = client.post(f"/{area}/login", data={"csrf_token": token, **fields})
    assert response.status_code == 200 and f"/{area}" in str(response.url), response.text[:500]
    return csrf(response)


def test_every_form_refuses_a_post_without_a_valid_csrf_token(client):
    client.app.state.services.accounts.add("olga", "operator", PASSWORD)
    logged_in(client, "console", name="olga", password=PASSWORD)
    user = client.app.state.services.catalog.bundle.user_ids[0]
    logged_in(client, "me", user_id=str(user))
    before = client.app.state.services.store.load_user(str(user))
    for path in FORMS:
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            response = client.post(path, data={**data, "personalization": "off", "name": "olga", "password": PASSWORD})
            assert response.status_code == 403, (path, data, response.text)
            assert "csrf_token" in response.json()["detail"]
        assert client.post(path, content=b"\xff\x00garbage", headers={"content-type": "multipart/form-data; boundary=x"}
                           ).status_code == 403
    assert client.app.state.services.store.load_user(str(user)) == before


def test_a_token_from_another_session_or_area_is_refused(client, client_factory):
    services = client.app.state.services
    services.accounts.add("olga", "operator", PASSWORD)
    console_token = logged_in(client, "console", name="olga", password=PASSWORD)
    other = client_factory()  # another browser (and another app built with the same secret)
    other_token = csrf(other.get("/console/login"))
    assert client.post("/console/interventions", data={"csrf_token": other_token, "kind": "block"}).status_code == 403
    assert client.post("/me/settings", data={"csrf_token": console_token, "personalization": "off"}).status_code == 403
    # a tampered cookie is a new anonymous session
    client.cookies.set("recsys_console", client.cookies.get("recsys_console")[:-3] + "abc", path="/console")
    assert "/console/login" in str(client.get("/console").url)


def test_logging_in_rotates_the_session_and_a_wrong_password_is_401(client):
    client.app.state.services.accounts.add("olga", "operator", PASSWORD)
    anonymous = csrf(client.get("/console/login"))
    wrong = client.post("/console/login", data={"csrf_token": anonymous, "name": "olga", "password": "not it at all"})
    assert wrong.status_code == 401 and "no enabled operator" in wrong.text
    after = logged_in(client, "console", name="olga", password=PASSWORD)
    assert after != anonymous
    assert client.post("/console/interventions", data={"csrf_token": anonymous, "kind": "block"}).status_code == 403


def test_pages_without_a_session_lead_to_login(client):
    for path in ("/console", "/console/complaints", "/console/records", "/console/filing.zip", "/me"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].endswith("/login"), path


def test_unknown_or_bad_logins_are_4xx(client):
    token = csrf(client.get("/me/login"))
    for user_id, status in (("nobody-at-all", 404), ("x" * 500, 422), ("bad id!", 422), ("", 422)):
        response = client.post("/me/login", data={"csrf_token": token, "user_id": user_id})
        assert response.status_code == status, (user_id, response.status_code)


def test_the_filing_package_downloads_for_any_account(client):
    import io
    import zipfile

    client.app.state.services.accounts.add("audrey", "auditor", PASSWORD)
    logged_in(client, "console", name="audrey", password=PASSWORD)
    response = client.get("/console/filing.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert {"filing.json", "filing.md", "filing.html"} <= set(names)


T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
complaint = st.builds(
    lambda status, ack_h, res_h, age_h: {
        "id": "c", "status": status, "created_at": T0 - timedelta(hours=age_h), "updated_at": T0 - timedelta(hours=age_h),
        "acknowledge_due": T0 + timedelta(hours=ack_h), "resolve_due": T0 + timedelta(hours=res_h)},
    st.sampled_from(["received", "acknowledged", "resolved", "rejected"]), st.integers(-100, 100), st.integers(-400, 400),
    st.integers(0, 500))


@given(st.lists(complaint, max_size=30))
def test_the_complaints_queue_puts_open_overdue_complaints_first(rows):
    queue = complaint_queue(rows, T0)
    assert len(queue) == len(rows)
    ranks = [0 if c["overdue"] else 1 if c["open"] else 2 for c in queue]
    assert ranks == sorted(ranks)
    for earlier, later in zip(queue, queue[1:]):
        if earlier["open"] and later["open"] and earlier["overdue"] == later["overdue"]:
            assert earlier["due"] <= later["due"]
    for c in queue:
        due = c["acknowledge_due"] if c["status"] == "received" else c["resolve_due"]
        assert c["overdue"] == (c["status"] in ("received", "acknowledged") and due < T0)


@pytest.mark.parametrize("path", ["/console/interventions/0/approve", "/console/interventions/99999999999999999999/approve",
                                  "/console/complaints/" + "z" * 300 + "/resolve", "/me/tags/" + "t" * 300 + "/delete"])
def test_odd_paths_are_4xx_not_5xx(client, path):
    assert 400 <= client.post(path, data={}).status_code < 500


def test_a_minor_in_curfew_sees_no_past_list_in_the_privacy_center(client_factory, synthetic_dir):
    """The privacy center's past lists pass the same gate as the JSON lookup route (serving/gate.py)."""
    import polars as pl

    from recsys.schema import Dataset
    from tests.conftest import MovableClock

    clock = MovableClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # 18:00 in Asia/Shanghai
    client = client_factory(clock=clock)
    minor = Dataset.load(synthetic_dir).users.filter(pl.col("age").is_between(12, 15))["user_id"].sort()[0]
    served = client.post("/v1/recommendations", json={"user_id": minor, "surface": "home"}).json()
    logged_in(client, "me", user_id=minor)
    daytime = client.get("/me")
    assert served["request_id"] in daytime.text and "served-list" in daytime.text
    clock.now = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30: rest time
    night = client.get("/me")
    assert night.status_code == 200 and served["request_id"] not in night.text
    assert "served-list" not in night.text


def test_the_console_adds_and_removes_feature_library_entries_as_the_account(client):
    accounts = client.app.state.services.accounts
    accounts.add("olga", "operator", PASSWORD)
    accounts.add("audrey", "auditor", PASSWORD)
    token = logged_in(client, "console", name="olga", password=PASSWORD)
    added = client.post("/console/features", data={"csrf_token": token, "kind": "keyword", "pattern": "casino", "category": "spam"})
    assert "added" in str(added.url)
    entries = client.get("/v1/admin/features", headers={"Authorization": "Bearer test-admin-token"}).json()
    assert [(e["pattern"], e["author"]) for e in entries] == [("casino", "olga")]
    bad = client.post("/console/features", data={"csrf_token": token, "kind": "regex", "pattern": "(", "category": "spam"})
    assert "error=" in str(bad.url)
    client.post("/console/logout", data={"csrf_token": token})
    auditor = logged_in(client, "console", name="audrey", password=PASSWORD)
    refused = client.post(f"/console/features/{entries[0]['id']}/remove", data={"csrf_token": auditor})
    assert "reads+only" in str(refused.url) or "reads%20only" in str(refused.url)
    assert len(client.app.state.services.store.feature_entries()) == 1


def test_an_item_marked_not_interested_on_the_privacy_center_leaves_every_later_list(client):
    """The page's per-item buttons call the JSON feedback route's function: the item is gone from
    the next lists; "fewer like this" too; a bad kind or a list not served to me is a message, not a 5xx."""
    user = str(client.app.state.services.catalog.bundle.user_ids[0])
    served = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
    first, second = served["items"][0]["item_id"], served["items"][1]["item_id"]
    token = logged_in(client, "me", user_id=user)
    page = client.get("/me")
    assert f"/me/feedback/{served['request_id']}/{first}/not_interested" in page.text
    done = client.post(f"/me/feedback/{served['request_id']}/{first}/not_interested", data={"csrf_token": token})
    assert done.status_code == 200 and "not interested in" in done.text
    token = csrf(done)
    done = client.post(f"/me/feedback/{served['request_id']}/{second}/fewer_like_this", data={"csrf_token": token})
    assert done.status_code == 200 and "fewer like" in done.text
    kinds = {f["item_id"]: f["kind"] for f in client.get(f"/v1/users/{user}/feedback").json()["feedback"]}
    assert kinds == {first: "not_interested", second: "fewer_like_this"}
    for surface in ("home", "feed", "related", "trending"):
        for page_number in range(3):
            items = [i["item_id"] for i in client.post("/v1/recommendations", json={
                "user_id": user, "surface": surface, "page": page_number, "k": 10}).json()["items"]]
            assert first not in items and second not in items, (surface, page_number)
    bad = client.post(f"/me/feedback/{served['request_id']}/{first}/hate_it", data={"csrf_token": csrf(done)})
    assert bad.status_code == 200 and "kind" in bad.text
    other = client.post("/me/feedback/0190d0a8-0000-7000-8000-000000000000/x/not_interested",
                        data={"csrf_token": csrf(bad)})
    assert other.status_code == 200 and "no list" in other.text


def test_a_guardian_sets_a_minors_controls_on_the_privacy_center(client):
    """The guardian's section calls the JSON guardian route's function: the limit holds for the minor;
    a control that would loosen the rules, or a minor not in their care, is a message, not a change."""
    from tests.conftest import ADMIN

    services = client.app.state.services
    minor, grandma = str(services.catalog.bundle.user_ids[3]), str(services.catalog.bundle.user_ids[4])  # users of the service
    linked = client.put(f"/v1/admin/guardians/{minor}", json={"guardian_id": grandma}, headers=ADMIN)
    assert linked.status_code == 200, linked.text
    token = logged_in(client, "me", user_id=grandma)
    page = client.get("/me")
    assert f'id="ward-{minor}"' in page.text
    done = client.post(f"/me/guardian/{minor}/controls", data={"csrf_token": token, "daily_minutes": "25",
                                                               "curfew_start": "20:00", "curfew_end": "22:00", "max_age_rating": "8"})
    assert done.status_code == 200 and "saved" in done.text, re.findall(r'id="error">([^<]*)', done.text)
    controls = client.get(f"/v1/guardians/{grandma}/minors/{minor}/controls").json()
    assert controls["effective_daily_minutes"] == 25 and controls["effective_max_age_rating"] <= 8
    assert controls["curfews"] == ["22:00-06:00", "20:00-22:00"]
    bad = client.post(f"/me/guardian/{minor}/controls", data={"csrf_token": csrf(done), "daily_minutes": "0"})
    assert bad.status_code == 200 and "daily_minutes" in bad.text
    stranger = client.post("/me/guardian/someone-else/controls", data={"csrf_token": csrf(bad), "daily_minutes": "5"})
    assert stranger.status_code == 200 and "not a minor in the care of" in stranger.text
    assert client.get(f"/v1/guardians/{grandma}/minors/{minor}/controls").json()["effective_daily_minutes"] == 25


def test_a_privacy_center_session_ends_when_the_identity_token_it_came_from_expires(client_factory):
    """Red team: in `jwt` mode the /me login takes the identity provider's token, then the session
    cookie lasted `console.session_hours` (12 h) whatever the token's expiry: a five-minute token
    (or one the provider stopped renewing) gave half a day of access. The session ends with the token."""
    import time

    from serving.auth import AuthConfig
    from tests.conftest import MovableClock
    from tests.serving.test_auth import SECRET, token

    clock = MovableClock(datetime.now(UTC))
    client = client_factory(clock=clock, auth=AuthConfig(mode="jwt", jwt_secret=SECRET))
    user = str(client.app.state.services.catalog.bundle.user_ids[0])
    bearer = token(user, exp=int(time.time()) + 300)["Authorization"].removeprefix("Bearer ")
    form = logged_in(client, "me", token=bearer)
    clock.now = clock.now + timedelta(minutes=4)  # within the token's life
    assert client.get("/me", follow_redirects=False).status_code == 200
    clock.now = clock.now + timedelta(minutes=2)  # past its expiry
    assert client.get("/me", follow_redirects=False).headers["location"].endswith("/me/login")
    refused = client.post("/me/settings", data={"csrf_token": form, "personalization": "off"})
    assert refused.status_code == 403 or "/me/login" in str(refused.url)
    assert client.app.state.services.store.load_user(user).personalization is True


def history_rows(page) -> list[tuple[str, str, str]]:
    """The privacy center's history table: (event id, item shown, type) per row."""
    return re.findall(r'<tr data-event-id="([^"]+)"><td>([^<]*)</td><td>([^<]*)</td>', page.text)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_client(request, client_factory):
    """A client whose state database is a new SQLite file or this module's PostgreSQL database."""
    if request.param == "sqlite":
        return client_factory()
    return client_factory(database_url=request.getfixturevalue("postgres_url"))


def test_the_privacy_center_shows_exactly_my_history_and_its_form_erases_it(backend_client, trained, adults):
    """The history section calls the JSON history route's function: the signed-in user's latest 20
    events by title, never another user's; the erase form calls the erasure route's function: the
    events and seen set are gone, a model-known user's next list is `history_erased`, the message says
    the served-list log is kept, and the other user's history is untouched."""
    from html import escape

    from tests.serving.test_history import post_events

    client = backend_client
    bundle, _ = trained
    a, b = adults[2], adults[3]
    items = [str(i) for i in bundle.item_ids[:40]]
    mine = post_events(client, a, items[:23], f"page-{a}")
    theirs = post_events(client, b, items[10:30], f"page-{b}")
    assert client.post("/v1/recommendations", json={"user_id": a, "surface": "home", "k": 10}).json()["mode"] == "personalized"
    token = logged_in(client, "me", user_id=a)
    page = client.get("/me")
    assert page.status_code == 200 and "Your interaction history" in page.text
    assert re.search(r'id="history-counts">.*?: 23 .*?: 23</p>', page.text, re.S)
    titles = client.app.state.services.catalog.titles
    assert history_rows(page) == [(e["event_id"], escape(str(titles[bundle.item_index[e["item_id"]]])), e["type"])
                                  for e in mine[:20]]  # the newest 20, by title, newest first
    assert not any(e["event_id"] in page.text for e in theirs) and 'id="history-erased"' not in page.text

    erased = client.post("/me/history/erase", data={"csrf_token": token})
    assert erased.status_code == 200 and erased.url.path == "/me", erased.text[:300]
    message = re.search(r'id="message"[^>]*>(.*?)</', erased.text, re.S).group(1)
    assert "history erased" in message and "23 events and 23 seen items" in message and "is kept" in message
    assert history_rows(erased) == [] and 'id="history-erased"' in erased.text
    assert re.search(r'id="history-counts">.*?: 0 .*?: 0</p>', erased.text, re.S)
    after = client.get(f"/v1/users/{a}/history").json()
    assert (after["events_stored"], after["seen_items"], after["erased"]) == (0, 0, True)
    listed = client.post("/v1/recommendations", json={"user_id": a, "surface": "home", "k": 10}).json()
    assert (listed["mode"], listed["mode_reason"]) == ("non_personalized", "history_erased")
    assert client.get(f"/v1/users/{b}/history").json()["events_stored"] == 20  # only the signed-in user's


def test_the_privacy_center_of_a_user_without_events_says_so(client, adults):
    logged_in(client, "me", user_id=adults[4])
    page = client.get("/me")
    assert page.status_code == 200 and "No events stored." in page.text and history_rows(page) == []
    assert re.search(r'id="history-counts">.*?: 0 .*?: 0</p>', page.text, re.S) and 'id="erase-history"' in page.text


def test_the_history_never_shows_a_minor_a_title_their_lists_could_not(client_factory, synthetic_dir):
    """An event can name any item id of the catalog; the history section shows its title only when the
    gate's audience may receive the item (a minor's age band), and no title at all while the gate
    refuses the minor (rest time): otherwise posting events for item ids would read out titles that
    minors mode keeps from the minor."""
    import polars as pl

    from recsys.schema import Dataset
    from tests.conftest import MovableClock
    from tests.serving.test_history import post_events

    clock = MovableClock(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))  # 14:00 in Asia/Shanghai
    client = client_factory(clock=clock)
    catalog = client.app.state.services.catalog
    minor = Dataset.load(synthetic_dir).users.filter(pl.col("age").is_between(12, 15))["user_id"].sort()[0]
    band = client.app.state.services.gate.admit_list(minor, clock.now, route="test", request_id="t").max_age_rating
    assert band is not None and band < 18
    adult_only = int(np.flatnonzero(catalog.age_rating > band)[0])
    allowed = int(np.flatnonzero(catalog.age_rating <= band)[0])
    ids = [str(catalog.bundle.item_ids[i]) for i in (adult_only, allowed)]
    post_events(client, minor, ids, "minor-history")
    logged_in(client, "me", user_id=minor)
    page = client.get("/me")
    shown = {event: item for event, item, _ in history_rows(page)}
    assert shown == {"minor-history-0": ids[0], "minor-history-1": escape(str(catalog.titles[allowed]))}
    assert f">{escape(str(catalog.titles[adult_only]))}<" not in page.text
    clock.now = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30: rest time, the gate refuses
    night = client.get("/me")
    assert {event: item for event, item, _ in history_rows(night)} == {"minor-history-0": ids[0],
                                                                         "minor-history-1": ids[1]}
