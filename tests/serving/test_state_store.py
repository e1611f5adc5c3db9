"""Every StateStore method on both backends, SQLite and PostgreSQL (real databases, no mocks):
each test runs once per backend (the `state_url` fixture in tests/conftest.py), on tables emptied
before it. Timestamps come back timezone-aware in UTC on both, whatever the session's time zone."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from compliance import minors
from serving.state import db
from serving.state.db import make_engine
from serving.state.store import ListRead, StateStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def store(state_engine) -> StateStore:
    with state_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in db.metadata.sorted_tables)} RESTART IDENTITY"))
        else:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
    return StateStore(state_engine)


def utc(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)


def page(store: StateStore, request_id: str, user: str = "u1", surface: str = "home", session: str = "s1", number: int = 0,
         items: list[int] | None = None, now: datetime = T0) -> None:
    items = items if items is not None else [number * 10 + i for i in range(3)]
    store.record_page(request_id=request_id, user_id=user, surface=surface, session_id=session, page=number, items=items,
                      categories=[i % 4 for i in items], contents=[i + 1000 for i in items], now=now)


def event(event_id: str, user: str = "u1", item: str = "i1", ts: datetime = T0, kind: str = "click") -> dict:
    return {"event_id": event_id, "user_id": user, "item_id": item, "type": kind, "ts": ts, "received_at": ts}


# -- users: profiles, settings, tags ------------------------------------------------------------------
def test_users_profiles_settings_and_tags(store):
    unknown = store.load_user("nobody")
    assert (unknown.known, unknown.age, unknown.personalization, unknown.minor_mode, unknown.tag_states) == (
        False, None, True, None, {})
    assert not store.user_exists("nobody")

    rows = [{"user_id": "adult", "age": 30, "created_at": T0}, {"user_id": "kid", "age": 10, "created_at": None}]
    assert store.seed_profiles(rows, "data-a") == 2
    assert store.seed_profiles(rows + [{"user_id": "late", "age": 40, "created_at": T0}], "data-a") == 0  # once per source
    assert store.seed_profiles([{"user_id": "adult", "age": 99, "created_at": T0}, {"user_id": "b", "age": 20, "created_at": T0}],
                               "data-b") == 2  # another dataset: new users in, existing ones kept
    assert store.load_user("adult").age == 30 and store.user_exists("b") and not store.user_exists("late")
    assert store.seed_profiles([], "data-c") == 0
    assert store.profiles_created(["adult", "kid", "nobody"]) == {"adult": T0, "kid": None}

    state = store.put_settings("adult", T0, personalization=False, minor_mode=None)
    assert (state.known, state.age, state.personalization, state.minor_mode) == (True, 30, False, None)
    assert store.put_settings("adult", T0, personalization=None, minor_mode=True).personalization is False  # kept
    assert store.load_user("adult").minor_mode is True
    cleared = store.put_settings("adult", T0, personalization=True, minor_mode=None, clear_minor_mode=True)
    assert (cleared.personalization, cleared.minor_mode) == (True, None)
    settings_only = store.put_settings("new-user", T0, personalization=None, minor_mode=False)
    assert (settings_only.known, settings_only.personalization, settings_only.minor_mode) == (True, True, False)
    assert store.user_exists("new-user")

    store.set_tag_state("adult", "comedy", "deleted", T0)
    store.set_tag_state("adult", "drama", "added", T0)
    store.set_tag_state("adult", "horror", "not_interested", T0)
    store.set_tag_state("adult", "drama", "not_interested", T0 + timedelta(seconds=1))  # a decision replaces the last
    user = store.load_user("adult")
    assert user.tag_states == {"comedy": "deleted", "drama": "not_interested", "horror": "not_interested"}
    assert user.tags_in("not_interested") == {"drama", "horror"}
    store.set_tag_state("adult", "comedy", None, T0)  # forget
    store.set_tag_state("adult", "never-set", None, T0)
    assert store.load_user("adult").tag_states == {"drama": "not_interested", "horror": "not_interested"}


# -- served pages ---------------------------------------------------------------------------------------
def test_served_pages_sessions_and_recent_items(store):
    assert store.session_pages("u1", "home", "s1", 5) == [] and store.latest_session("u1", "home") is None
    assert store.recent_items("u1", 3) == []
    page(store, "r0", number=0, items=[1, 2, 3])
    page(store, "r1", number=1, items=[4, 5])
    page(store, "r2", number=2, items=[6])
    page(store, "r-other-surface", surface="feed", session="s9", number=0, items=[7])
    page(store, "r-other-user", user="u2", number=0, items=[8])
    page(store, "r3", session="s2", number=0, items=[9, 10])

    pages = store.session_pages("u1", "home", "s1", before_page=2)
    assert [(p.page, p.session_id, p.items) for p in pages] == [(0, "s1", [1, 2, 3]), (1, "s1", [4, 5])]
    assert pages[0].categories == [1, 2, 3] and pages[0].contents == [1001, 1002, 1003]
    assert [p.page for p in store.session_pages("u1", "home", "s1", before_page=100)] == [0, 1, 2]
    assert store.latest_session("u1", "home") == "s2" and store.latest_session("u1", "feed") == "s9"
    assert store.latest_session("u2", "feed") is None
    assert store.recent_items("u1", 2) == [9, 10, 7]  # newest page first, any surface or session
    assert sorted(store.recent_items("u1", 100)) == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert store.recent_items("u1", 0) == []
    recent = store.recent_requests("u1", 2)  # the privacy center's "last lists served to me"
    assert [(r["request_id"], r["surface"], r["page"]) for r in recent] == [("r3", "home", 0), ("r-other-surface", "feed", 0)]
    assert len(store.recent_requests("u1", 100)) == 5 and store.recent_requests("u1", 0) == []


def test_request_state_is_the_one_by_one_reads_in_one_statement(store):
    """`request_state` (the request path's one round trip) answers as versions, latest_session,
    session_pages, recent_items and event_items asked one by one, for every kind of request."""
    for n, (session, number, items) in enumerate([("s1", 0, [1, 2, 3]), ("s1", 1, [4, 5]), ("s1", 1, [11]), ("s1", 2, [6]),
                                                  ("s2", 0, [9, 10])]):
        page(store, f"r{n}", session=session, number=number, items=items)
    page(store, "r-feed", surface="feed", session="s9", items=[7])
    page(store, "r-u2", user="u2", items=[8])
    store.add_events([event("e1", item="i1"), event("e2", item="i2"), event("e3", item="i1", kind="like"),
                      event("e4", user="u2", item="i3")])
    store.add_intervention({"kind": "block", "item_id": "i9", "operator": "op", "reason": "rights", "created_at": T0})
    store.add_events([event("kid2-e1", user="kid2", item="i1")])
    store.erase_history("kid2", T0 + timedelta(minutes=3))  # the erasure marker rides in the user's part
    names = ("interventions", "features")
    statements = 0

    def count(*_args) -> None:
        nonlocal statements
        statements += 1

    from sqlalchemy import event as sqlalchemy_event

    for user in ("u1", "u2", "nobody"):
        for surface in ("home", "feed"):
            for session_id in (None, "s1", "s2", "missing"):
                for number in (0, 1, 2, 3):
                    for recent_pages in (0, 2, 100):
                        for personal in (False, True):
                            sqlalchemy_event.listen(store.engine, "before_cursor_execute", count)
                            statements = 0
                            got = store.request_state(user, surface, session_id=session_id, page=number,
                                                      recent_pages=recent_pages, personal=personal, version_names=names)
                            sqlalchemy_event.remove(store.engine, "before_cursor_execute", count)
                            assert statements == 1
                            session = session_id if session_id is not None else (
                                store.latest_session(user, surface) if number > 0 else None)
                            assert got.versions == store.versions(*names) == (1, 0)
                            assert got.session_id == session
                            assert got.earlier_pages == (store.session_pages(user, surface, session, number)
                                                         if number > 0 and session else [])
                            assert got.recent_items == (store.recent_items(user, recent_pages) if personal else [])
                            assert sorted(got.event_items) == (sorted(store.event_items(user)) if personal else [])


def test_load_user_is_one_statement(store):
    """Profile, settings, tags and the user's feedback (oldest first) in one statement."""
    from sqlalchemy import event as sqlalchemy_event

    store.seed_profiles([{"user_id": "a", "age": 30, "created_at": T0}, {"user_id": "b", "age": 9, "created_at": T0}], "src")
    store.put_settings("a", T0, personalization=False, minor_mode=True)
    for tag, state in (("drama", "deleted"), ("horror", "not_interested"), ("comedy", "added")):
        store.set_tag_state("a", tag, state, T0)
    store.put_feedback("a", "i2", "fewer_like_this", "req-2", "Drama", T0 + timedelta(minutes=2))
    store.put_feedback("a", "i1", "not_interested", "req-1", None, T0 + timedelta(minutes=1))
    statements = []

    def count(*args) -> None:
        statements.append(args[2])

    sqlalchemy_event.listen(store.engine, "before_cursor_execute", count)
    try:
        users = {user_id: store.load_user(user_id) for user_id in ("a", "b", "nobody")}
    finally:
        sqlalchemy_event.remove(store.engine, "before_cursor_execute", count)
    assert len(statements) == 3
    a, b, nobody = users["a"], users["b"], users["nobody"]
    assert (a.known, a.age, a.personalization, a.minor_mode) == (True, 30, False, True)
    assert a.tag_states == {"drama": "deleted", "horror": "not_interested", "comedy": "added"}
    assert [(f.item_id, f.kind, f.category, f.created_at, f.request_id) for f in a.feedback] == [
        ("i1", "not_interested", None, T0 + timedelta(minutes=1), "req-1"),
        ("i2", "fewer_like_this", "Drama", T0 + timedelta(minutes=2), "req-2")]
    assert b.feedback == () and nobody.feedback == ()
    assert (b.known, b.age, b.personalization, b.minor_mode, b.tag_states) == (True, 9, True, None, {})
    assert (nobody.known, nobody.age, nobody.personalization, nobody.minor_mode, nobody.tag_states) == (
        False, None, True, None, {})


def test_list_state_is_the_gate_and_hydrate_reads_in_one_statement(store):
    """A list reads the state database ONCE (`list_state`): the gate's read of the user (profile,
    settings, tags, feedback; a minor's guardian controls and usage of the day) and hydrate's
    (`request_state`), with the same answers as `load_user`, `guardian`, `usage_state` and
    `request_state` asked one by one, for adults, minors with and without a guardian or usage,
    unknown users, and every kind of request."""
    from sqlalchemy import event as sqlalchemy_event

    store.seed_profiles([{"user_id": "adult", "age": 30, "created_at": T0}, {"user_id": "kid", "age": 12, "created_at": T0},
                         {"user_id": "kid2", "age": 15, "created_at": T0}], "src")
    store.put_settings("adult", T0, personalization=False, minor_mode=None, elderly_mode=True)
    store.set_tag_state("adult", "drama", "deleted", T0)
    store.put_feedback("adult", "i2", "fewer_like_this", "req-2", "Drama", T0 + timedelta(minutes=2))
    store.put_feedback("adult", "i1", "not_interested", "req-1", None, T0 + timedelta(minutes=1))
    store.link_guardian("kid", "mum", "op", T0)
    store.put_guardian_controls("kid", "mum", {"daily_minutes": 20}, T0 + timedelta(seconds=1))
    store.add_usage("kid", "2026-03-02", T0, 120, 60)
    store.add_usage("kid", "2026-03-02", T0 + timedelta(seconds=30), 120, 60)
    store.add_usage("kid2", "2026-03-01", T0 - timedelta(days=1), 120, 60)  # another day: not read
    for user in ("adult", "kid"):
        for n, (session, number) in enumerate([("s1", 0), ("s1", 1), ("s2", 0)]):
            page(store, f"{user}-r{n}", user=user, session=session, number=number, items=[n, n + 10])
        store.add_events([event(f"{user}-e1", user=user, item="i1"), event(f"{user}-e2", user=user, item="i7"),
                          event(f"{user}-e3", user=user, item="i3", ts=T0 - timedelta(hours=1), kind="like")])
    store.add_intervention({"kind": "block", "item_id": "i9", "operator": "op", "reason": "rights", "created_at": T0})
    store.add_events([event("kid2-e1", user="kid2", item="i1")])
    store.erase_history("kid2", T0 + timedelta(minutes=3))  # the erasure marker rides in the user's part
    names = ("interventions", "features")
    statements: list[str] = []

    def count(*args) -> None:
        statements.append(args[2])

    for user in ("adult", "kid", "kid2", "nobody"):
        for session_id in (None, "s1", "missing"):
            for number in (0, 1, 2):
                for personal in (False, True):
                    read = ListRead(surface="home", session_id=session_id, page=number, recent_pages=2,
                                    personal=personal, version_names=names)
                    sqlalchemy_event.listen(store.engine, "before_cursor_execute", count)
                    statements.clear()
                    try:
                        got = store.list_state(user, date(2026, 3, 2), read)
                    finally:
                        sqlalchemy_event.remove(store.engine, "before_cursor_execute", count)
                    assert len(statements) == 1
                    assert got.user == store.load_user(user)
                    assert got.guardian == store.guardian(user)
                    assert got.usage == store.usage_state(user, "2026-03-02")
                    expected = store.request_state(user, "home", session_id=session_id, page=number, recent_pages=2,
                                                   personal=personal, version_names=names)
                    assert (got.request.versions, got.request.session_id, got.request.earlier_pages,
                            got.request.recent_items, sorted(got.request.event_items), got.request.engaged_items) == (
                        expected.versions, expected.session_id, expected.earlier_pages, expected.recent_items,
                        sorted(expected.event_items), expected.engaged_items)
                    if personal and user in ("adult", "kid"):  # the sequential source's history, oldest first
                        assert got.request.engaged_items[0] == "i3" and set(got.request.engaged_items) == {"i1", "i3", "i7"}
    kid = store.list_state("kid", "2026-03-02", ListRead("home", None, 0, 2, False, names))
    assert kid.guardian is not None and kid.guardian[:2] == ("mum", {"daily_minutes": 20})
    assert kid.usage is not None and kid.usage[1] == 90.0 and utc(kid.usage[0])
    assert store.list_state("kid2", "2026-03-02", ListRead("home", None, 0, 2, False, names)).usage is None
    erased = store.list_state("kid2", "2026-03-02", ListRead("home", None, 0, 2, True, names))
    assert erased.user.history_erased_at == T0 + timedelta(minutes=3) and erased.request.event_items == []
    assert store.list_state("adult", "2026-03-02", ListRead("home", None, 0, 2, True, names)).user.history_erased_at is None


def test_prepared_statements_read_and_write_what_sqlalchemy_does(store):
    """The list's read and page write run as statements prepared once per dialect
    (serving/state/prepared.py): every variant of the read returns the rows `conn.execute` returns,
    value for value and type for type (aware datetimes, booleans, floats), and a list of the wrong
    size for an IN parameter is refused rather than silently cut."""
    from serving.state.prepared import Prepared
    from serving.state.store import _LIST_STATE, _request_params

    store.seed_profiles([{"user_id": "kid", "age": 12, "created_at": T0}], "src")
    store.put_settings("kid", T0, personalization=True, minor_mode=True, elderly_mode=False)
    store.set_tag_state("kid", "drama", "deleted", T0)
    store.put_feedback("kid", "i2", "fewer_like_this", "req-2", "Drama", T0)
    store.link_guardian("kid", "mum", "op", T0)
    store.add_usage("kid", "2026-03-02", T0, 120, 60)
    for n in range(3):
        page(store, f"r{n}", user="kid", session="s1", number=n)
    store.add_events([event("e1", user="kid"), event("e2", user="kid", item="i3", kind="like")])
    names = ("interventions", "features")
    for key, statement in _LIST_STATE.items():
        prepared = Prepared(statement, store.engine.dialect, sizes={"names": 2})
        params = {**_request_params("kid", "home", "s1" if key[1] == "given" else None, 2 if key[1] else 0, 2, names),
                  "day": "2026-03-02"}
        with store.engine.connect() as conn:
            expected = [tuple(row) for row in conn.execute(statement, params).all()]
            got = prepared.rows(conn, params)
        assert expected and [tuple(row) for row in got] == expected, key
        assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in expected], key
        assert all(utc(row.created_at) for row in got if row.created_at is not None)
        with pytest.raises(ValueError, match="names"), store.engine.connect() as conn:
            prepared.rows(conn, {**params, "names": ["interventions"]})
    pages = store.session_pages("kid", "home", "s1", 3)
    assert [(p.page, p.items, p.categories) for p in pages] == [(n, [n * 10 + i for i in range(3)],
                                                                 [(n * 10 + i) % 4 for i in range(3)]) for n in range(3)]


