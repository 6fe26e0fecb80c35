"""cameras.clock_offset_s: how far the clock of the runner analysing a camera is from the case service's
(seconds, the runner's minus the service's: negative is behind; null: not known, as from an older runner),
as its state reports say; shown and flagged with the camera (api.cameras.registry.clock_warning).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cameras") as batch:
        batch.add_column(sa.Column("clock_offset_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cameras") as batch:
        batch.drop_column("clock_offset_s")
