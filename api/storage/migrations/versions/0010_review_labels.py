"""review_labels: operator decisions kept with the frame they were made on (the review -> retrain loop)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "sighting_id", sa.Integer(), sa.ForeignKey("sightings.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("camera_id", sa.String(64), nullable=True),
        sa.Column("frame_sha256", sa.String(64), nullable=True),
        sa.Column("frame_index", sa.Integer(), nullable=True),
        sa.Column("frame_ts", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(96), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_review_labels_case_id", "review_labels", ["case_id"])
    op.create_index("ix_review_labels_sighting_id", "review_labels", ["sighting_id"])
    op.create_index("ix_review_labels_at", "review_labels", ["at"])


def downgrade() -> None:
    op.drop_index("ix_review_labels_at", table_name="review_labels")
    op.drop_index("ix_review_labels_sighting_id", table_name="review_labels")
    op.drop_index("ix_review_labels_case_id", table_name="review_labels")
    op.drop_table("review_labels")
