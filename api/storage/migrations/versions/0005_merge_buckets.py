"""merge buckets: each case's reach point (merge_lat, merge_lon) and its grid key (merge_bucket),
indexed with category and last_seen, so the merge candidates of an incident are read from a few
buckets instead of every case of its category within the window

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import math

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# api.cases.merge.bucket_of as of this revision (a migration does not follow later code)
BUCKET_DEG = 0.0003
BUCKET_ROW_STRIDE = 2_000_000
BUCKET_COLUMN_OFFSET = 1_000_000
BATCH = 5000


def bucket_of(lat: float, lon: float) -> int:
    return (
        math.floor(lat / BUCKET_DEG) * BUCKET_ROW_STRIDE + math.floor(lon / BUCKET_DEG) + BUCKET_COLUMN_OFFSET
    )


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch_op:
        batch_op.add_column(sa.Column("merge_lat", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("merge_lon", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("merge_bucket", sa.BigInteger(), nullable=True))
    # existing cases reach from where they were first seen (their lat, lon); a following category's
    # case moves its reach point with its next sighting
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer()),
        sa.column("lat", sa.Float()),
        sa.column("lon", sa.Float()),
        sa.column("merge_lat", sa.Float()),
        sa.column("merge_lon", sa.Float()),
        sa.column("merge_bucket", sa.BigInteger()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(cases.c.id, cases.c.lat, cases.c.lon).where(
            cases.c.lat.is_not(None), cases.c.lon.is_not(None)
        )
    ).all()
    update = (
        cases.update()
        .where(cases.c.id == sa.bindparam("case_id"))
        .values(
            merge_lat=sa.bindparam("m_lat"),
            merge_lon=sa.bindparam("m_lon"),
            merge_bucket=sa.bindparam("m_bucket"),
        )
    )
    for start in range(0, len(rows), BATCH):
        conn.execute(
            update,
            [
                {"case_id": r.id, "m_lat": r.lat, "m_lon": r.lon, "m_bucket": bucket_of(r.lat, r.lon)}
                for r in rows[start : start + BATCH]
            ],
        )
    op.create_index("ix_cases_merge_bucket", "cases", ["category", "merge_bucket", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_cases_merge_bucket", table_name="cases")
    with op.batch_alter_table("cases") as batch_op:
        batch_op.drop_column("merge_bucket")
        batch_op.drop_column("merge_lon")
        batch_op.drop_column("merge_lat")