# -- versions, interventions, feature library -------------------------------------------------------------
def test_versions_interventions_and_their_version(store):
    assert store.version("interventions") == 0 and store.versions("interventions", "features", "x") == (0, 0, 0)
    pin = store.add_intervention({"kind": "pin", "surface": "home", "item_id": "i1", "position": 1, "operator": "op",
                                  "reason": "editorial", "created_at": T0, "expires_at": T0 + timedelta(days=1)})
    block = store.add_intervention({"kind": "block", "category": "Horror", "operator": "op", "reason": "r", "created_at": T0})
    boost = store.add_intervention({"kind": "boost", "item_id": "i2", "factor": 1.5, "operator": "op", "reason": "r",
                                    "created_at": T0, "expires_at": T0 + timedelta(hours=1)})
    assert store.version("interventions") == 3
    assert (pin["kind"], pin["surface"], pin["position"], pin["revoked_at"]) == ("pin", "home", 1, None)
    assert boost["factor"] == 1.5 and block["category"] == "Horror"
    assert store.get_intervention(pin["id"]) == pin and store.get_intervention(10_000) is None

    assert [r["id"] for r in store.list_interventions()] == [pin["id"], block["id"], boost["id"]]
    later = T0 + timedelta(hours=2)  # the boost expired
    assert [r["id"] for r in store.list_interventions(now=later)] == [pin["id"], block["id"]]

    revoked = store.revoke_intervention(block["id"], "op2", later)
    assert (revoked["revoked_at"], revoked["revoked_by"]) == (later, "op2")
    assert store.revoke_intervention(block["id"], "op3", later + timedelta(seconds=1))["revoked_by"] == "op2"  # once
    assert store.revoke_intervention(10_000, "op", later) is None
    assert store.version("interventions") == 4
    assert [r["id"] for r in store.list_interventions(now=later)] == [pin["id"]]
    assert len(store.list_interventions(now=later, include_inactive=True)) == 3
    # The two-person rule: a pending proposal is decided once; a second decision finds nothing pending.
    proposal = store.add_intervention({"kind": "pin", "surface": "home", "item_id": "i3", "position": 1, "operator": "op",
                                       "reason": "r", "created_at": T0, "status": "pending"})
    before = store.version("interventions")
    decided = store.decide_intervention(proposal["id"], "active", "approver", "checked", T0 + timedelta(minutes=1))
    assert (decided["status"], decided["decided_by"], decided["decision_reason"]) == ("active", "approver", "checked")
    assert store.version("interventions") == before + 1
    assert store.decide_intervention(proposal["id"], "rejected", "other", "late", T0) is None
    assert store.decide_intervention(pin["id"], "active", "approver", "not pending", T0) is None
    store.revoke_intervention(proposal["id"], "op", T0 + timedelta(minutes=2))


