"""upload_sessions: footage sent in chunks that can resume after a dropped connection
(api.jobs.resumable); each row is one sender's unfinished file, its bytes in the uploads folder.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 02:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(96), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("camera_id", sa.String(64), nullable=True),
        sa.Column("start_time", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("touched_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_upload_sessions_owner", "upload_sessions", ["owner"])
    op.create_index("ix_upload_sessions_touched_at", "upload_sessions", ["touched_at"])


def downgrade() -> None:
    op.drop_index("ix_upload_sessions_touched_at", "upload_sessions")
    op.drop_index("ix_upload_sessions_owner", "upload_sessions")
    op.drop_table("upload_sessions")
