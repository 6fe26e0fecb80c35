"""custody ledger: one hash chain over every case's custody entries, and its head row

Existing entries take their ledger places in the order they were written (by id), so an honest
database upgraded from 0005 verifies as it did before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
_BATCH = 5000


def _ledger_digest(ledger_prev: str, ledger_seq: int, entry_hash: str) -> str:
    """Frozen copy of api.cases.custody.ledger_digest (migrations import nothing of the service)."""
    return hashlib.sha256(f"{ledger_prev}\n{ledger_seq}\n{entry_hash}".encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("custody_entries") as batch:
        batch.add_column(sa.Column("ledger_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("ledger_prev", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("ledger_hash", sa.String(length=64), nullable=True))
    head = op.create_table(
        "custody_ledger_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    entries = sa.table(
        "custody_entries",
        sa.column("id", sa.Integer()),
        sa.column("entry_hash", sa.String()),
        sa.column("at", sa.DateTime()),
        sa.column("ledger_seq", sa.BigInteger()),
        sa.column("ledger_prev", sa.String()),
        sa.column("ledger_hash", sa.String()),
    )
    rows = conn.execute(
        sa.select(entries.c.id, entries.c.entry_hash, entries.c.at).order_by(entries.c.id)
    ).all()
    fill = (
        sa.update(entries)
        .where(entries.c.id == sa.bindparam("entry_id"))
        .values(
            ledger_seq=sa.bindparam("l_seq"),
            ledger_prev=sa.bindparam("l_prev"),
            ledger_hash=sa.bindparam("l_hash"),
        )
    )
    prev, last_at, batch_rows = GENESIS, None, []
    for seq, row in enumerate(rows, start=1):
        digest = _ledger_digest(prev, seq, row.entry_hash)
        batch_rows.append({"entry_id": row.id, "l_seq": seq, "l_prev": prev, "l_hash": digest})
        prev, last_at = digest, row.at
        if len(batch_rows) >= _BATCH:
            conn.execute(fill, batch_rows)
            batch_rows = []
    if batch_rows:
        conn.execute(fill, batch_rows)
    op.bulk_insert(head, [{"id": 1, "seq": len(rows), "hash": prev, "at": last_at}])
    with op.batch_alter_table("custody_entries") as batch:
        batch.alter_column("ledger_seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("ledger_prev", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("ledger_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_custody_ledger_seq", ["ledger_seq"])


def downgrade() -> None:
    op.drop_table("custody_ledger_head")
    with op.batch_alter_table("custody_entries") as batch:
        batch.drop_constraint("uq_custody_ledger_seq", type_="unique")
        batch.drop_column("ledger_hash")
        batch.drop_column("ledger_prev")
        batch.drop_column("ledger_seq")
