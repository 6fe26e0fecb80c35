"""An index of upload_coverage by (cell_id, entered_at): GET /api/coverage numbers each cell's passes in a
window, latest first, and lists only the latest few (api.jobs.coverage); with the index the database reads a
cell's passes in that order instead of sorting them all.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_upload_coverage_cell_entered", "upload_coverage", ["cell_id", "entered_at"])


def downgrade() -> None:
    op.drop_index("ix_upload_coverage_cell_entered", table_name="upload_coverage")
