"""Named operators and the two-person rule over the JSON admin API (Art. 7, Art. 11, Art. 14 (draft 13)): accounts with
roles and argon2 passwords, operator tokens, the admin token as a named service account, a
front-screen pin that waits for a different approver, auditors who read and change nothing, and
the `recsys operators` command."""

from __future__ import annotations

import os
import subprocess

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.logstore import query
from compliance.oversight import OversightConfig, SensitiveRule, requires_approval
from tests.conftest import ADMIN, RECSYS

PASSWORD = "correct horse battery"


def login(client, name: str, role: str) -> dict:
    accounts = client.app.state.services.accounts
    if accounts.store.get(name) is None:
        accounts.add(name, role, PASSWORD)
    response = client.post("/v1/admin/login", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.json()["role"] == role
    return {"Authorization": f"Bearer {response.json()['token']}"}


def front_items(client, user="never-seen-7"):
    body = client.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10}).json()
    return [i["item_id"] for i in body["items"]]


def unseen_item(trained, shown) -> str:
    bundle, _ = trained
    return bundle.items.filter(pl.col("minor_safe") & ~pl.col("flagged") & ~pl.col("item_id").is_in(shown))["item_id"][0]


def test_a_front_screen_pin_waits_for_a_different_approver(client, trained, tmp_path):
    alice = login(client, "alice", "approver")
    bob = login(client, "bob", "approver")
    item = unseen_item(trained, front_items(client))
    proposed = client.post("/v1/admin/interventions", headers={**alice, "X-Operator": "somebody-else"}, json={
        "kind": "pin", "surface": "home", "item_id": item, "position": 2, "reason": "public-service notice"})
    assert proposed.status_code == 201, proposed.text
    pin = proposed.json()
    assert (pin["status"], pin["operator"]) == ("pending", "alice")  # the account, not the header
    assert item not in front_items(client)

    own = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=alice, json={"reason": "looks fine"})
    assert own.status_code == 403 and "two-person rule" in own.json()["detail"]
    assert item not in front_items(client)

    approved = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=bob, json={"reason": "checked the notice"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("active", "bob")
    assert front_items(client)[1] == item
    again = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=bob, json={"reason": "twice"})
    assert again.status_code == 409

    records = query(tmp_path / "logs", kind="intervention").to_dicts()
    text = str(records)
    assert '"propose"' in text and '"approve"' in text and "checked the notice" in text
    assert '"alice"' in text and '"bob"' in text and "somebody-else" not in text


def test_roles_decide_who_may_do_what(client, trained):
    olga = login(client, "olga", "operator")
    audrey = login(client, "audrey", "auditor")
    item = unseen_item(trained, [])
    # an auditor reads everything and changes nothing
    for method, path, body in [
        ("POST", "/v1/admin/interventions", {"kind": "pin", "surface": "feed", "item_id": item, "position": 1, "reason": "xyz"}),
        ("POST", "/v1/admin/features", {"kind": "keyword", "pattern": "spam", "category": "spam", "author": "a"}),
        ("POST", "/v1/admin/complaints/abc/acknowledge", None),
        ("DELETE", "/v1/admin/interventions/1", None),
    ]:
        response = client.request(method, path, headers=audrey, json=body)
        assert response.status_code == 403, (path, response.text)
        assert "reads only" in response.json()["detail"]
    for path in ("/v1/admin/interventions", "/v1/admin/complaints", "/v1/admin/features", "/v1/admin/logs/verify",
                 "/v1/admin/whoami"):
        assert client.get(path, headers=audrey).status_code == 200, path
    # an operator proposes, but cannot approve anyone's proposal
    pin = client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "home", "item_id": item, "position": 1, "reason": "campaign"}).json()
    assert pin["operator"] == "automation"  # the admin token is the named service account
    refused = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=olga, json={"reason": "fine"})
    assert refused.status_code == 403 and "only an approver" in refused.json()["detail"]
    # a pin on a surface without a front screen needs no second person
    feed = client.post("/v1/admin/interventions", headers=olga, json={
        "kind": "pin", "surface": "feed", "item_id": item, "position": 1, "reason": "campaign"}).json()
    assert (feed["status"], feed["operator"]) == ("active", "olga")
    pending = client.get("/v1/admin/interventions", headers=audrey, params={"status": "pending"}).json()
    assert [i["id"] for i in pending] == [pin["id"]]


