"""indexes for filtered case lists at 100k+ cases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_cases_merge", table_name="cases")
    op.drop_index("ix_cases_last_seen", table_name="cases")
    op.create_index("ix_cases_category_seen", "cases", ["category", "last_seen", "first_seen"])
    op.create_index("ix_cases_category_status_last_seen", "cases", ["category", "status", "last_seen"])
    op.create_index("ix_cases_seen", "cases", ["last_seen", "first_seen"])


def downgrade() -> None:
    op.drop_index("ix_cases_seen", table_name="cases")
    op.drop_index("ix_cases_category_status_last_seen", table_name="cases")
    op.drop_index("ix_cases_category_seen", table_name="cases")
    op.create_index("ix_cases_last_seen", "cases", ["last_seen"])
    op.create_index("ix_cases_merge", "cases", ["category", "last_seen"])