def test_feature_library_entries(store):
    entry = {"id": "f1", "kind": "keyword", "pattern": "spoiler", "category": "spam", "author": "a"}
    assert store.add_feature_entry("f1", entry, T0) is True
    assert store.add_feature_entry("f1", {**entry, "pattern": "other"}, T0) is False  # ids are unique; not bumped
    assert store.add_feature_entry("f2", {**entry, "id": "f2"}, T0 + timedelta(seconds=1)) is True
    assert store.feature_entries() == [entry, {**entry, "id": "f2"}] and store.version("features") == 2
    assert store.remove_feature_entry("f1", "op", T0) is True
    assert store.remove_feature_entry("f1", "op", T0) is False and store.remove_feature_entry("nope", "op", T0) is False
    assert store.feature_entries() == [{**entry, "id": "f2"}] and store.version("features") == 3


# -- complaints -----------------------------------------------------------------------------------------
def test_complaints(store):
    def complaint(user: str, at: datetime) -> dict:
        return store.add_complaint({"kind": "complaint", "subject_type": "item", "subject_id": "i1", "user_id": user,
                                    "text": "why this?", "status": "received", "created_at": at, "updated_at": at,
                                    "acknowledge_due": at + timedelta(days=1), "resolve_due": at + timedelta(days=15)})

    first = complaint("u1", T0)
    second = complaint("u2", T0 + timedelta(minutes=1))
    assert len(first["id"]) == 32 and first["status"] == "received" and first["resolution"] is None
    assert store.get_complaint(first["id"]) == first and store.get_complaint("nope") is None
    assert [c["id"] for c in store.list_complaints()] == [second["id"], first["id"]]  # newest first
    assert [c["id"] for c in store.list_complaints(limit=1)] == [second["id"]]

    acknowledged = store.update_complaint(first["id"], "received", {"status": "acknowledged", "updated_at": T0})
    assert acknowledged["status"] == "acknowledged"
    assert store.update_complaint(first["id"], "received", {"status": "resolved"}) is None  # not in that status any more
    assert [c["id"] for c in store.list_complaints(status="acknowledged")] == [first["id"]]
    resolved = store.update_complaint(first["id"], "acknowledged", {"status": "resolved", "resolution": "explained"})
    assert (resolved["status"], resolved["resolution"]) == ("resolved", "explained")