def test_a_rejected_proposal_never_takes_effect(client, trained):
    rita = login(client, "rita", "approver")
    item = unseen_item(trained, front_items(client))
    pin = client.post("/v1/admin/interventions", headers=ADMIN, json={
        "kind": "pin", "surface": "home", "item_id": item, "position": 1, "reason": "campaign"}).json()
    rejected = client.post(f"/v1/admin/interventions/{pin['id']}/reject", headers=rita, json={"reason": "not editorial"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert item not in front_items(client)
    late = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=rita, json={"reason": "changed my mind"})
    assert late.status_code == 409


def test_logins_and_tokens_fail_closed(client):
    accounts = client.app.state.services.accounts
    accounts.add("dora", "operator", PASSWORD)
    assert client.post("/v1/admin/login", json={"name": "dora", "password": "wrong password!"}).status_code == 401
    assert client.post("/v1/admin/login", json={"name": "nobody", "password": PASSWORD}).status_code == 401
    token = client.post("/v1/admin/login", json={"name": "dora", "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/admin/whoami", headers=headers).json() == {"name": "dora", "role": "operator", "service_account": False}
    assert client.get("/v1/admin/whoami", headers={"Authorization": f"Bearer {token[:-2]}xx"}).status_code == 401
    # a password change ends the tokens issued before it (a leaked token dies with the old password)
    accounts.store.set_password("dora", accounts.hash_password(PASSWORD + " 2"), client.app.state.services.clock())
    assert client.get("/v1/admin/whoami", headers=headers).status_code == 401
    token = client.post("/v1/admin/login", json={"name": "dora", "password": PASSWORD + " 2"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/admin/whoami", headers=headers).status_code == 200
    accounts.store.disable("dora", client.app.state.services.clock())
    assert client.get("/v1/admin/whoami", headers=headers).status_code == 401  # from the next request
    stored = accounts.store.get("dora")["password_hash"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(ValueError, match="password"):
        accounts.add("eve", "operator", "short")
    with pytest.raises(ValueError, match="role"):
        accounts.add("eve", "root", PASSWORD)
    with pytest.raises(ValueError, match="service account"):
        accounts.add("automation", "approver", PASSWORD)


def test_a_reset_that_lands_while_a_login_is_checked_leaves_nothing_open(client):
    """A stolen password racing its own reset: the password is checked (argon2 takes a while), the
    operator's reset lands, then the token or console session is made. Neither may carry the new
    password: what was checked was the old one."""
    services = client.app.state.services
    accounts = services.accounts
    accounts.add("mallory", "operator", PASSWORD)
    checked = accounts.login("mallory", PASSWORD)  # the old password, checked
    assert checked is not None and accounts.still_current(checked)
    accounts.store.set_password("mallory", accounts.hash_password(PASSWORD + " reset"), services.clock())  # the reset
    token = accounts.issue_token(checked)  # made after the reset, from the earlier check
    assert client.get("/v1/admin/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert not accounts.still_current(checked)  # the console's login revokes the session it just opened
    fresh = accounts.login("mallory", PASSWORD + " reset")
    assert accounts.still_current(fresh)
    token = accounts.issue_token(fresh)
    assert client.get("/v1/admin/whoami", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "mallory"
    accounts.store.disable("mallory", services.clock())
    assert not accounts.still_current(fresh)


FRONT = (["home"], [0])


@given(kind=st.sampled_from(["pin", "block", "boost"]), surface=st.sampled_from([None, "home", "feed", "trending"]),
       page=st.integers(0, 3))
def test_only_configured_kinds_that_reach_the_front_screen_need_approval(kind, surface, page):
    default = requires_approval(kind, surface, page, OversightConfig(), *FRONT)
    reaches_front = (surface in (None, "home")) and (kind != "pin" or page == 0)
    assert default == (kind in ("pin", "block") and reaches_front)
    assert not requires_approval(kind, surface, page, OversightConfig(sensitive=[]), *FRONT)
    everywhere = OversightConfig(sensitive=[SensitiveRule(kind=kind, front_screen_only=False)])
    assert requires_approval(kind, surface, page, everywhere, *FRONT)


def test_the_operators_command(tmp_path):
    env = {**os.environ, "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "RECSYS_LOG_DIR": str(tmp_path / "logs")}

    def run(*args, stdin=""):
        return subprocess.run([RECSYS, "operators", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)

    added = run("add", "li.wei", "--role", "approver", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "added operator li.wei (approver)" in added.stdout
    duplicate = run("add", "li.wei", "--role", "auditor", "--password-stdin", stdin=PASSWORD + "\n")
    assert duplicate.returncode == 2
    assert duplicate.stderr.strip().splitlines()[-1] == "error: operator 'li.wei' already exists"
    bad_role = run("add", "zhang", "--role", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_role.returncode == 2 and "role" in bad_role.stderr
    listed = run("list")
    assert "li.wei\tapprover\tenabled" in listed.stdout and "automation\toperator\tservice account" in listed.stdout
    assert run("disable", "li.wei").returncode == 0
    assert "li.wei\tapprover\tdisabled" in run("list").stdout
    assert run("disable", "nobody").returncode == 2


def test_the_admin_token_never_approves_even_with_the_approver_role(client_factory, trained):
    """Red team: with `console.service_role = "approver"`, an approver who proposed under their own name
    could approve with the shared admin token, one person acting as two. The service account may
    propose and reject, never approve; a named second approver still can."""
    from serving.operators import ConsoleConfig

    client = client_factory(console=ConsoleConfig(service_role="approver"))
    alice, bob = login(client, "alice", "approver"), login(client, "bob", "approver")
    pin = client.post("/v1/admin/interventions", headers=alice, json={
        "kind": "pin", "surface": "home", "item_id": unseen_item(trained, front_items(client)), "position": 1,
        "reason": "alice's proposal"}).json()
    assert pin["status"] == "pending"
    refused = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=ADMIN, json={"reason": "alice again"})
    assert refused.status_code == 403 and "service account" in refused.json()["detail"]
    assert client.get("/v1/admin/interventions", headers=ADMIN, params={"status": "pending"}).json()[0]["id"] == pin["id"]
    approved = client.post(f"/v1/admin/interventions/{pin['id']}/approve", headers=bob, json={"reason": "bob checked it"})
    assert approved.status_code == 200 and approved.json()["status"] == "active"
