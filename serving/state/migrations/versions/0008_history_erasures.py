"""The erasure marker of each user who erased their interaction history (PIPL Art. 47).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

`DELETE /v1/users/{user_id}/history` deletes the user's `events` and `seen_items` rows and records
here, in the same transaction, when it did: from then on the request path treats the user as having
no training-time history (the model's stored history, vector, tags and sequence were made from the
erased data), so their lists are never again built from it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_erasures",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("history_erasures")
