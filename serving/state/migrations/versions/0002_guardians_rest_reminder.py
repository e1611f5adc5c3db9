"""Minors, 2024 guideline: guardian controls and the rest reminder.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

`guardians` holds each minor's guardian (linked by an operator) and the controls they set;
`usage.continuous_since` is the start of the current continuous use (NULL on rows written before:
the next activity starts a run). Frozen: plain SQLAlchemy types only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("continuous_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "guardians",
        sa.Column("minor_id", sa.String(128), primary_key=True),
        sa.Column("guardian_id", sa.String(128), nullable=False),
        sa.Column("controls", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_guardians_guardian", "guardians", ["guardian_id"])


def downgrade() -> None:
    op.drop_index("ix_guardians_guardian", table_name="guardians")
    op.drop_table("guardians")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("continuous_since")
