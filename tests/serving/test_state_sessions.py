"""The pages' server-side sessions (`web_sessions`, serving/state/sessions.py) on both backends, SQLite
and PostgreSQL (real databases): an id is stored only hashed, a session ends when it expires or is
revoked, an operator's sessions all end together, expired rows are pruned a bounded batch at a time,
two replicas over one database agree, and a row that cannot be read is a logged-out session."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from serving.state import db
from serving.state.db import make_engine
from serving.state.operators import OperatorStore
from serving.state.sessions import PRUNE_BATCH, SessionStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def sessions(state_engine) -> SessionStore:
    with state_engine.begin() as conn:
        conn.execute(db.web_sessions.delete())
        conn.execute(db.operators.delete())
    return SessionStore(state_engine)


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(db.web_sessions))]


def test_a_session_lives_until_it_expires_or_is_revoked(sessions):
    sid = sessions.open("me", "u1", T0, T0 + HOUR)
    found = sessions.lookup("me", sid, T0 + HOUR / 2)
    assert found is not None and (found.subject, found.kind, found.expires_at) == ("u1", "me", T0 + HOUR)
    assert found.expires_at.tzinfo is not None
    assert sessions.lookup("console", sid, T0) is None  # one area's id opens nothing in the other
    assert sessions.lookup("me", sid, T0 + HOUR) is None  # expired
    assert sessions.lookup("me", sid + "x", T0) is None and sessions.lookup("me", "", T0) is None
    assert sessions.revoke(sid, T0) and not sessions.revoke(sid, T0)
    assert sessions.lookup("me", sid, T0) is None


def test_ids_are_random_and_stored_only_as_their_hash(sessions):
    ids = {sessions.open("me", "u1", T0, T0 + HOUR) for _ in range(20)}
    assert len(ids) == 20 and all(len(sid) >= 40 for sid in ids)
    stored = {row["id_hash"] for row in rows(sessions.engine)}
    assert stored == {hashlib.sha256(sid.encode()).hexdigest() for sid in ids}
    assert not stored & ids


def test_revoking_a_subject_ends_its_sessions_of_that_kind_only(sessions):
    olga = [sessions.open("console", "olga", T0, T0 + HOUR) for _ in range(3)]
    olga_me = sessions.open("me", "olga", T0, T0 + HOUR)
    bob = sessions.open("console", "bob", T0, T0 + HOUR)
    assert sessions.revoke_subject("console", "olga", T0) == 3
    assert all(sessions.lookup("console", sid, T0) is None for sid in olga)
    assert sessions.lookup("me", olga_me, T0) is not None and sessions.lookup("console", bob, T0) is not None


def test_disabling_an_operator_or_changing_the_password_revokes_their_console_sessions(sessions):
    operators = OperatorStore(sessions.engine)
    operators.add("olga", "operator", "hash-1", T0)
    operators.add("bob", "approver", "hash-1", T0)
    first, second = (sessions.open("console", "olga", T0, T0 + HOUR) for _ in range(2))
    bobs = sessions.open("console", "bob", T0, T0 + HOUR)
    assert operators.set_password("olga", "hash-2", T0)
    assert sessions.lookup("console", first, T0) is None and sessions.lookup("console", second, T0) is None
    again = sessions.open("console", "olga", T0, T0 + HOUR)
    assert operators.set_password("olga", "hash-3", T0, revoke_sessions=False)  # a rehash at login keeps them
    assert sessions.lookup("console", again, T0) is not None
    assert operators.disable("olga", T0)
    assert sessions.lookup("console", again, T0) is None
    assert sessions.lookup("console", bobs, T0) is not None


def test_expired_rows_are_pruned_a_bounded_batch_at_a_time(sessions):
    for _ in range(PRUNE_BATCH + 5):
        sessions.open("me", "old", T0 - 2 * HOUR, T0 - HOUR)
    assert sessions.prune(T0) == PRUNE_BATCH
    assert sessions.prune(T0) == 5 and sessions.prune(T0) == 0
    live = sessions.open("me", "u1", T0, T0 + HOUR)
    assert [row["subject"] for row in rows(sessions.engine)] == ["u1"]
    assert sessions.lookup("me", live, T0) is not None


def test_opening_a_session_prunes_expired_ones(sessions):
    for _ in range(3):
        sessions.open("me", "old", T0 - 2 * HOUR, T0 - HOUR)
    sessions.open("me", "u1", T0, T0 + HOUR)
    with sessions.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.web_sessions)).scalar_one() == 1


def test_two_replicas_over_one_database_share_sessions(sessions, state_url):
    other = make_engine(state_url)
    try:
        replica = SessionStore(other)
        sid = sessions.open("console", "olga", T0, T0 + HOUR)
        assert replica.lookup("console", sid, T0) is not None  # made on one worker, read on another
        assert replica.revoke(sid, T0)  # logged out through the other worker
        assert sessions.lookup("console", sid, T0) is None
    finally:
        other.dispose()


def test_a_row_that_cannot_be_read_is_no_session(sessions):
    sid = sessions.open("me", "u1", T0, T0 + HOUR)
    with sessions.engine.begin() as conn:  # edited by hand: a kind this release does not know
        conn.execute(text("UPDATE web_sessions SET kind = 'admin'"))
    assert sessions.lookup("me", sid, T0) is None and sessions.lookup("admin", sid, T0) is None
