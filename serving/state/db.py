"""The state database: user settings and tags, served pages, interventions, complaints, events.

SQLite file by default, PostgreSQL through `RECSYS_DATABASE_URL` (same code: SQLAlchemy Core).
All per-user truth lives here, never only in a worker's memory, so a change made through one
worker holds on every worker on the next request (Art. 15).
"""

from __future__ import annotations

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
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

metadata = MetaData()

user_profiles = Table(
    "user_profiles",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("age", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=True),  # account creation (trending rules)
)

user_settings = Table(
    "user_settings",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("personalization", Boolean, nullable=False, default=True),
    Column("minor_mode", Boolean, nullable=True),  # guardian setting; None = not set
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One row per user decision about a tag: deleted (suppressed), added (an interest), not_interested.
user_tags = Table(
    "user_tags",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
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
    Column("created_at", DateTime(timezone=True), nullable=False),
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
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", String(128), nullable=True),
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
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("acknowledge_due", DateTime(timezone=True), nullable=False),
    Column("resolve_due", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("event_id", String(128), primary_key=True),  # client-chosen: a resent batch is not counted twice
    Column("user_id", String(128), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_events_ts", "ts"),
    Index("ix_events_user_item", "user_id", "item_id"),  # a user's seen items; accounts' history (trending)
)

usage = Table(
    "usage",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("day", String(10), primary_key=True),  # local date in the minors time zone
    Column("last_activity", DateTime(timezone=True), nullable=False),
    Column("seconds_used", Float, nullable=False),
)

feature_entries = Table(
    "feature_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("entry", JSON, nullable=False),  # compliance.feature_library.FeatureEntry as JSON
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=True),
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


def make_engine(url: str) -> Engine:
    """Create the engine (and, for SQLite, its folder and WAL mode) and the tables."""
    connect_args = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(f"database_url: cannot create folder {path.parent}: {exc.strerror}") from None
        connect_args = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    try:
        _create(engine)
    except OperationalError:  # another worker created the tables at the same moment
        _create(engine)
    return engine


def _create(engine: Engine) -> None:
    """Tables that are missing, and indexes added to existing tables since they were made."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
