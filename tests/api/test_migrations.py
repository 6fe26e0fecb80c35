"""The schema comes from the migrations, and they match the ORM models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from api.cli.main import main
from api.storage.db import SchemaTooNew, _alembic_config, current_revision, make_engine, migrate
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


def test_a_database_from_a_newer_release_is_refused_naming_both_revisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The software rolled back over a database a newer release upgraded: every command (and serve)
    ends with one line naming the database's revision and this release's, and the file is left as it
    was; before, each ended with alembic's 'Can't locate revision' traceback after logging that it
    was 'migrating database ... from 0013 to head'."""
    db = tmp_path / "gridpatrol.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_release'"))
        with pytest.raises(SchemaTooNew, match="revision 0099_from_a_newer_release, which this gridpatrol"):
            migrate(engine)
    finally:
        engine.dispose()
    before = db.read_bytes()
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("GRIDPATROL_DATABASE_URL", raising=False)
    head = ScriptDirectory.from_config(_alembic_config(make_engine("sqlite://"))).get_current_head()
    for argv in (["db", "upgrade"], ["user", "list"], ["evidence", "verify"]):
        assert main(["-q", *argv]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"is at revision 0099_from_a_newer_release, which this gridpatrol (schema {head})" in err
    assert db.read_bytes() == before
