"""The schema comes from the migrations, and they match the ORM models exactly."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.cases import audit
from api.cli.main import main
from api.http.app import create_app
from api.storage.db import SchemaTooNew, _alembic_config, current_revision, make_engine, migrate
from api.storage.models import Base
from tests.api.api_testkit import (
    LiveServer,
    _Server,
    fake_pipeline,
    footage,
    import_demo_grid,
    incident_json,
    make_settings,
    post_incident,
    seed_people,
    wait_job,
)


def test_migrations_match_models_and_go_both_ways(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate(engine)
        assert current_revision(engine) == "0021"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        command.downgrade(_alembic_config(engine), "base")
        assert current_revision(engine) is None
        migrate(engine)
        assert current_revision(engine) == "0021"
    finally:
        engine.dispose()


def test_each_test_s_fresh_database_is_the_migrated_schema_with_nothing_in_it(db_url: str) -> None:
    """The other tests' databases are copies of one migrated once a session (tests/api/conftest.py: a
    SQLite file copied, a PostgreSQL schema replayed from pg_dump under a new name): each is what the
    migrations make, at the latest revision, and holds only the rows the migrations write."""
    engine = make_engine(db_url)
    try:
        assert migrate(engine) is False
        assert current_revision(engine) == "0021"
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert conn.execute(text("SELECT count(*) FROM cases")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM custody_ledger_head")).scalar_one() == 1
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


def test_each_existing_job_gets_the_revision_its_upload_ran_at(tmp_path: Path) -> None:
    """0014 adds jobs.revision: an upload's latest job gets the upload's revision, its older jobs one
    less (at least 0), so that they are earlier runs where the rule before made them (any job with a
    later one, once the upload's revision was over 0)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gridpatrol.db'}")
    try:
        migrate(engine, "0013")
        t = {"t": "2026-11-20 08:00:00"}
        with engine.begin() as conn:
            for upload_id, revision, jobs in ((1, 0, (1, 2)), (2, 1, (3, 4)), (3, 2, (5, 6, 7))):
                conn.execute(
                    text(
                        "INSERT INTO uploads (id, sha256, size, media_type, path, uploaded_by, created_at, "
                        "revision) VALUES (:id, :sha, 1, 'video/mp4', 'x.mp4', 'd', :t, :revision)"
                    ),
                    {"id": upload_id, "sha": str(upload_id) * 64, "revision": revision, **t},
                )
                for job_id in jobs:
                    conn.execute(
                        text(
                            "INSERT INTO jobs (id, upload_id, status, progress, attempts, incidents, "
                            "created_at) VALUES (:id, :upload_id, 'failed', 0, 1, 0, :t)"
                        ),
                        {"id": job_id, "upload_id": upload_id, **t},
                    )
        assert migrate(engine) is True
        with engine.connect() as conn:
            revisions = {i: r for i, r in conn.execute(text("SELECT id, revision FROM jobs ORDER BY id"))}
        assert revisions == {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 2}
    finally:
        engine.dispose()


def test_a_done_job_whose_warning_told_an_off_grid_track_is_marked_so(tmp_path: Path) -> None:
    """0021 adds jobs.track_off_grid: a done job whose warning says its track passed no grid cell gets
    it set (its footage may then be sent again with the right track); any other job does not."""
    engine = make_engine(f"sqlite:///{tmp_path / 'gridpatrol.db'}")
    try:
        migrate(engine, "0019")
        off = "GPS track 'sh.gpx' passes through no grid cell, so the incidents it placed are filed ..."
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO uploads (id, sha256, size, media_type, path, uploaded_by, created_at, "
                    "revision) VALUES (1, :sha, 1, 'video/mp4', 'x.mp4', 'd', '2026-11-20 08:00:00', 0)"
                ),
                {"sha": "1" * 64},
            )
            for job_id, status, warning in ((1, "done", off), (2, "done", "placed few"), (3, "done", None)):
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, upload_id, status, warning, progress, attempts, incidents, "
                        "created_at) VALUES (:id, 1, :status, :warning, 1, 1, 0, '2026-11-20 08:00:00')"
                    ),
                    {"id": job_id, "status": status, "warning": warning},
                )
        assert migrate(engine) is True
        with engine.connect() as conn:
            marked = dict(conn.execute(text("SELECT id, track_off_grid FROM jobs ORDER BY id")).all())
        assert marked == {1: 1, 2: 0, 3: 0}
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


