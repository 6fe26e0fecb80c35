"""jobs.warning, jobs.track_covered: how much of an upload's footage its GPS track placed, shown on the job

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warning", sa.Text(), nullable=True))
        batch.add_column(sa.Column("track_covered", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("track_covered")
        batch.drop_column("warning")
