"""The initial schema: the tables and indexes the release before migrations made with create_all.

Revision ID: 0001
Revises:
Create Date: 2026-05-21

Migrations are frozen: they use plain SQLAlchemy types, never the application's (serving/state/db.py
changes; a migration must keep creating what it created).

`create_schema(if_not_exists=True)` is also how `serving.state.migrate` adopts a database made by
a release before migrations (tables from `metadata.create_all`, no alembic_version): it adds what
that release might lack (`ix_events_user_item` came in its last version) and keeps everything else,
then the database is stamped at this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("user_profiles", "user_settings", "user_tags", "served_pages", "interventions", "complaints", "events",
          "usage", "feature_entries", "state_versions")


def upgrade() -> None:
    create_schema(if_not_exists=False)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)


def create_schema(if_not_exists: bool) -> None:
    def table(name: str, *columns) -> None:
        op.create_table(name, *columns, if_not_exists=if_not_exists)

    def index(name: str, table_name: str, columns: list[str]) -> None:
        op.create_index(name, table_name, columns, if_not_exists=if_not_exists)

    def utc(name: str, nullable: bool) -> sa.Column:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)

    table(
        "user_profiles",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("age", sa.Integer, nullable=True),
        utc("created_at", nullable=True),
    )
    table(
        "user_settings",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("personalization", sa.Boolean, nullable=False),
        sa.Column("minor_mode", sa.Boolean, nullable=True),
        utc("updated_at", nullable=False),
    )
    table(
        "user_tags",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        utc("updated_at", nullable=False),
    )
    table(
        "served_pages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("surface", sa.String(32), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("page", sa.Integer, nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("contents", sa.JSON, nullable=False),
        utc("created_at", nullable=False),
    )
    index("ix_served_session", "served_pages", ["user_id", "surface", "session_id", "page"])
    index("ix_served_recent", "served_pages", ["user_id", "id"])
    table(
        "interventions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("surface", sa.String(32), nullable=True),
        sa.Column("item_id", sa.String(128), nullable=True),
        sa.Column("category", sa.String(128), nullable=True),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("factor", sa.Float, nullable=True),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        utc("created_at", nullable=False),
        utc("expires_at", nullable=True),
        utc("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
    )
    table(
        "complaints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.Text, nullable=True),
        utc("created_at", nullable=False),
        utc("updated_at", nullable=False),
        utc("acknowledge_due", nullable=False),
        utc("resolve_due", nullable=False),
    )
    table(
        "events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        utc("ts", nullable=False),
        utc("received_at", nullable=False),
    )
    index("ix_events_ts", "events", ["ts"])
    index("ix_events_user_item", "events", ["user_id", "item_id"])
    table(
        "usage",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        utc("last_activity", nullable=False),
        sa.Column("seconds_used", sa.Float, nullable=False),
    )
    table(
        "feature_entries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("entry", sa.JSON, nullable=False),
        utc("created_at", nullable=False),
        utc("removed_at", nullable=True),
        sa.Column("removed_by", sa.String(128), nullable=True),
    )
    table(
        "state_versions",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
