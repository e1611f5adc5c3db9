"""The pages attacked over a real socket (uvicorn on 127.0.0.1, no browser): a CSRF token carried to
another person's session, a session cookie planted before login, a disabled operator's open console,
one approver approving their own proposal from a second session, interventions made through the
console's forms that contradict each other, and a guardian's form fed what no browser would send.
Each attack must meet a 4xx or a form error and leave the data as it was; no list becomes a 500."""

from __future__ import annotations

import re

import httpx
import polars as pl
import pytest

from tests.conftest import ADMIN
from tests.web.conftest import PASSWORD

SURFACES = ("home", "feed", "related", "trending")


def csrf(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def browser(site) -> httpx.Client:
    """A fresh browser: its own cookie jar, following redirects like a browser does."""
    return httpx.Client(base_url=site.url, follow_redirects=True, timeout=60)


def log_in(client: httpx.Client, area: str, **fields) -> str:
    response = client.post(f"/{area}/login", data={"csrf_token": csrf(client.get(f"/{area}/login")), **fields})
    assert response.status_code == 200 and response.url.path == f"/{area}", response.text[:300]
    return csrf(response)


def error_of(page: httpx.Response) -> str:
    return (page.url.params.get("error") or "") + (page.url.params.get("msg") or "")


@pytest.fixture
def people(site, adults):
    return adults[0], adults[1]


def test_a_csrf_token_works_only_in_the_session_it_was_made_for(site, people):
    alice_user, bob_user = people
    with browser(site) as alice, browser(site) as bob:
        alice_token = log_in(alice, "me", user_id=alice_user)
        log_in(bob, "me", user_id=bob_user)
        # Alice's page token, replayed with Bob's session (a page of hers that leaked, a shared proxy log)
        forged = bob.post("/me/settings", data={"csrf_token": alice_token, "personalization": "off"})
        assert forged.status_code == 403 and "csrf_token" in forged.json()["detail"]
        assert site.services.store.load_user(bob_user).personalization is True
        # and after Alice logs out, her old token does not act for her next login either
        alice.post("/me/logout", data={"csrf_token": alice_token})
        log_in(alice, "me", user_id=alice_user)
        assert alice.post("/me/settings", data={"csrf_token": alice_token, "personalization": "off"}).status_code == 403


def stored_events(site, user: str) -> int:
    return httpx.get(f"{site.url}/v1/users/{user}/history", timeout=60).json()["events_stored"]


def test_no_one_but_the_signed_in_user_erases_their_history(site, people, trained):
    """The erase form acts for the session's user only: Alice's token in Bob's session, a forged or
    missing token, an anonymous session's own token and Alice's token after she logged out are
    refused, and Alice's events stay; Bob's own erasure takes his events, never hers."""
    alice_user, bob_user = people
    items = [str(i) for i in trained[0].item_ids[:6]]
    now = site.services.clock().isoformat()
    events = [{"event_id": f"attack-{user}-{n}", "user_id": user, "item_id": item, "type": "click", "ts": now}
              for user in people for n, item in enumerate(items)]
    assert httpx.post(f"{site.url}/v1/events", json={"events": events}, timeout=60).json()["accepted"] == 12
    with browser(site) as alice, browser(site) as bob, browser(site) as stranger:
        alice_token = log_in(alice, "me", user_id=alice_user)
        bob_token = log_in(bob, "me", user_id=bob_user)
        forged = bob.post("/me/history/erase", data={"csrf_token": alice_token})
        assert forged.status_code == 403 and "csrf_token" in forged.json()["detail"]
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": bob_token}):
            assert alice.post("/me/history/erase", data=data).status_code == 403
        anonymous = stranger.post("/me/history/erase", data={"csrf_token": csrf(stranger.get("/me/login"))})
        assert anonymous.url.path == "/me/login" and "log in first" in error_of(anonymous)
        alice.post("/me/logout", data={"csrf_token": alice_token})
        assert alice.post("/me/history/erase", data={"csrf_token": alice_token}).status_code == 403
        assert stored_events(site, alice_user) == stored_events(site, bob_user) == 6
        erased = bob.post("/me/history/erase", data={"csrf_token": bob_token})
        assert "6 events" in error_of(erased) and "kept" in error_of(erased)
        assert (stored_events(site, bob_user), stored_events(site, alice_user)) == (0, 6)


def test_a_session_cookie_planted_before_login_is_worthless_after_it(site, people):
    victim_user, _ = people
    with browser(site) as attacker, browser(site) as victim:
        planted_token = csrf(attacker.get("/me/login"))
        planted = attacker.cookies.get("recsys_me")
        victim.cookies.set("recsys_me", planted, domain="127.0.0.1", path="/me")  # fixation: the attacker's cookie
        victim.post("/me/login", data={"csrf_token": planted_token, "user_id": victim_user})
        assert victim.cookies.get("recsys_me") != planted  # logging in rotated the session
        assert attacker.get("/me").url.path == "/me/login"  # the planted cookie is still anonymous
        refused = attacker.post("/me/settings", data={"csrf_token": planted_token, "personalization": "off"})
        assert refused.url.path == "/me/login"
        assert site.services.store.load_user(victim_user).personalization is True


def test_a_disabled_operator_loses_an_open_console_at_once(site, trained):
    item = str(trained[0].item_ids[11])
    with browser(site) as olga:
        token = log_in(olga, "console", name="olga", password=PASSWORD)
        site.services.accounts.store.disable("olga", site.services.clock())
        assert olga.get("/console").url.path == "/console/login"
        posted = olga.post("/console/interventions", data={"csrf_token": token, "kind": "block", "item_id": item,
                                                           "reason": "after being disabled"})
        assert posted.url.path == "/console/login" and "log in first" in error_of(posted)
    assert site.services.store.list_interventions() == []
    assert httpx.post(f"{site.url}/v1/admin/login", json={"name": "olga", "password": PASSWORD}).status_code == 401


def test_one_approver_in_two_sessions_is_still_one_person(site, trained):
    item = str(trained[0].item_ids[12])
    with browser(site) as first, browser(site) as second, browser(site) as bob:
        token = log_in(first, "console", name="alice", password=PASSWORD)
        proposed = first.post("/console/interventions", data={"csrf_token": token, "kind": "pin", "surface": "home",
                                                               "item_id": item, "position": "1", "reason": "front pin"})
        assert "proposed" in error_of(proposed), error_of(proposed)
        (pending,) = site.services.store.list_interventions()
        again = log_in(second, "console", name="alice", password=PASSWORD)  # another browser, the same account
        refused = second.post(f"/console/interventions/{pending['id']}/approve", data={"csrf_token": again, "reason": "fine by me"})
        assert "two-person rule" in error_of(refused)
        with_token = httpx.post(f"{site.url}/v1/admin/interventions/{pending['id']}/approve", json={"reason": "ok by me"},
                                headers={"Authorization": "Bearer " + site.services.accounts.issue_token(
                                    site.services.accounts.login("alice", PASSWORD))})
        assert with_token.status_code == 403
        assert site.services.store.get_intervention(pending["id"])["status"] == "pending"
        bobs = log_in(bob, "console", name="bob", password=PASSWORD)
        approved = bob.post(f"/console/interventions/{pending['id']}/approve", data={"csrf_token": bobs, "reason": "checked"})
        assert "approved" in error_of(approved)
        assert site.services.store.get_intervention(pending["id"])["status"] == "active"


def test_contradicting_interventions_from_the_console_never_make_a_list_fail(daytime_site, trained, synthetic_dir):
    """The audit's first finding was an intervention that made every list a 500. Through the console's
    forms: two pins on one position, a pin of an item also blocked, a pin of a flagged item, a pin past
    the page, a tiny and a huge boost, every editorial item and then every category blocked. Every
    surface still answers 200 for an adult and a minor, and the console still renders."""
    from recsys.schema import Dataset

    site = daytime_site  # the minor's lists are served: outside the minors' rest time

    bundle, _ = trained
    items = bundle.items
    flagged = items.filter(pl.col("flagged"))["item_id"].to_list()
    mature = items.filter(pl.col("age_rating") == 18)["item_id"].to_list()
    editorial = items.filter(pl.col("mainstream"))["item_id"].to_list()
    categories = site.services.catalog.category_names
    users = Dataset.load(synthetic_dir).users
    people = [users.filter(pl.col("age") >= 30)["user_id"].sort()[0], users.filter(pl.col("age") < 8)["user_id"].sort()[0]]
    forms = [
        {"kind": "pin", "surface": "home", "item_id": mature[0], "position": "1"},
        {"kind": "pin", "surface": "home", "item_id": mature[1], "position": "1"},
        {"kind": "block", "item_id": mature[1]},
        {"kind": "pin", "surface": "feed", "item_id": flagged[0], "position": "2"},
        {"kind": "pin", "surface": "feed", "item_id": editorial[0], "position": "100"},
        {"kind": "pin", "surface": "feed", "item_id": editorial[0], "position": "3"},
        {"kind": "boost", "category": categories[0], "factor": "1e-300"},
        {"kind": "boost", "category": categories[1], "factor": "10"},
        *({"kind": "block", "item_id": item} for item in editorial),
    ]

    def every_list_answers(stage: str) -> None:
        for user in people:
            for surface in SURFACES:
                for page in (0, 1):
                    response = httpx.post(f"{site.url}/v1/recommendations", timeout=60,
                                          json={"user_id": user, "surface": surface, "page": page, "k": 10})
                    assert response.status_code == 200, (stage, user, surface, page, response.text[:300])
            assert httpx.get(f"{site.url}/v1/trending", params={"user_id": user}, timeout=60).status_code == 200

    with browser(site) as olga, browser(site) as bob:
        token = log_in(olga, "console", name="olga", password=PASSWORD)
        approver = log_in(bob, "console", name="bob", password=PASSWORD)

        def propose(fields: dict) -> None:
            page = olga.post("/console/interventions", data={"csrf_token": token, "reason": "red team", **fields})
            assert page.status_code == 200, page.text[:300]
            for row in site.services.store.list_interventions():
                if row["status"] == "pending":
                    bob.post(f"/console/interventions/{row['id']}/approve", data={"csrf_token": approver, "reason": "checked by a second person"})

        for fields in forms:
            propose(fields)
        every_list_answers("conflicting pins, blocks, boosts")
        for category in categories:
            propose({"kind": "block", "category": category})
        every_list_answers("every category blocked")
        assert olga.get("/console").status_code == 200
    assert httpx.get(f"{site.url}/readyz").json()["unreadable_records"] == {}


GUARDIAN_FORMS = [
    {"daily_minutes": "١٢"}, {"daily_minutes": "１２"}, {"daily_minutes": "NaN"}, {"daily_minutes": "1e400"},
    {"daily_minutes": "-5"}, {"daily_minutes": "99999999999999999999"}, {"daily_minutes": "0x10"},
    {"max_age_rating": "٨"}, {"max_age_rating": "18"}, {"max_age_rating": "8.0"},
    {"curfew_start": "２１:００", "curfew_end": "07:00"}, {"curfew_start": "21:00:00.5", "curfew_end": "21:00"},
    {"curfew_start": "06:00", "curfew_end": "22:00"}, {"curfew_start": "21:00"}, {"curfew_start": "25:00", "curfew_end": "07:00"},
]


def test_a_guardians_form_fed_what_no_browser_sends_is_a_form_error(site, synthetic_dir):
    """The /me guardian form hands the text to the model the JSON route validates with: each bad value
    comes back as a message on the page (never a 500), and the controls in force are unchanged."""
    from recsys.schema import Dataset

    users = Dataset.load(synthetic_dir).users
    minor = users.filter(pl.col("age").is_between(8, 11))["user_id"].sort()[0]
    parent, stranger = users.filter(pl.col("age") >= 30)["user_id"].sort()[:2]
    assert httpx.put(f"{site.url}/v1/admin/guardians/{minor}", json={"guardian_id": parent}, headers=ADMIN).status_code == 200
    controls = f"{site.url}/v1/guardians/{parent}/minors/{minor}/controls"
    with browser(site) as page, browser(site) as other:
        token = log_in(page, "me", user_id=parent)
        saved = page.post(f"/me/guardian/{minor}/controls", data={"csrf_token": token, "daily_minutes": "20", "max_age_rating": "8"})
        assert "saved" in error_of(saved), error_of(saved)
        for fields in GUARDIAN_FORMS:
            answered = page.post(f"/me/guardian/{minor}/controls", data={"csrf_token": token, **fields})
            assert answered.status_code == 200 and answered.url.params.get("error"), (fields, answered.url)
        body = httpx.get(controls).json()
        assert (body["effective_daily_minutes"], body["controls"]["max_age_rating"], body["curfews"]) == (20, 8, ["22:00-06:00"])
        # another person's session: not their minor, whatever the path says
        theirs = log_in(other, "me", user_id=stranger)
        taken = other.post(f"/me/guardian/{minor}/controls", data={"csrf_token": theirs, "daily_minutes": "1440"})
        assert "not a minor in the care of" in taken.url.params.get("error", "")
        assert httpx.get(controls).json()["effective_daily_minutes"] == 20
