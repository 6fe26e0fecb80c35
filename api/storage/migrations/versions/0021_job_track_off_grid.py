"""jobs.track_off_grid: a done job whose upload's GPS track passed no grid cell while the grid had cells
(api.jobs.coverage.off_grid_warning), so that the footage may be sent again with the right track
(api.jobs.uploads) and the /upload page can say so in the reader's language.

Existing rows: a done job whose warning carries that track's words gets it set; every other job not.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_jobs = sa.table(
    "jobs",
    sa.column("status", sa.String()),
    sa.column("warning", sa.Text()),
    sa.column("track_off_grid", sa.Boolean()),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("track_off_grid", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        _jobs.update()
        .where(_jobs.c.status == "done", _jobs.c.warning.like("%passes through no grid cell%"))
        .values(track_off_grid=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("track_off_grid")
