"""Alembic environment: runs on the engine handed over by api.storage.db.migrate (or the configured URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from api.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        # SQLite: a batch migration copies a table and drops the old one, and with foreign keys on that
        # drop runs every reference's ON DELETE: an upgrade set each case's and sighting's device_id
        # to NULL (0007 copies devices), which verify then reports as altered custody. Off for the
        # migration (a pragma that holds only outside a transaction), on again for the pooled connection.
        raw = connection.connection.dbapi_connection
        if sqlite and raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
