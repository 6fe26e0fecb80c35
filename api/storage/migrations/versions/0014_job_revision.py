"""jobs.revision: the upload revision each job was queued for (api.jobs.uploads), so that a job is an
earlier run of its upload only when its revision is lower than the upload's now
(api.cases.ingest.earlier_runs_cases, api.cases.chalking.superseded_runs). Before, any job with a later
job of the same upload was one once the upload had been corrected (its revision over 0): a corrected
run that failed too, when a plain retry of it followed.

Existing rows: an upload's latest job gets the upload's revision (it is the current run); its older jobs
get one less (at least 0), which keeps them earlier runs exactly where the rule before this migration
made them (an upload at revision 0 has none). Which older job was a corrected run that failed, and which
a plain retry of it, no record says: those keep the old reading.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_uploads = sa.table("uploads", sa.column("id", sa.Integer()), sa.column("revision", sa.Integer()))
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("upload_id", sa.Integer()),
    sa.column("revision", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    upload_revision = (
        sa.select(_uploads.c.revision).where(_uploads.c.id == _jobs.c.upload_id).scalar_subquery()
    )
    each = _jobs.alias("each_job")  # no correlation with the table updated
    latest = sa.select(sa.func.max(each.c.id)).group_by(each.c.upload_id)
    conn = op.get_bind()
    conn.execute(_jobs.update().where(_jobs.c.id.in_(latest)).values(revision=upload_revision))
    conn.execute(
        _jobs.update()
        .where(_jobs.c.id.not_in(latest))
        .values(revision=sa.case((upload_revision > 0, upload_revision - 1), else_=0))
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("revision")
