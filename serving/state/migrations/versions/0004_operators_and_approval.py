"""Named operator accounts, and the two-person rule's columns on interventions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`operators`: one row per named account (role operator | approver | auditor, argon2 password hash).
`interventions` gains `status` (active | pending | rejected; existing rows stay active), and who
decided a pending proposal, when and why.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("interventions") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("decided_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decision_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interventions") as batch:
        for name in ("decision_reason", "decided_at", "decided_by", "status"):
            batch.drop_column(name)
    op.drop_table("operators")