def _old_release_s_0007(engine: Engine) -> None:
    """Upgrade a 0006 database to 0007 as releases before the fix did: foreign keys on, so the copy of
    the devices table (SQLite's batch migration) ran each reference's ON DELETE SET NULL."""
    module = ScriptDirectory.from_config(_alembic_config(engine)).get_revision("0007").module
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        with Operations.context(MigrationContext.configure(conn, opts={"render_as_batch": True})):
            module.upgrade()
        conn.execute(text("UPDATE alembic_version SET version_num = '0007'"))
        conn.commit()


_DEVICE_IDS = (
    "SELECT 'case', id, device_id FROM cases UNION ALL SELECT 'sighting', id, device_id FROM sightings "
    "UNION ALL SELECT 'upload', id, device_id FROM uploads ORDER BY 1, 2"
)


def test_device_references_an_earlier_upgrade_lost_are_restored_from_the_records(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A site that upgraded through 0007 before migrations ran with foreign keys off has every case's,
    sighting's and upload's device_id NULL, and `evidence verify` reports its patrol cases as altered;
    the next upgrade (0013) sets each back from the record that names it (a case's first custody entry,
    a sighting's digest, who uploaded), says how many, and a NULL no record decides stays NULL."""
    settings = make_settings(tmp_path, sqlite_url, worker_poll_s=0.05)
    app = create_app(
        settings, run_worker=True, run_webhooks=False, pipeline=fake_pipeline(2), config_loader=lambda: None
    )
    import_demo_grid(app.state.services)
    tokens = seed_people(app.state.services)
    with _Server(app) as url:
        server = LiveServer(url, app, app.state.services, tokens)
        with server.client("device") as device:
            for n, (when, position) in enumerate(
                [("09:00", (30.2741, 120.1551)), ("09:30", (30.2741, 120.1551)), ("09:00", (30.29, 120.17))]
            ):
                data = incident_json(f"van-1:{n}", when=f"2026-11-20T{when}:00+08:00", position=position)
                assert post_incident(device, data).status_code in (200, 201)
            job = device.post("/api/uploads", files={"file": ("patrol.mp4", footage("patrol"), "video/mp4")})
            assert wait_job(device, job.json()["id"])["status"] == "done"
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            before = conn.exec_driver_sql(_DEVICE_IDS).all()
        assert {kind for kind, _, device_id in before if device_id is not None} == {
            "case",
            "sighting",
            "upload",
        }
        assert all(device_id is not None for _, _, device_id in before)
        command.downgrade(_alembic_config(engine), "0006")
        _old_release_s_0007(engine)
        migrate(engine, "0012")
        with engine.connect() as conn:
            assert all(d is None for _, _, d in conn.exec_driver_sql(_DEVICE_IDS))  # the loss reproduced
        with Session(engine) as session:
            lost = audit.audit(session).problems
        lost_device = re.compile(
            r"case \S+ (device_id is None but its custody chain says 1|sighting \d+ altered)"
        )
        assert len(lost) == len(before) - 1 and all(lost_device.fullmatch(p.split(" (")[0]) for p in lost), (
            lost
        )
    finally:
        engine.dispose()

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    with caplog.at_level(logging.INFO, logger="api.storage.migrations"):
        assert main(["evidence", "verify"]) == 0, capsys.readouterr()
    cases = sum(kind == "case" for kind, _, _ in before)
    sightings = sum(kind == "sighting" for kind, _, _ in before)
    said = [r.getMessage() for r in caplog.records if r.name == "api.storage.migrations"]
    assert said == [
        "device references restored from the records that name them (0007 had set them to NULL): "
        f"{cases} case(s), {sightings} sighting(s), 1 upload(s); 0 could not be"
    ]
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(_DEVICE_IDS).all() == before
        # once more over a database with one sighting altered besides: nothing is guessed for it
        command.downgrade(_alembic_config(engine), "0012")
        with engine.begin() as conn:
            conn.execute(text("UPDATE sightings SET device_id = NULL, plate = 'EDITED' WHERE id = 1"))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="api.storage.migrations"):
            assert migrate(engine) is True
        said = [r.getMessage() for r in caplog.records if r.name == "api.storage.migrations"]
        assert said == [
            "device references restored from the records that name them (0007 had set them to NULL): "
            "0 case(s), 0 sighting(s), 0 upload(s); 1 could not be",
            "device references not restored (left NULL: no record says which device, if any): "
            "0 case(s), 1 sighting(s), 0 upload(s) (sightings 1)",
        ]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT device_id FROM sightings WHERE id = 1").scalar_one() is None
            assert conn.exec_driver_sql(_DEVICE_IDS).all() == [
                row if row[:2] != ("sighting", 1) else ("sighting", 1, None) for row in before
            ]
    finally:
        engine.dispose()


def test_device_references_in_entries_older_than_the_digests_come_from_who_posted(tmp_path: Path) -> None:
    """Entries written before 0006 hold neither a sighting's digest nor the new case's facts: who posted
    it decides (device:NAME, or a worker's run of an upload: who uploaded it); a user's post or upload
    had no device, and that NULL is neither changed nor counted as undecided."""
    from datetime import datetime

    from api.cases.custody import GENESIS, entry_digest

    engine = make_engine(f"sqlite:///{tmp_path / 'gridpatrol.db'}")
    t = datetime(2026, 11, 20, 8, 0)
    try:
        migrate(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, name, key_hash, active, created_at) "
                    "VALUES (2, 'van-1', 'h', 1, :t)"
                ),
                {"t": t},
            )
            for upload_id, by, device_id in [(1, "device:van-1", 2), (2, "user:operator", None)]:
                conn.execute(
                    text(
                        "INSERT INTO uploads (id, sha256, size, media_type, path, device_id, uploaded_by, "
                        "created_at) VALUES (:id, :sha, 1, 'video/mp4', 'x.mp4', :device, :by, :t)"
                    ),
                    {"id": upload_id, "sha": str(upload_id) * 64, "device": device_id, "by": by, "t": t},
                )
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, upload_id, status, progress, attempts, incidents, created_at) "
                        "VALUES (:id, :id, 'done', 1, 1, 1, :t)"
                    ),
                    {"id": upload_id, "t": t},
                )
            # case id: (who posted it, the job it came from, the device it had)
            posted = {1: ("device:van-1", None, 2), 2: ("worker:w1", 1, 2), 3: ("worker:w1", 2, None)}
            posted[4] = ("user:operator", None, None)
            for case_id, (actor, job_id, device_id) in posted.items():
                values = {"id": case_id, "device": device_id, "job": job_id, "t": t}
                conn.execute(
                    text(
                        "INSERT INTO cases (id, number, category, status, grid_cell_id, device_id, "
                        "first_seen, last_seen, sightings_count, recurrence_count, created_at, updated_at) "
                        "VALUES (:id, 'GP-2026-00000' || :id, 'illegal_parking', 'pending_review', 'C-1', "
                        ":device, :t, :t, 1, 0, :t, :t)"
                    ),
                    values,
                )
                conn.execute(
                    text(
                        "INSERT INTO sightings (id, case_id, incident_id, seen_at, device_id, job_id, "
                        "incident_json, recurrence, created_at) VALUES "
                        "(:id, :id, 'inc-' || :id, :t, :device, :job, '{}', 0, :t)"
                    ),
                    values,
                )
                detail = f'{{"evidence":[],"incident_id":"inc-{case_id}","recurrence":false}}'
                digest = entry_digest(
                    GENESIS, case_id=case_id, seq=1, at=t, actor=actor, action="case_created", detail=detail
                )
                conn.execute(
                    text(
                        "INSERT INTO custody_entries (case_id, seq, at, actor, action, detail, prev_hash, "
                        "entry_hash) VALUES (:id, 1, :t, :actor, 'case_created', :detail, :genesis, :digest)"
                    ),
                    dict(values, actor=actor, detail=detail, genesis=GENESIS, digest=digest),
                )
        with engine.connect() as conn:
            before = conn.exec_driver_sql(_DEVICE_IDS).all()
        migrate(engine, "0006")
        _old_release_s_0007(engine)
        migrate(engine, "0012")
        with engine.connect() as conn:
            assert all(d is None for _, _, d in conn.exec_driver_sql(_DEVICE_IDS))
        with engine.connect() as conn:
            tally = _migration_0013(engine).restore_device_references(conn)
            assert (tally.restored, tally.unsaid) == (
                {"case": 2, "sighting": 2, "upload": 1},
                {"case": [], "sighting": [], "upload": []},
            )
            conn.commit()
            assert conn.exec_driver_sql(_DEVICE_IDS).all() == before
            again = _migration_0013(engine).restore_device_references(conn)  # nothing left to restore
            assert (again.restored, again.unsaid) == (
                {"case": 0, "sighting": 0, "upload": 0},
                {"case": [], "sighting": [], "upload": []},
            )
    finally:
        engine.dispose()


