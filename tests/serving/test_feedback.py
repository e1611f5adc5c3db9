"""Negative feedback over HTTP (Provisions Art. 17 (draft 15); the "not interested" campaign): a user's
"not interested" / "fewer like this" on an item of a served list removes the item and its content
duplicates from every later list on every surface, down-weights the category for the configured
period, can be listed and undone, and bad input gets a clear 4xx."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

SURFACES = ("home", "feed", "related", "trending")


@pytest.fixture(scope="module")
def users(adults) -> list[str]:
    return adults[:3]


def rec(client, user, **body):
    response = client.post("/v1/recommendations", json={"user_id": user, **body})
    assert response.status_code == 200, response.text
    return response.json()


def later_lists(client, user, sessions=2, pages=3, k=20):
    """Every surface, new sessions, several pages each: the items of each list."""
    out = []
    for surface in SURFACES:
        for _ in range(sessions):
            session = None
            for page in range(pages):
                body = rec(client, user, surface=surface, page=page, k=k, **({"session_id": session} if session else {}))
                session = body["session_id"]
                out.append([i["item_id"] for i in body["items"]])
    return out


def duplicated_contents(trained) -> dict[str, set[str]]:
    """item id -> the other item ids with the same content key (items that have any)."""
    bundle, _ = trained
    ids = [str(i) for i in bundle.item_ids]
    by_content: dict[int, list[str]] = {}
    for item, code in zip(ids, np.asarray(bundle.content_code).tolist()):
        by_content.setdefault(code, []).append(item)
    return {item: set(group) - {item} for group in by_content.values() if len(group) > 1 for item in group}


def test_rejected_items_and_their_duplicates_never_come_back_on_any_surface(client, users, trained):
    duplicates = duplicated_contents(trained)
    assert duplicates, "the synthetic catalog has content duplicates"
    for user in users:
        first = rec(client, user, surface="home", k=50)
        items = [i["item_id"] for i in first["items"]]
        # reject one item that has a content duplicate (when the list has one) and one that is ranked first
        with_duplicate = next((i for i in items if i in duplicates), items[-1])
        rejected = {items[0], with_duplicate}
        for item, kind in ((items[0], "not_interested"), (with_duplicate, "fewer_like_this")):
            response = client.post(f"/v1/users/{user}/feedback",
                                   json={"request_id": first["request_id"], "item_id": item, "kind": kind})
            assert response.status_code == 201, response.text
        excluded = rejected | {d for item in rejected for d in duplicates.get(item, set())}
        shown = [item for items in later_lists(client, user) for item in items]
        assert len(shown) > 300
        assert not excluded & set(shown), f"{user}: rejected items came back: {excluded & set(shown)}"


def test_feedback_is_listed_with_its_period_and_can_be_undone(client, users):
    user = users[0]
    first = rec(client, user, surface="feed", k=10)
    item, category = first["items"][1]["item_id"], first["items"][1]["category"]
    body = client.post(f"/v1/users/{user}/feedback",
                       json={"request_id": first["request_id"], "item_id": item, "kind": "fewer_like_this"}).json()
    entry = next(f for f in body["feedback"] if f["item_id"] == item)
    assert entry["kind"] == "fewer_like_this" and entry["category"] == category and entry["request_id"] == first["request_id"]
    period = client.app.state.services.settings.policy.feedback.fewer_like_this_days
    from datetime import datetime
    assert datetime.fromisoformat(entry["fewer_like_this_until"]) - datetime.fromisoformat(entry["created_at"]) == timedelta(days=period)
    assert item in {f["item_id"] for f in client.get(f"/v1/users/{user}/feedback").json()["feedback"]}
    undone = client.delete(f"/v1/users/{user}/feedback/{item}")
    assert undone.status_code == 200 and item not in {f["item_id"] for f in undone.json()["feedback"]}
    assert client.delete(f"/v1/users/{user}/feedback/{item}").status_code == 404


def test_fewer_like_this_down_weights_the_category(client_factory, users, tmp_path):
    """The same requests on two servers with their own state, one with the feedback: the category's
    share of the next lists is lower there, and the item is gone."""
    from compliance.logstore import LogConfig

    treated = client_factory()
    control = client_factory(database_url=f"sqlite:///{tmp_path / 'control.db'}",
                             logs=LogConfig(dir=tmp_path / "control-logs", fsync="group"))
    user = users[1]
    first = {name: rec(c, user, surface="feed", k=30) for name, c in (("treated", treated), ("control", control))}
    assert [i["item_id"] for i in first["treated"]["items"]] == [i["item_id"] for i in first["control"]["items"]]
    counts = pl.Series([i["category"] for i in first["treated"]["items"]]).value_counts(sort=True)
    category = counts.row(0)[0]  # the user's most shown category
    item = next(i["item_id"] for i in first["treated"]["items"] if i["category"] == category)
    assert treated.post(f"/v1/users/{user}/feedback", json={"request_id": first["treated"]["request_id"], "item_id": item,
                                                            "kind": "fewer_like_this"}).status_code == 201

    def next_lists(client):
        return [rec(client, user, surface=s, k=30)["items"] for s in ("feed", "related", "home")]

    shares = {}
    for name, client in (("treated", treated), ("control", control)):
        lists = next_lists(client)
        shares[name] = np.mean([i["category"] == category for items in lists for i in items])
        if name == "treated":
            assert item not in {i["item_id"] for items in lists for i in items}
    assert shares["treated"] < shares["control"], shares


def test_bad_feedback_gets_a_clear_4xx(client, users, adults):
    user, other = users[0], adults[-1]
    first = rec(client, user, k=5)
    listed = first["items"][0]["item_id"]

    def post(**body):
        return client.post(f"/v1/users/{user}/feedback",
                           json={"request_id": first["request_id"], "item_id": listed, "kind": "not_interested", **body})

    not_in_list = post(item_id="no-such-item-in-this-list")
    assert not_in_list.status_code == 422 and "was not in list" in not_in_list.json()["detail"]
    unknown = post(request_id="0190f7a0-0000-7000-8000-000000000000")
    assert unknown.status_code == 404 and "request_id" in unknown.json()["detail"]
    assert post(kind="hate_it").status_code == 422
    assert post(request_id="not-a-request-id").status_code == 422
    assert client.post(f"/v1/users/{user}/feedback", json={"request_id": first["request_id"], "item_id": listed}).status_code == 422
    assert post(extra=True).status_code == 422
    # another user's list is not this user's to judge
    theirs = client.post(f"/v1/users/{other}/feedback",
                         json={"request_id": first["request_id"], "item_id": listed, "kind": "not_interested"})
    assert theirs.status_code == 404
    assert client.get("/v1/users/nobody-here/feedback").status_code == 404
    assert client.delete(f"/v1/users/{user}/feedback/never-rejected").status_code == 404
    assert client.get(f"/v1/users/{user}/feedback").json()["feedback"] == []


def test_onboarding_never_forces_interest_tags(client, data):
    """A brand-new account (no tags, no history) gets full lists on every surface without choosing any tag."""
    new_user = "newcomer-without-tags"
    client.app.state.services.store.seed_profiles([{"user_id": new_user, "age": 30, "created_at": None}], "test-newcomer")
    assert client.get(f"/v1/users/{new_user}/tags").json()["tags"] == []
    for surface in SURFACES:
        body = rec(client, new_user, surface=surface)
        assert len(body["items"]) == 10
    page = client.get("/transparency").text
    assert "No onboarding step asks you to pick interest tags" in page


def test_the_category_penalty_lasts_the_configured_period_and_the_exclusion_stays(trained):
    from datetime import UTC, datetime

    from compliance.policy import PolicyConfig
    from served.catalog import Catalog
    from served.feedback import FeedbackSignals
    from served.query import Feedback, UserState

    bundle, version = trained
    catalog = Catalog.from_bundle(bundle, str(version))
    policy = PolicyConfig.model_validate({"feedback": {"fewer_like_this_days": 7}})
    given = datetime(2026, 3, 1, tzinfo=UTC)
    items = [str(i) for i in bundle.item_ids[:2]]
    user = UserState("u", True, 30, True, None, feedback=(
        Feedback(items[0], "not_interested", catalog.category_of(0), given),
        Feedback(items[1], "fewer_like_this", catalog.category_of(1), given)))
    during = FeedbackSignals.of(catalog, user, given + timedelta(days=6), policy)
    after = FeedbackSignals.of(catalog, user, given + timedelta(days=7), policy)
    assert during.categories == (int(catalog.category[1]),) and after.categories == ()
    for signals in (during, after):
        assert set(signals.items.tolist()) == {0, 1}
        duplicates = np.flatnonzero(np.isin(catalog.content, catalog.content[[0, 1]]))
        assert signals.excludes(duplicates, catalog.content).all()
        assert not signals.eligible(catalog.content)[duplicates].any()


# -- attacks (red team): flooding, and feedback on what was never shown to this user ------------------------------
def test_feedback_past_the_per_user_limit_is_a_409_until_one_is_undone(client_factory, users):
    """Every request reads all of a user's feedback, so the count is bounded (`max_feedback_items`):
    past it a new mark is refused with a message saying how to make room; changing a mark, and a
    mark after an undo, still work."""
    client = client_factory(max_feedback_items=3)
    user = users[2]
    listed = rec(client, user, surface="feed", k=10)
    items = [i["item_id"] for i in listed["items"]]

    def mark(item, kind="not_interested"):
        return client.post(f"/v1/users/{user}/feedback", json={"request_id": listed["request_id"], "item_id": item, "kind": kind})

    assert [mark(item).status_code for item in items[:3]] == [201, 201, 201]
    full = mark(items[3])
    assert full.status_code == 409 and "DELETE" in full.json()["detail"] and full.headers["x-request-id"]
    assert mark(items[0], "fewer_like_this").status_code == 201  # changing a mark adds nothing
    assert client.delete(f"/v1/users/{user}/feedback/{items[1]}").status_code == 200
    assert mark(items[3]).status_code == 201
    assert {f["item_id"] for f in client.get(f"/v1/users/{user}/feedback").json()["feedback"]} == {items[0], items[2], items[3]}


def test_a_user_who_rejected_every_item_still_gets_an_answer_on_every_surface(client, users, trained):
    """The most feedback a user can give: every item of the catalog (as if through thousands of lists).
    No route fails; lists come back (empty when nothing is left), and the listing still reads."""
    bundle, _ = trained
    user = users[0]
    store, now = client.app.state.services.store, client.app.state.services.clock()
    for n, item in enumerate(bundle.item_ids):
        store.put_feedback(user, str(item), "fewer_like_this" if n % 2 else "not_interested",
                           "0190d0a8-0000-7000-8000-000000000000", None, now)
    for surface in SURFACES:
        for page in (0, 1):
            assert rec(client, user, surface=surface, page=page, k=20)["items"] == [], (surface, page)
    assert client.get("/v1/trending", params={"user_id": user}).status_code == 200
    assert len(client.get(f"/v1/users/{user}/feedback").json()["feedback"]) == len(bundle.item_ids)
