"""Server-side sessions of the pages, attacked over a real socket (uvicorn on 127.0.0.1, no browser).

Red team: the sessions lived only in a signed cookie, so logging out cleared the browser's copy while
a copy of the cookie (stolen, or left in another browser) stayed valid until it expired. Now the
cookie carries only a signed, random session id; every request reads its row in `web_sessions`, and
logging out, disabling an operator or changing their password revokes it there, for every worker.
"""

from __future__ import annotations

import secrets

import httpx
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, text

from serving.state import db
from tests.web.conftest import PASSWORD
from tests.web.test_attacks import browser, csrf, error_of, log_in


def copy_of(client: httpx.Client, area: str) -> httpx.Client:
    """Another browser holding a copy of `client`'s session cookie for `area` (a stolen cookie)."""
    thief = httpx.Client(base_url=client.base_url, follow_redirects=True, timeout=60)
    thief.cookies.set(f"recsys_{area}", client.cookies[f"recsys_{area}"], domain="127.0.0.1", path=f"/{area}")
    return thief


def session_rows(site, subject: str) -> list[dict]:
    with site.services.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(db.web_sessions).where(db.web_sessions.c.subject == subject))]


def test_a_privacy_center_cookie_copied_before_logout_is_refused_after_it(site, adults):
    user = adults[0]
    with browser(site) as owner:
        token = log_in(owner, "me", user_id=user)
        with copy_of(owner, "me") as thief, copy_of(owner, "me") as poster:
            assert thief.get("/me").url.path == "/me"  # the copy works while the session lasts
            owner.post("/me/logout", data={"csrf_token": token})
            assert thief.get("/me").url.path == "/me/login"
            refused = poster.post("/me/settings", data={"csrf_token": token, "personalization": "off"})
            assert refused.url.path == "/me/login" and "log in first" in error_of(refused)
    assert site.services.store.load_user(user).personalization is True
    (row,) = session_rows(site, user)
    assert row["kind"] == "me" and row["revoked_at"] is not None


def test_a_console_cookie_copied_before_logout_is_refused_after_it(site, trained):
    item = str(trained[0].item_ids[21])
    with browser(site) as olga:
        token = log_in(olga, "console", name="olga", password=PASSWORD)
        with copy_of(olga, "console") as thief, copy_of(olga, "console") as poster:
            assert thief.get("/console").url.path == "/console"
            olga.post("/console/logout", data={"csrf_token": token})
            assert thief.get("/console").url.path == "/console/login"
            posted = poster.post("/console/interventions", data={"csrf_token": token, "kind": "block", "item_id": item,
                                                                "reason": "with a stolen cookie"})
            assert posted.url.path == "/console/login" and "log in first" in error_of(posted)
    assert site.services.store.list_interventions() == []


def test_disabling_an_operator_revokes_every_session_they_have(site):
    with browser(site) as first, browser(site) as second, browser(site) as alice:
        log_in(first, "console", name="olga", password=PASSWORD)
        log_in(second, "console", name="olga", password=PASSWORD)
        log_in(alice, "console", name="alice", password=PASSWORD)
        site.services.accounts.store.disable("olga", site.services.clock())
        with copy_of(first, "console") as thief:
            assert thief.get("/console").url.path == "/console/login"
        assert second.get("/console").url.path == "/console/login"
        assert alice.get("/console").url.path == "/console"  # another account's session is untouched
    assert [row["revoked_at"] is not None for row in session_rows(site, "olga")] == [True, True]


def test_a_changed_password_revokes_the_operators_sessions(site):
    with browser(site) as bob:
        log_in(bob, "console", name="bob", password=PASSWORD)
        with copy_of(bob, "console") as thief:
            site.services.accounts.store.set_password("bob", site.services.accounts.hash_password("another long password"),
                                                      site.services.clock())
            assert thief.get("/console").url.path == "/console/login"
            assert bob.get("/console").url.path == "/console/login"
        log_in(bob, "console", name="bob", password="another long password")  # the new password opens a new session
        assert bob.get("/console").url.path == "/console"


def test_the_cookie_carries_a_signed_id_never_the_account(site, adults):
    user = adults[1]
    with browser(site) as owner:
        log_in(owner, "me", user_id=user)
        cookie = owner.cookies["recsys_me"]
        assert user not in cookie
        (row,) = session_rows(site, user)
        assert row["id_hash"] not in cookie  # the table holds a hash of the id, the cookie the id itself
        # a correctly signed cookie whose id was never issued (the secret leaked, not the table) opens nothing
        signer = URLSafeTimedSerializer(site.services.accounts.secret, salt="recsys-session-me")
        assert signer.loads(cookie) == {"sid": signer.loads(cookie)["sid"]}
        forged = signer.dumps({"sid": secrets.token_urlsafe(32)})
        with browser(site) as other:
            other.cookies.set("recsys_me", forged, domain="127.0.0.1", path="/me")
            assert other.get("/me").url.path == "/me/login"


def test_a_session_row_that_cannot_be_read_is_a_logged_out_session_never_a_500(site, adults):
    user = adults[2]
    with browser(site) as owner:
        token = log_in(owner, "me", user_id=user)
        with site.services.store.engine.begin() as conn:  # edited by hand: a time no driver can read
            conn.execute(text("UPDATE web_sessions SET expires_at = 'not a time' WHERE subject = :s"), {"s": user})
        page = owner.get("/me")
        assert page.status_code == 200 and page.url.path == "/me/login"
        posted = owner.post("/me/settings", data={"csrf_token": token, "personalization": "off"})
        assert posted.url.path == "/me/login" and "log in first" in error_of(posted)
        assert site.services.store.load_user(user).personalization is True
        log_in(owner, "me", user_id=user)  # logging in again works: a new row
        assert owner.get("/me").url.path == "/me"
    assert httpx.get(f"{site.url}/metrics", timeout=30).text.count('recsys_unreadable_reads_total{kind="web_session"}') == 1


def test_a_session_table_that_cannot_be_read_leaves_the_pages_up(site, adults):
    user = adults[3]
    with browser(site) as owner:
        log_in(owner, "me", user_id=user)
        with site.services.store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE web_sessions RENAME TO web_sessions_away"))
        try:
            page = owner.get("/me")
            assert page.status_code == 200 and page.url.path == "/me/login"
            assert owner.get("/console").url.path == "/console/login"
        finally:
            with site.services.store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE web_sessions_away RENAME TO web_sessions"))
        assert owner.get("/me").url.path == "/me"  # the row was there all along: the session is back
    assert csrf(httpx.get(f"{site.url}/me/login", timeout=30))
