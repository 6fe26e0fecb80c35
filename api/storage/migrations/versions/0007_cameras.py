"""cameras: the live cameras the service manages (stream URL, position, zones, hours, team) with
their live state as their runner reports it; devices.runner marks a device key that runs cameras

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("runner", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("stream_url", sa.Text(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("grid_cell_id", sa.String(64), nullable=True),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("zones", sa.Text(), nullable=False),
        sa.Column("active_hours", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("runner", sa.String(64), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("last_frame_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(), nullable=True),
        sa.Column("runner_state", sa.Text(), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("online_since", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cameras")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("runner")
