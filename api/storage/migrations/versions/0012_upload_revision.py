"""uploads.revision: how many times a resend corrected what an upload's job runs with (start time, camera,
GPS track); incident ids of a corrected run differ from the earlier runs' (api.jobs.queue.upload_id_salt)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("revision")
