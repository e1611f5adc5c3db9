"""An index of each user's events by time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A list reads the user's latest events only (`StateStore.list_state`: `MAX_EVENTS_READ`, the
sequential source's history and the items the user has seen), newest first: with this index that
is a range scan of at most that many rows, whatever the user's total (without it, every list of a
user who posted 200,000 events scanned them all: 2.2 s per list on SQLite).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts"])


def downgrade() -> None:
    op.drop_index("ix_events_user_ts", table_name="events")
