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


def test_upgrading_an_older_release_s_database_keeps_every_reference(tmp_path: Path) -> None:
    """A database an older release wrote (schema 0006) upgraded to head keeps the cases' devices:
    0007 copies the devices table (SQLite's batch migration) and, with foreign keys on, dropping the
    old copy ran cases.device_id's ON DELETE SET NULL; `evidence verify` then reported each patrol
    case as altered ('device_id is None but its custody chain says 2')."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gridpatrol.db'}")
    try:
        migrate(engine, "0006")
        t = {"t": "2026-11-20 08:00:00"}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, name, key_hash, active, created_at) "
                    "VALUES (2, 'van-1', 'h', 1, :t)"
                ),
                t,
            )
            conn.execute(
                text(
                    "INSERT INTO cases (id, number, category, status, grid_cell_id, device_id, first_seen, "
                    "last_seen, sightings_count, recurrence_count, created_at, updated_at) VALUES "
                    "(1, 'GP-2026-000001', 'illegal_parking', 'pending_review', 'C-1', 2, "
                    ":t, :t, 1, 0, :t, :t)"
                ),
                t,
            )
        assert migrate(engine) is True
        with engine.connect() as conn:
            assert conn.execute(text("SELECT device_id FROM cases")).scalar_one() == 2
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1  # on again after it
    finally:
        engine.dispose()


def test_an_in_memory_database_leaves_no_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sqlite://` (in memory, as `sqlite:///:memory:`) takes no file lock: its writes left a
    'None-writer.lock' in the current folder (the database's name read as the text 'None')."""
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite://")
    try:
        assert migrate(engine) is True
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []
