"""The schema comes from the migrations, and they match the ORM models exactly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from api.storage.db import _alembic_config, current_revision, make_engine, migrate
from api.storage.models import Base


def test_migrations_match_models_and_go_both_ways(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        assert current_revision(engine) == "0004"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        command.downgrade(_alembic_config(engine), "base")
        assert current_revision(engine) is None
        migrate(engine)
        assert current_revision(engine) == "0004"
    finally:
        engine.dispose()
