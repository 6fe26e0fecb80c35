"""webhook_deliveries.last_attempt_at: when a delivery's last attempt ended, success or failure, which
admins chasing a failing receiver need (created_at is when its event was queued). A delivery delivered
before this has it from delivered_at (its last attempt was the one that delivered it, stamped with that
time); any other delivery tried before this has none, shown as unknown.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_deliveries = sa.table(
    "webhook_deliveries",
    sa.column("status", sa.String()),
    sa.column("delivered_at", sa.DateTime()),
    sa.column("last_attempt_at", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(), nullable=True))
    op.get_bind().execute(
        _deliveries.update()
        .where(_deliveries.c.status == "delivered", _deliveries.c.delivered_at.is_not(None))
        .values(last_attempt_at=_deliveries.c.delivered_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("last_attempt_at")