def _migration_0013(engine: Engine) -> Any:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_revision("0013").module


def test_webhooks_sharing_an_active_url_keep_the_oldest_active(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0018 adds a unique index of active webhooks' URLs (two requests racing past the query that
    refused a taken URL could both register it, and each event was sent to it twice). A database
    where that happened keeps the oldest active webhook of each URL; the newer ones are deactivated,
    their pending deliveries failed as deactivating does, each named in the log."""
    engine = make_engine(empty_db_url)
    t = {"t": "2026-11-20 08:00:00"}
    try:
        migrate(engine, "0017")
        with engine.begin() as conn:
            for hook_id, url, events, active in [
                (1, "https://a.example/in", "case.filed", True),
                (2, "https://b.example/in", "case.filed", True),
                (3, "https://a.example/in", "case.filed,custody.checkpoint", True),
                (4, "https://a.example/in", "case.filed", False),
                (5, "https://a.example/in", "case.filed", True),
            ]:
                conn.execute(
                    text(
                        "INSERT INTO webhooks (id, url, secret, events, active, created_at) "
                        "VALUES (:id, :url, 's', :events, :active, :t)"
                    ),
                    {"id": hook_id, "url": url, "events": events, "active": active, **t},
                )
            for delivery_id, hook_id, status in [(1, 1, "pending"), (2, 3, "pending"), (3, 3, "delivered")]:
                conn.execute(
                    text(
                        "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, status, attempts, "
                        "next_attempt_at, created_at) VALUES (:id, :hook, 'case.filed', '{}', :status, 0, "
                        ":t, :t)"
                    ),
                    {"id": delivery_id, "hook": hook_id, "status": status, **t},
                )
        with caplog.at_level(logging.INFO, logger="api.storage.migrations"):
            assert migrate(engine) is True
        with engine.connect() as conn:
            active = conn.execute(text("SELECT id FROM webhooks WHERE active ORDER BY id")).scalars().all()
            deliveries = conn.execute(
                text("SELECT id, status, last_error FROM webhook_deliveries ORDER BY id")
            ).all()
        assert active == [1, 2]
        assert [tuple(d) for d in deliveries] == [
            (1, "pending", None),
            (2, "failed", "not sent: the webhook was deactivated"),
            (3, "delivered", None),
        ]
        said = [r.getMessage() for r in caplog.records if r.name == "api.storage.migrations"]
        missed = {3: "; events it had that webhook 1 has not: custody.checkpoint", 5: ""}
        assert said == [
            f"webhook {hook_id} deactivated: webhook 1, older, is active with the same URL, and a URL has "
            "one active webhook from now on (each event is sent to it once); its pending deliveries are "
            f"failed, its log stays{missed[hook_id]}"
            for hook_id in (3, 5)
        ]
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the index holds from now on
            conn.execute(text("UPDATE webhooks SET active = :yes WHERE id = 5"), {"yes": True})
        command.downgrade(_alembic_config(engine), "0017")
        with engine.begin() as conn:  # dropped again: what 0017 allowed, the deactivated kept so
            conn.execute(text("UPDATE webhooks SET active = :yes WHERE id = 5"), {"yes": True})
            assert conn.execute(text("SELECT count(*) FROM webhooks WHERE active")).scalar_one() == 3
    finally:
        engine.dispose()


def test_deliveries_tried_before_0020_show_their_last_attempt_as_known_or_unknown(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """0020 adds webhook_deliveries.last_attempt_at (`webhook list` showed when the event was queued as
    its last delivery, not when it was tried). A database with deliveries upgrades: a delivered one
    takes delivered_at (its last attempt was the one that delivered it), one tried and not delivered
    has none and is listed as unknown, never as another time; one never tried has none either."""
    engine = make_engine(empty_db_url)
    queued, delivered = "2026-11-20 08:00:00", "2026-11-20 08:03:05"
    try:
        migrate(engine, "0019")
        with engine.begin() as conn:
            for hook_id in (1, 2, 3):
                conn.execute(
                    text(
                        "INSERT INTO webhooks (id, url, secret, events, active, created_at) "
                        "VALUES (:id, :url, 's', 'case.filed', :yes, :t)"
                    ),
                    {"id": hook_id, "url": f"https://{hook_id}.example/in", "yes": True, "t": queued},
                )
            for delivery_id, hook_id, status, attempts, code, at in [
                (1, 1, "delivered", 2, 200, delivered),
                (2, 2, "failed", 8, None, None),
                (3, 2, "pending", 3, 503, None),  # retrying: the newest of webhook 2's tried
                (4, 3, "pending", 0, None, None),  # queued, never tried
            ]:
                conn.execute(
                    text(
                        "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, status, attempts, "
                        "last_status_code, next_attempt_at, created_at, delivered_at) VALUES (:id, :hook, "
                        "'case.filed', '{}', :status, :attempts, :code, :t, :t, :at)"
                    ),
                    {
                        "id": delivery_id,
                        "hook": hook_id,
                        "status": status,
                        "attempts": attempts,
                        "code": code,
                        "t": queued,
                        "at": at,
                    },
                )
        monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("GRIDPATROL_DATABASE_URL", empty_db_url)
        assert main(["-q", "webhook", "list"]) == 0  # upgrades it first, as every command does
        assert current_revision(engine) == "0021"
        with engine.connect() as conn:
            tried = conn.execute(text("SELECT id, last_attempt_at FROM webhook_deliveries ORDER BY id")).all()
        assert [(i, at if at is None else str(at)[:19]) for i, at in tried] == [
            (1, delivered),
            (2, None),
            (3, None),
            (4, None),
        ]
        header, *rows = capsys.readouterr().out.strip().splitlines()
        assert header.split()[3:12] == [
            "LAST", "ATTEMPT", "(UTC)", "RESULT", "NEXT", "TRY", "(UTC)", "QUEUED", "(UTC)"
        ]  # fmt: skip
        assert [row.split()[:-3] for row in rows] == [
            ["1", "yes", "case.filed", *delivered.split(), "delivered", "200", "-", *queued.split()],
            ["2", "yes", "case.filed", "unknown", "retrying", "503", *queued.split(), *queued.split()],
            ["3", "yes", "case.filed", "-", "-", "-", "-"],  # nothing tried yet
        ]
        command.downgrade(_alembic_config(engine), "0019")
        assert current_revision(engine) == "0019"
    finally:
        engine.dispose()
