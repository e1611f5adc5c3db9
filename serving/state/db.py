"""The state database: user settings and tags, served pages, interventions, complaints, events.

SQLite file by default, PostgreSQL (psycopg 3: `postgresql+psycopg://`) through
`RECSYS_DATABASE_URL`; same code, SQLAlchemy Core. All per-user truth lives here, never only in a
worker's memory, so a change made through one worker holds on every worker on the next request
(Art. 17 (draft 15)).

The tables below are what the code reads and writes; the schema itself is made and changed by the
Alembic migrations in `serving/state/migrations/` (`make_engine` applies them at startup, `recsys
db upgrade` on demand). A change here needs a migration (`recsys db revision --autogenerate -m
...`); tests/serving/test_state_migrations.py fails when the two disagree.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    Stored as `TIMESTAMP WITH TIME ZONE` on PostgreSQL and as SQLite's text `DATETIME` (which has
    no zone: always UTC there). Values are converted to UTC when written (a naive value is taken
    as UTC) and come back aware, in UTC, whatever the backend or the session's time zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if not isinstance(value, datetime):
            return value
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if not isinstance(value, datetime):
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

user_profiles = Table(
    "user_profiles",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("age", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=True),  # account creation (trending rules)
)

user_settings = Table(
    "user_settings",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("personalization", Boolean, nullable=False, default=True),
    Column("minor_mode", Boolean, nullable=True),  # guardian setting; None = not set
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("elderly_mode", Boolean, nullable=True),  # Art. 19 elderly mode; None = decided by the profile age
    Column("broaden_feed", Boolean, nullable=True),  # "broaden my feed" (Art. 17 (draft 15)); None = off
)

# One row per user decision about a tag: deleted (suppressed), added (an interest), not_interested.
user_tags = Table(
    "user_tags",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# A user's negative feedback on an item of a served list (Art. 17 (draft 15)): "not_interested" (this item)
# or "fewer_like_this" (this item, and its category down-weighted for a configured period).
user_feedback = Table(
    "user_feedback",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),  # the served list the feedback was given on
    Column("category", String(128), nullable=True),  # the item's primary category as served
    Column("created_at", UTCDateTime(), nullable=False),
)

served_pages = Table(
    "served_pages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("user_id", String(128), nullable=False),
    Column("surface", String(32), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("page", Integer, nullable=False),
    Column("items", JSON, nullable=False),  # item indices in the serving catalog
    Column("categories", JSON, nullable=False),  # their primary category codes, in order
    Column("contents", JSON, nullable=False),  # their content codes
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_served_session", "user_id", "surface", "session_id", "page"),
    Index("ix_served_recent", "user_id", "id"),
)

interventions = Table(
    "interventions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # pin | block | boost
    Column("surface", String(32), nullable=True),  # None = every surface
    Column("item_id", String(128), nullable=True),
    Column("category", String(128), nullable=True),
    Column("position", Integer, nullable=True),
    Column("factor", Float, nullable=True),
    Column("operator", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("revoked_by", String(128), nullable=True),
    # two-person rule (compliance/oversight.py): pending until another account approves
    Column("status", String(16), nullable=False, server_default="active"),
    Column("decided_by", String(128), nullable=True),  # the approver (or rejecter)
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decision_reason", Text, nullable=True),
)

# Named operator accounts (serving/operators.py): the console's and the admin API's people.
operators = Table(
    "operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # operator | approver | auditor
    Column("password_hash", Text, nullable=False),  # argon2id (argon2-cffi)
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime(), nullable=True),
)

# The pages' server-side sessions (serving/web/session.py): the cookie carries only a signed random
# id; its SHA-256 is the key here, so a leaked table opens no session. Revoked at logout, and every
# console session of an operator when the account is disabled or its password changes.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # hex SHA-256 of the id in the cookie
    Column("kind", String(16), nullable=False),  # me | console
    Column("subject", String(128), nullable=False),  # the /me user id or the operator's name
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Index("ix_web_sessions_subject", "kind", "subject"),  # revoke an operator's sessions
    Index("ix_web_sessions_expires", "expires_at"),  # prune expired rows
)

complaints = Table(
    "complaints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("subject_id", String(256), nullable=True),
    Column("user_id", String(128), nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolution", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("acknowledge_due", UTCDateTime(), nullable=False),
    Column("resolve_due", UTCDateTime(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("event_id", String(128), primary_key=True),  # client-chosen: a resent batch is not counted twice
    Column("user_id", String(128), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Index("ix_events_ts", "ts"),
    Index("ix_events_user_item", "user_id", "item_id"),  # accounts' history (trending)
    Index("ix_events_user_ts", "user_id", "ts"),  # a user's latest events (a list reads at most MAX_EVENTS_READ)
)

# Every item each user has had an event for (any type, impressions included): what a personalized
# list excludes as seen (issue 16), one row per (user, item) however many events, so a heavy user's
# items seen long ago stay seen while the events a list reads are bounded (`MAX_EVENTS_READ`).
# Derived from `events`: written in the same transaction as each event insert
# (`StateStore.add_events`), backfilled from `events` by migration 0007. A user's erasure of their
# history (`StateStore.erase_history`) deletes these rows with their events in one transaction; the
# export (`StateStore.history`) takes their events and counts these rows (they say nothing more).
seen_items = Table(
    "seen_items",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("item_id", String(128), primary_key=True),
)

# One row per user who erased their interaction history (PIPL Art. 47; `DELETE
# /v1/users/{user_id}/history`), written in the erasure's transaction: the time of their latest
# erasure. The request path reads it with the user (`StateStore.list_state`) and treats them as
# having no training-time history from then on (served/path.py `make_query`).
history_erasures = Table(
    "history_erasures",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("erased_at", UTCDateTime(), nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("day", String(10), primary_key=True),  # local date in the minors time zone
    Column("last_activity", UTCDateTime(), nullable=False),
    Column("seconds_used", Float, nullable=False),
    Column("continuous_since", UTCDateTime(), nullable=True),  # start of the current continuous use (rest reminder)
)

# One row per minor with a guardian: who the guardian is (linked by an operator) and what they set
# (`compliance.minors.GuardianControls`, validated on write and on read).
guardians = Table(
    "guardians",
    metadata,
    Column("minor_id", String(128), primary_key=True),
    Column("guardian_id", String(128), nullable=False),
    Column("controls", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
    Index("ix_guardians_guardian", "guardian_id"),
)

feature_entries = Table(
    "feature_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("entry", JSON, nullable=False),  # compliance.feature_library.FeatureEntry as JSON
    Column("created_at", UTCDateTime(), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=True),
    Column("removed_by", String(128), nullable=True),
)

# Bumped on every change to interventions or the feature library: each worker compares it on
# every request and reloads when it moved, so admin changes hold from the next request.
state_versions = Table(
    "state_versions",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)


def normalize_url(url: str | URL) -> URL:
    """The URL with its driver made explicit: `postgresql://` and `postgres://` mean psycopg 3
    (SQLAlchemy would otherwise look for psycopg2, which is not a dependency)."""
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as it may be printed: the password masked."""
    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: say what was given
        return str(url)


SQLITE_BUSY_TIMEOUT_S = 30  # how long a SQLite connection waits for another one's lock


def _switch_to_wal(cursor, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """Put the database in WAL mode (kept in the file: a no-op once done). Switching a database that
    is still in rollback-journal mode (new, or made by an old release) fails at once with "database
    is locked" while another connection holds its write lock: SQLite does not wait in its busy
    handler there. Workers starting together on such a database meet exactly that, so the switch is
    retried until the writer is done, for as long as any other lock is waited for."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def make_engine(url: str, *, upgrade: bool = True) -> Engine:
    """Create the engine (and, for SQLite, its folder and WAL mode) and bring the schema to the
    latest migration (`serving.state.migrate.upgrade`: safe when several workers start at once;
    a database made by a release before migrations is recognised and adopted)."""
    parsed = normalize_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    connect_args = {}
    if sqlite and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(f"database_url: cannot create folder {path.parent}: {exc.strerror}") from None
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=not sqlite)
    if sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    if upgrade:
        from serving.state.migrate import upgrade as upgrade_schema

        try:
            upgrade_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine
