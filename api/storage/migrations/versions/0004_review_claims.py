"""review claims: which operator holds which pending case in the review queue, until when

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_claims",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=96), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index(op.f("ix_review_claims_holder"), "review_claims", ["holder"])


def downgrade() -> None:
    op.drop_index(op.f("ix_review_claims_holder"), table_name="review_claims")
    op.drop_table("review_claims")
