"""upload_coverage: the grid cells a patrol's upload passed through, when, and how far it drove in each

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_coverage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("upload_id", sa.Integer(), sa.ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cell_id", sa.String(64), nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("left_at", sa.DateTime(), nullable=False),
        sa.Column("metres", sa.Float(), nullable=False),
    )
    op.create_index("ix_upload_coverage_upload_id", "upload_coverage", ["upload_id"])
    op.create_index("ix_upload_coverage_entered_at", "upload_coverage", ["entered_at"])


def downgrade() -> None:
    op.drop_index("ix_upload_coverage_entered_at", table_name="upload_coverage")
    op.drop_index("ix_upload_coverage_upload_id", table_name="upload_coverage")
    op.drop_table("upload_coverage")
