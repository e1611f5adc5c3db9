"""The seen set: every item each user has had an event for, one row per (user, item).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

A personalized list excludes every item the user interacted with (issue 16), but reads only their
latest `MAX_EVENTS_READ` events (0006): a heavy user's items seen only in older events came back.
`seen_items` holds each (user, item) once, written with every event insert (`StateStore.add_events`);
this migration fills it from the events already stored.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_items",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
    )
    events = sa.table("events", sa.column("user_id", sa.String), sa.column("item_id", sa.String))
    seen = sa.table("seen_items", sa.column("user_id", sa.String), sa.column("item_id", sa.String))
    op.execute(seen.insert().from_select(["user_id", "item_id"],
                                         sa.select(events.c.user_id, events.c.item_id).distinct()))


def downgrade() -> None:
    op.drop_table("seen_items")
