"""User feedback on served items and two user settings (Provisions Art. 17 (draft 15), Art. 19).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

- `user_feedback`: a user's "not interested in this item" / "fewer like this" on an item of a
  served list (one row per user and item; the request id of the list it was given on, the item's
  primary category as served, when). Read on every request: the item and its content duplicates
  leave the user's lists, a "fewer like this" category is down-weighted for the configured period.
- `user_settings.elderly_mode` (None: decided by the profile age) and `user_settings.broaden_feed`
  (None: off), the elderly-mode and "broaden my feed" options.

Frozen like every migration: plain SQLAlchemy types only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_feedback",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("user_settings") as batch:
        batch.add_column(sa.Column("elderly_mode", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("broaden_feed", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_settings") as batch:
        batch.drop_column("broaden_feed")
        batch.drop_column("elderly_mode")
    op.drop_table("user_feedback")
