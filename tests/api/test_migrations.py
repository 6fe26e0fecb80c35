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
        assert current_revision(engine) == "0012"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        command.downgrade(_alembic_config(engine), "base")
        assert current_revision(engine) is None
        migrate(engine)
        assert current_revision(engine) == "0012"
    finally:
        engine.dispose()


def test_migrating_is_logged_only_when_a_migration_runs(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    engine = make_engine(f"sqlite:///{tmp_path / 'gridpatrol.db'}")
    try:
        with caplog.at_level(logging.INFO, logger="api.storage.db"):
            assert migrate(engine) is True
            assert any("migrating database" in r.getMessage() for r in caplog.records)
            caplog.clear()
            assert migrate(engine) is False  # every command calls it on start: nothing to do, nothing said
            assert not [r for r in caplog.records if r.levelno >= logging.INFO]
        assert current_revision(engine) is not None
    finally:
        engine.dispose()