# -- events and accounts --------------------------------------------------------------------------------------
def test_request_state_lists_engaged_items_oldest_first(store):
    """The sequential candidate source reads what the user engaged with (clicks, likes, shares; not
    impressions), each item once at its latest event, oldest first."""
    store.add_events([event("a", item="i1", ts=T0), event("b", item="i2", ts=T0 + timedelta(minutes=5), kind="like"),
                      event("c", item="i3", ts=T0 + timedelta(minutes=10), kind="impression"),
                      event("d", item="i1", ts=T0 + timedelta(minutes=20), kind="share"),
                      event("e", item="i4", ts=T0 + timedelta(minutes=15)), event("f", user="u2", item="i5")])
    got = store.request_state("u1", "feed", session_id=None, page=0, recent_pages=2, personal=True,
                              version_names=("interventions",))
    assert got.engaged_items == ["i2", "i4", "i1"]
    assert sorted(got.event_items) == ["i1", "i2", "i3", "i4"]  # every event, impressions too, is "seen"
    assert store.request_state("u1", "feed", session_id=None, page=0, recent_pages=2, personal=False,
                               version_names=("interventions",)).engaged_items == []


def test_a_list_reads_only_the_users_latest_events_however_many_they_post(store):
    """A user who posts events without end (1,000 per request) must not make each of their lists
    read them all: the list's read takes the latest MAX_EVENTS_READ, newest by time (whatever order
    they were posted in), and never another user's."""
    from serving.state.store import MAX_EVENTS_READ

    old = [event(f"old{i}", item=f"old-{i}", ts=T0 - timedelta(days=2, seconds=i)) for i in range(50)]
    recent = [event(f"new{i}", item=f"new-{i % 300}", ts=T0 - timedelta(seconds=i), kind=("click", "impression")[i % 2])
              for i in range(MAX_EVENTS_READ)]
    store.add_events(recent[: MAX_EVENTS_READ // 2] + old + recent[MAX_EVENTS_READ // 2:])  # the old ones posted in between
    store.add_events([event("other", user="u2", item="other-item", ts=T0 + timedelta(hours=1))])
    read = ListRead("feed", None, 0, 2, True, ("interventions",))
    got = store.list_state("u1", T0.date(), read).request
    # the seen set holds every item, the 50 older ones too (one row per item, not per event)...
    assert sorted(got.event_items) == sorted([f"new-{i}" for i in range(300)] + [f"old-{i}" for i in range(50)])
    assert sorted(store.event_items("u1")) == sorted(got.event_items)
    # ...and the sequential source reads the latest events only
    assert len(got.engaged_items) == 150 and all(item.startswith("new-") for item in got.engaged_items)
    assert got.engaged_items[-1] == "new-0"  # oldest first: the latest engagement last


def test_an_item_seen_only_before_the_latest_events_stays_seen(store):
    """Seen means seen for heavy users too (issue 16): impressions of X, then more than
    MAX_EVENTS_READ newer events on other items (a heavy user's ~200 lists), and X is still among
    the items a list excludes (the seen set, written with each event), while the sequential source
    reads the latest events only. An event whose id another user's event already holds is not
    stored, and makes nothing seen."""
    from serving.state.store import MAX_EVENTS_READ

    old = [event(f"x{i}", item="X", ts=T0 - timedelta(days=3, minutes=i), kind="impression") for i in range(3)]
    old += [event("y", item="Y", ts=T0 - timedelta(days=2), kind="like")]
    newer = [event(f"n{i}", item=f"n-{i % 400}", ts=T0 - timedelta(seconds=i), kind=("impression", "click")[i % 2])
             for i in range(MAX_EVENTS_READ + 1)]
    assert store.add_events(old) == 4 and store.add_events(newer) == MAX_EVENTS_READ + 1
    assert store.add_events([event("y", user="u3", item="Z")]) == 0  # the id is taken: not stored, not seen
    expected = sorted(["X", "Y"] + [f"n-{i}" for i in range(400)])
    for personal_read in (
        store.list_state("u1", T0.date(), ListRead("feed", None, 0, 2, True, ("interventions",))).request,
        store.list_state("u1", T0.date(), ListRead("feed", "s1", 1, 2, True, ("interventions",))).request,
        store.request_state("u1", "feed", session_id=None, page=0, recent_pages=2, personal=True,
                            version_names=("interventions",)),
    ):
        assert sorted(personal_read.event_items) == expected
        assert "Y" not in personal_read.engaged_items and len(personal_read.engaged_items) == 200  # the latest events
    assert sorted(store.event_items("u1")) == expected
    assert store.event_items("u3") == []
    with store.engine.connect() as conn:  # one row per (user, item), however many events
        assert conn.execute(text("SELECT count(*) FROM seen_items WHERE user_id = 'u1'")).scalar() == 402


def test_events_are_idempotent_and_feed_the_history_queries(store):
    batch = [event("e1", item="i1"), event("e2", item="i2", ts=T0 + timedelta(hours=1)), event("e1", item="ignored")]
    assert store.add_events(batch) == 2  # a repeated id in one batch counts once, and its first copy is kept
    assert store.add_events(batch) == 0  # a resent batch counts nothing
    assert store.add_events([]) == 0
    big = [event(f"b{i:04d}", user="u2", item=f"i{i % 7}", ts=T0 - timedelta(days=1)) for i in range(1_203)]
    assert store.add_events(big + big[:10]) == 1_203  # beyond one statement's 500 rows
    assert sorted(store.event_items("u1")) == ["i1", "i2"] and len(store.event_items("u2")) == 7
    assert store.event_items("nobody") == []

    since = store.events_since(T0 + timedelta(minutes=30))
    assert [(e["event_id"], e["item_id"], e["ts"]) for e in since] == [("e2", "i2", T0 + timedelta(hours=1))]
    assert len(store.events_since(T0 - timedelta(days=2))) == 1_205

    store.seed_profiles([{"user_id": "u2", "age": 20, "created_at": T0 - timedelta(days=30)}], "data")
    accounts = store.accounts(["u1", "u2", "nobody"], before=T0 + timedelta(minutes=30))
    assert accounts == [
        {"user_id": "u1", "created_at": None, "prior_events_items": 1},
        {"user_id": "u2", "created_at": T0 - timedelta(days=30), "prior_events_items": 7},
        {"user_id": "nobody", "created_at": None, "prior_events_items": 0},
    ]
    # A hot list recomputed later reads the rows it read then: events received after it are not among them.
    rows = store.trending_events(T0 + timedelta(minutes=30), received_by=T0 + timedelta(hours=1))
    assert [(r["event_id"], r["item_id"]) for r in rows] == [("e2", "i2")]
    assert store.trending_events(T0 + timedelta(minutes=30), received_by=T0 + timedelta(minutes=59)) == []
    assert len(store.trending_events(T0 - timedelta(days=2), received_by=T0 + timedelta(hours=1))) == 1_205


# -- minors' usage ----------------------------------------------------------------------------------------
def test_a_users_history_is_exported_page_by_page_and_never_another_users(store):
    """Newest first by time, then by event id (two events of one time are ordered, not lost at a page
    boundary); pages of `limit` by the (ts, event id) cursor cover every event once; counts of the
    user's events and seen set; another user's events never appear."""
    rows = [event(f"a{i:02d}", item=f"i{i % 7}", ts=T0 - timedelta(minutes=i // 2), kind=("click", "impression")[i % 2])
            for i in range(25)]  # pairs of events share a time
    rows += [event(f"b{i}", user="u2", item=f"i{i}", ts=T0 + timedelta(minutes=i)) for i in range(5)]
    assert store.add_events(rows) == 30
    first = store.history("u1", 10)
    assert (first.events_stored, first.seen_items, first.erased_at, len(first.events)) == (25, 7, None, 10)
    newest_first = sorted(rows[:25], key=lambda r: (r["ts"], r["event_id"]), reverse=True)
    exported, cursor = [], None
    while True:
        page_of = store.history("u1", 10, cursor)
        exported += page_of.events
        cursor = page_of.next_before
        if cursor is None:
            break
    assert [e["event_id"] for e in exported] == [r["event_id"] for r in newest_first]
    assert [(e["item_id"], e["type"], e["ts"]) for e in exported] == [(r["item_id"], r["type"], r["ts"]) for r in newest_first]
    assert all(set(e) == {"event_id", "item_id", "type", "ts"} and utc(e["ts"]) for e in exported)
    whole = store.history("u1", 25)
    assert len(whole.events) == 25 and whole.next_before is None  # exactly one page: no empty page after it
    assert [e["event_id"] for e in store.history("u2", 500).events] == [f"b{i}" for i in reversed(range(5))]
    nobody = store.history("nobody", 10)
    assert (nobody.events, nobody.events_stored, nobody.seen_items, nobody.erased_at, nobody.next_before) == (
        [], 0, 0, None, None)


def test_an_erasure_deletes_the_users_events_and_seen_set_and_marks_them(store):
    store.seed_profiles([{"user_id": "u1", "age": 30, "created_at": T0}], "erase")
    store.add_events([event(f"a{i}", item=f"i{i % 4}") for i in range(9)] + [event(f"b{i}", user="u2", item=f"i{i}")
                                                                            for i in range(3)])
    erased_at = T0 + timedelta(hours=1)
    assert store.erase_history("u1", erased_at) == (9, 4, erased_at)
    gone = store.history("u1", 10)
    assert (gone.events, gone.events_stored, gone.seen_items, gone.erased_at) == ([], 0, 0, erased_at)
    assert store.event_items("u1") == [] and store.load_user("u1").history_erased_at == erased_at
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events WHERE user_id = 'u1'")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM seen_items WHERE user_id = 'u1'")).scalar() == 0
    assert store.history("u2", 10).events_stored == 3 and sorted(store.event_items("u2")) == ["i0", "i1", "i2"]
    assert store.load_user("u2").history_erased_at is None
    later = T0 + timedelta(hours=2)
    assert store.erase_history("u1", later) == (0, 0, later)  # idempotent: nothing left, the marker moves
    assert store.add_events([event("after", item="i1")]) == 1  # what comes after the erasure is stored
    after = store.history("u1", 10)
    assert (after.events_stored, after.seen_items, after.erased_at) == (1, 1, later)
    assert store.erase_history("never-had-any", T0) == (0, 0, T0)
    assert store.load_user("never-had-any").history_erased_at == T0
    assert store.history_erasures(["u1", "u2", "never-had-any"]) == {"u1": later, "never-had-any": T0}
    assert store.history_erasures([]) == {}


def test_an_erasure_sees_a_concurrent_event_batch_whole_or_not_at_all(store):
    """PostgreSQL: a batch of the user's events (events and seen rows, one transaction) commits
    while an erasure runs, right after the erasure's DELETE of events has read its rows: the batch's
    event and its seen row are both kept (the erasure never saw them), never the event without its
    seen row. Two DELETE statements in one READ COMMITTED transaction would erase the seen row of an
    event they kept (each statement reads the rows committed when it starts); the erasure's one
    statement reads them once. SQLite runs one writer at a time, so no batch can commit mid-erasure."""
    from sqlalchemy import event as sqlalchemy_event

    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: an erasure cannot interleave with a batch")
    store.add_events([event("old", item="i1")])
    batch = store.engine.connect()
    pending = batch.begin()  # what add_events writes, not yet committed
    batch.execute(db.events.insert(), [event("new", item="i2")])
    batch.execute(db.seen_items.insert(), [{"user_id": "u1", "item_id": "i2"}])

    def commit_the_batch(conn, cursor, statement, *args) -> None:
        if "DELETE FROM events" in statement and pending.is_active:
            pending.commit()

    sqlalchemy_event.listen(store.engine, "after_cursor_execute", commit_the_batch)
    try:
        assert store.erase_history("u1", T0)[:2] == (1, 1)
    finally:
        sqlalchemy_event.remove(store.engine, "after_cursor_execute", commit_the_batch)
        batch.close()
    left = store.history("u1", 10)
    assert ([e["event_id"] for e in left.events], left.seen_items) == (["new"], 1)
    assert store.event_items("u1") == ["i2"]


def test_usage_get_put_and_add(store):
    day = date(2026, 3, 2)
    assert store.get_usage("kid", day) is None and store.get_usage("kid", "2026-03-02") is None
    store.put_usage("kid", day, T0, 120.0)
    assert store.get_usage("kid", "2026-03-02") == (T0, 120.0)  # a date and its ISO string name the same day
    store.put_usage("kid", "2026-03-02", T0 + timedelta(seconds=5), 125.5)
    assert store.get_usage("kid", day) == (T0 + timedelta(seconds=5), 125.5)

    assert store.add_usage("kid2", day, T0, 300, 60) == (T0, 60.0)  # first activity: the floor
    assert store.add_usage("kid2", day, T0 + timedelta(seconds=30.25), 300, 60) == (T0 + timedelta(seconds=30.25), 90.25)
    assert store.add_usage("kid2", day, T0 + timedelta(seconds=10), 300, 60) == (T0 + timedelta(seconds=30.25), 90.25)  # older
    assert store.add_usage("kid2", day, T0 + timedelta(seconds=30.25), 300, 60)[1] == 90.25  # simultaneous
    assert store.add_usage("kid2", day, T0 + timedelta(hours=1), 300, 60) == (T0 + timedelta(hours=1), 150.25)  # a pause
    assert store.add_usage("kid2", day, T0 + timedelta(hours=1, seconds=300), 300, 60)[1] == 450.25  # exactly the cap
    assert store.add_usage("kid2", date(2026, 3, 3), T0 + timedelta(days=1), 300, 60) == (T0 + timedelta(days=1), 60.0)
    assert store.get_usage("kid2", day) == (T0 + timedelta(hours=1, seconds=300), 450.25)


def test_usage_state_and_charges_within_the_budget(store):
    """`usage_state` adds the start of continuous use; `charge_usage` is `add_usage` while the stored
    usage is below the budget, and writes nothing (None) once it is not."""
    day = date(2026, 3, 2)
    assert store.usage_state("kid3", day) is None
    assert store.charge_usage("kid3", day, T0, 300, 60, 100.0) == (T0, 60.0)  # first activity of the day
    assert store.usage_state("kid3", day) == (T0, 60.0, T0)
    assert store.charge_usage("kid3", day, T0 + timedelta(seconds=50), 300, 60, 100.0) == (T0 + timedelta(seconds=50), 110.0)
    assert store.charge_usage("kid3", day, T0 + timedelta(seconds=51), 300, 60, 100.0) is None  # 110 >= 100: spent
    assert store.usage_state("kid3", day) == (T0 + timedelta(seconds=50), 110.0, T0)  # nothing written
    assert store.charge_usage("kid3", day, T0 + timedelta(seconds=51), 300, 60, 200.0) == (T0 + timedelta(seconds=51), 111.0)
    assert store.charge_usage("kid3", date(2026, 3, 3), T0 + timedelta(days=1), 300, 60, 100.0) == (T0 + timedelta(days=1), 60.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_add_usage_is_exactly_the_rule_of_compliance_minors(store, seed):
    """Random activity (in and out of order, within and beyond the gap cap, microsecond times,
    across local days) gives exactly, to the bit, what folding `minors.add_activity` gives."""
    config = minors.MinorsConfig()
    rng = random.Random(seed)
    moment = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai: the local day changes within the run
    states: dict[date, minors.UsageState | None] = {}
    for _ in range(150):
        moment += timedelta(microseconds=rng.choice([
            rng.randint(1, 10**6), rng.randint(1, 300 * 10**6), rng.randint(300 * 10**6, 900 * 10**6),
            -rng.randint(1, 60 * 10**6), 0, config.activity_gap_cap_seconds * 10**6,
        ]))
        day = minors.local_day(moment, config)
        expected = minors.add_activity(states.get(day), moment, config)
        states[day] = expected
        got = store.add_usage("kid", day, moment, config.activity_gap_cap_seconds, config.activity_floor_seconds)
        assert got == (expected.last_activity, expected.seconds_used), (moment, states.get(day))
        assert store.continuous_since("kid", day) == expected.continuous_since, moment  # the rest reminder's clock
    assert len(states) >= 2  # across a local midnight


def test_guardians_and_usage_days(store):
    assert store.guardian("kid") is None and store.continuous_since("kid", "2026-03-02") is None
    store.link_guardian("kid", "mum", "operator-1", T0)
    assert store.guardian("kid") == ("mum", {}, T0)
    assert not store.put_guardian_controls("kid", "stranger", {"daily_minutes": 5}, T0)  # not theirs
    assert store.put_guardian_controls("kid", "mum", {"daily_minutes": 20}, T0 + timedelta(seconds=1))
    assert store.guardian("kid") == ("mum", {"daily_minutes": 20}, T0 + timedelta(seconds=1))
    store.link_guardian("kid", "mum", "operator-2", T0 + timedelta(seconds=2))  # the same guardian again: nothing lost
    assert store.guardian("kid")[:2] == ("mum", {"daily_minutes": 20})
    store.link_guardian("kid", "dad", "operator-2", T0 + timedelta(seconds=2))  # a new guardian starts afresh
    assert store.guardian("kid") == ("dad", {}, T0 + timedelta(seconds=2))
    store.link_guardian("kid2", "dad", "operator-2", T0)
    assert store.minors_of("dad") == ["kid", "kid2"] and store.minors_of("mum") == []
    for day, seconds in (("2026-03-01", 60.0), ("2026-03-02", 600.0), ("2026-03-04", 90.0)):
        store.put_usage("kid", day, T0, seconds)
    assert store.usage_days("kid", "2026-03-02") == [("2026-03-02", 600.0), ("2026-03-04", 90.0)]
    assert store.usage_days("nobody", date(2026, 3, 1)) == []


# -- time -----------------------------------------------------------------------------------------------------
def test_timestamps_round_trip_as_aware_utc(store, state_url, request):
    """Whatever zone a datetime is written in (or none: taken as UTC), it comes back aware, in UTC,
    the same instant; comparisons in SQL use the instant (a non-UTC `now` filters correctly)."""
    if state_url.startswith("postgresql"):  # a session time zone far from UTC: psycopg returns +08:00 values
        shanghai_url = request.getfixturevalue("postgres").create_database("timestamps")
        engine = make_engine(shanghai_url)
        request.addfinalizer(engine.dispose)
        with engine.begin() as conn:
            conn.execute(text(f"ALTER DATABASE {engine.url.database} SET timezone TO 'Asia/Shanghai'"))
        engine.dispose()  # new connections get the database's time zone
        with engine.connect() as conn:
            assert conn.execute(text("SHOW timezone")).scalar() == "Asia/Shanghai"
        store = StateStore(engine)
    local = datetime(2026, 3, 2, 18, 30, 15, 123456, tzinfo=SHANGHAI)  # 10:30:15.123456 UTC
    naive = datetime(2026, 3, 2, 10, 30, 15, 123456)  # taken as UTC
    instant = datetime(2026, 3, 2, 10, 30, 15, 123456, tzinfo=UTC)

    intervention = store.add_intervention({"kind": "block", "item_id": "i1", "operator": "op", "reason": "r",
                                           "created_at": local, "expires_at": local + timedelta(hours=1)})
    assert intervention["created_at"] == instant and intervention["created_at"].tzinfo == UTC
    assert intervention["expires_at"] == instant + timedelta(hours=1) and utc(intervention["expires_at"])
    just_before_expiry = (instant + timedelta(minutes=59)).astimezone(SHANGHAI)
    assert len(store.list_interventions(now=just_before_expiry)) == 1
    assert store.list_interventions(now=(instant + timedelta(minutes=61)).astimezone(SHANGHAI)) == []
    revoked = store.revoke_intervention(intervention["id"], "op", naive)
    assert revoked["revoked_at"] == instant and revoked["revoked_at"].tzinfo == UTC

    complaint = store.add_complaint({"kind": "complaint", "subject_type": "item", "subject_id": None, "user_id": "u",
                                     "text": "t", "status": "received", "created_at": local, "updated_at": naive,
                                     "acknowledge_due": local, "resolve_due": local})
    for key in ("created_at", "updated_at", "acknowledge_due", "resolve_due"):
        assert complaint[key] == instant and complaint[key].tzinfo == UTC, key

    store.add_events([event("e1", ts=local), event("e2", ts=naive + timedelta(seconds=1))])
    found = store.events_since(local)
    assert [(e["event_id"], e["ts"]) for e in found] == [("e1", instant), ("e2", instant + timedelta(seconds=1))]
    assert all(e["ts"].tzinfo == UTC and e["received_at"].tzinfo == UTC for e in found)
    assert [e["event_id"] for e in store.events_since((instant + timedelta(microseconds=1)).astimezone(SHANGHAI))] == ["e2"]

    store.seed_profiles([{"user_id": "p", "age": 20, "created_at": local}], "tz")
    assert store.profiles_created(["p"])["p"].tzinfo == UTC and store.profiles_created(["p"])["p"] == instant

    last, _ = store.add_usage("kid", "2026-03-02", local, 300, 60)
    assert last == instant and last.tzinfo == UTC
    last, used = store.add_usage("kid", "2026-03-02", naive + timedelta(seconds=2.5), 300, 60)  # the gap is across zones
    assert (last, used) == (instant + timedelta(seconds=2.5), 62.5)
    assert store.get_usage("kid", "2026-03-02")[0].tzinfo == UTC


def test_every_public_store_method_has_a_test_here():
    """A method added to StateStore without a test on both backends fails here."""
    import inspect
    import pathlib

    source = pathlib.Path(__file__).read_text()
    public = [name for name, _ in inspect.getmembers(StateStore, inspect.isfunction) if not name.startswith("_")]
    untested = [name for name in public if f".{name}(" not in source]
    assert public and not untested, f"StateStore methods without a test in {__file__}: {untested}"


def test_feedback_and_the_elderly_and_broaden_settings(store):
    store.seed_profiles([{"user_id": "u1", "age": 70, "created_at": T0}], "feedback-test")
    user = store.load_user("u1")
    assert (user.elderly_mode, user.broaden_feed, user.feedback) == (None, False, ())
    store.put_settings("u1", T0, None, None, elderly_mode=False, broaden_feed=True)
    store.put_settings("u1", T0, False, None)  # another setting keeps these
    user = store.load_user("u1")
    assert (user.personalization, user.elderly_mode, user.broaden_feed) == (False, False, True)
    store.put_settings("u1", T0, None, None, clear_elderly_mode=True)
    assert store.load_user("u1").elderly_mode is None and store.load_user("u1").broaden_feed is True

    store.put_feedback("u1", "i1", "not_interested", "r1", "Comedy", T0)
    store.put_feedback("u1", "i2", "fewer_like_this", "r1", "Drama", T0 + timedelta(seconds=1))
    store.put_feedback("u1", "i1", "fewer_like_this", "r2", "Comedy", T0 + timedelta(seconds=2))  # the latest word counts
    feedback = store.load_user("u1").feedback
    assert [(f.item_id, f.kind, f.category, f.request_id) for f in feedback] == [
        ("i2", "fewer_like_this", "Drama", "r1"), ("i1", "fewer_like_this", "Comedy", "r2")]
    assert all(utc(f.created_at) for f in feedback)
    assert store.delete_feedback("u1", "i1") and not store.delete_feedback("u1", "i1")
    assert [f.item_id for f in store.load_user("u1").feedback] == ["i2"]
    assert store.load_user("u2").feedback == ()
