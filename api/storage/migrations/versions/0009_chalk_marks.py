"""chalk_marks, chalk_evidence: suspected sightings of parked vehicles (one pass each) and their evidence

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chalk_marks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.String(128), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("object_kind", sa.String(64), nullable=True),
        sa.Column("camera_id", sa.String(64), nullable=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="SET NULL"), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("plate", sa.String(32), nullable=True),
        sa.Column("plate_confidence", sa.Float(), nullable=True),
        sa.Column("incident_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="SET NULL"), nullable=True),
        sa.Column("confirmed_as", sa.String(128), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("incident_id"),
    )
    op.create_index("ix_chalk_marks_bucket", "chalk_marks", ["category", "bucket", "seen_at"])
    op.create_index("ix_chalk_marks_seen", "chalk_marks", ["seen_at"])
    op.create_index("ix_chalk_marks_status_seen", "chalk_marks", ["status", "seen_at"])
    op.create_index("ix_chalk_marks_plate", "chalk_marks", ["plate"])
    op.create_index("ix_chalk_marks_case", "chalk_marks", ["case_id"])
    op.create_table(
        "chalk_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "mark_id", sa.Integer(), sa.ForeignKey("chalk_marks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("evidence.sha256"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
    )
    op.create_index("ix_chalk_evidence_mark_id", "chalk_evidence", ["mark_id"])
    op.create_index("ix_chalk_evidence_sha256", "chalk_evidence", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_chalk_evidence_sha256", table_name="chalk_evidence")
    op.drop_index("ix_chalk_evidence_mark_id", table_name="chalk_evidence")
    op.drop_table("chalk_evidence")
    op.drop_index("ix_chalk_marks_case", table_name="chalk_marks")
    op.drop_index("ix_chalk_marks_plate", table_name="chalk_marks")
    op.drop_index("ix_chalk_marks_status_seen", table_name="chalk_marks")
    op.drop_index("ix_chalk_marks_seen", table_name="chalk_marks")
    op.drop_index("ix_chalk_marks_bucket", table_name="chalk_marks")
    op.drop_table("chalk_marks")
