"""One active webhook per URL, held by the database: a partial unique index on webhooks.url among the
active ones. api.cases.webhooks refused a URL an active webhook has only by a query, so two requests
registering (or activating) the same URL at once could both pass it, and every event was then sent
to that URL twice.

A database where that happened already keeps its oldest active webhook of each such URL; the newer
ones are deactivated as deactivate_webhook does it (their pending deliveries failed, never sent; the
rows and their delivery log stay), each named in the log (a WARNING) with the events it had that
the one kept has not, so that an admin can see what to register again. Downgrading drops the index;
the webhooks deactivated stay inactive.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 05:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

log = logging.getLogger("api.storage.migrations")

INDEX = "ux_webhooks_active_url"
# frozen copy of api.cases.webhooks.DEACTIVATED_ERROR (migrations import nothing of the service)
_DEACTIVATED_ERROR = "not sent: the webhook was deactivated"

_webhooks = sa.table(
    "webhooks",
    sa.column("id", sa.Integer()),
    sa.column("url", sa.String()),
    sa.column("events", sa.String()),
    sa.column("active", sa.Boolean()),
)
_deliveries = sa.table(
    "webhook_deliveries",
    sa.column("webhook_id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("last_error", sa.Text()),
)


def deactivate_duplicates(conn: Connection) -> list[int]:
    """Deactivate each active webhook that an older (lower id) active webhook's URL has; returns
    their ids, each logged with the webhook kept."""
    rows = conn.execute(
        sa.select(_webhooks.c.id, _webhooks.c.url, _webhooks.c.events)
        .where(_webhooks.c.active.is_(True))
        .order_by(_webhooks.c.id)
    ).all()
    kept: dict[str, tuple[int, set[str]]] = {}
    newer: list[int] = []
    for hook_id, url, events in rows:
        if url not in kept:
            kept[url] = (hook_id, set(events.split(",")))
            continue
        older, older_events = kept[url]
        missed = [e for e in events.split(",") if e not in older_events]
        log.warning(
            "webhook %s deactivated: webhook %s, older, is active with the same URL, and a URL has one "
            "active webhook from now on (each event is sent to it once); its pending deliveries are "
            "failed, its log stays%s",
            hook_id,
            older,
            f"; events it had that webhook {older} has not: {','.join(missed)}" if missed else "",
        )
        newer.append(hook_id)
    if newer:
        conn.execute(sa.update(_webhooks).where(_webhooks.c.id.in_(newer)).values(active=False))
        conn.execute(
            sa.update(_deliveries)
            .where(_deliveries.c.webhook_id.in_(newer), _deliveries.c.status == "pending")
            .values(status="failed", last_error=_DEACTIVATED_ERROR)
        )
    return newer


def upgrade() -> None:
    deactivate_duplicates(op.get_bind())
    op.create_index(
        INDEX,
        "webhooks",
        ["url"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="webhooks")
