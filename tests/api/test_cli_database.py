"""How the `gridpatrol` service commands open the database: commands that only read or change what
is there refuse a database that does not exist (a mistyped path) instead of creating an empty one;
a database busy with another process's write is one line, never a traceback."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cameras.registry import CameraWatch
from api.cli.main import main
from api.services import Services
from tests.api.api_testkit import make_settings

READING = [
    ["user", "list"],
    ["user", "deactivate", "alice"],
    ["device", "list"],
    ["device", "revoke", "van-1"],
    ["camera", "list"],
    ["camera", "disable", "cam-1"],
    ["webhook", "list"],
    ["webhook", "deactivate", "1"],
    ["webhook", "activate", "1"],
    ["worker", "--once"],
    ["evidence", "verify"],
    ["evidence", "orphans"],
    ["evidence", "checkpoint"],
    ["report", "--since", "2026-11-23", "--until", "2026-11-29"],
]


@pytest.mark.parametrize("argv", READING, ids=[" ".join(a) for a in READING])
def test_a_command_that_reads_never_creates_a_database(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "nonexist"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(data))
    monkeypatch.delenv("GRIDPATROL_DATABASE_URL", raising=False)
    monkeypatch.setenv("GRIDPATROL_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err
    assert f"error: database not found: {data / 'gridpatrol.db'}; this command reads an existing" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not data.exists() and not (tmp_path / "checkpoints").exists()

    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    assert main(["-q", *argv, "--database-url", f"sqlite:///{missing}"]) == 1
    assert f"error: database not found: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists()


def test_an_empty_file_is_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    assert main(["-q", "user", "list", "--database-url", f"sqlite:///{empty}"]) == 1
    assert f"error: no gridpatrol database at {empty}: it has no gridpatrol schema" in capsys.readouterr().err
    with sqlite3.connect(empty) as conn:  # not migrated into one
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_commands_that_set_a_site_up_create_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDPATROL_PASSWORD", "correct horse battery")
    for n, argv in enumerate(
        [
            ["db", "upgrade"],
            ["user", "add", "root", "--role", "admin"],
            ["device", "add", "van-1"],
            ["camera", "add", "cam-1", "--url", "rtsp://cam.example/1"],
        ]
    ):
        data = tmp_path / f"site-{n}"
        monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(data))
        assert main(["-q", *argv]) == 0, capsys.readouterr().err
        assert (data / "gridpatrol.db").is_file()
        assert main(["-q", "user", "list"]) == 0  # and the reading commands then find it
    assert "error" not in capsys.readouterr().err


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site's database (SQLite, 1 s busy timeout) with one admin; yields the file."""
    db = tmp_path / "data" / "gridpatrol.db"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(db.parent))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", f"sqlite:///{db}?timeout=1")
    monkeypatch.setenv("GRIDPATROL_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery\n"))
    assert main(["-q", "user", "add", "root", "--role", "admin", "--password-stdin"]) == 0
    yield db


@pytest.fixture
def writer_lock(site: Path) -> Iterator[None]:
    """Another process's long write: the flock on `<file>-writer.lock` held (a second open file
    description conflicts with this process's own, as another process's would)."""
    fd = os.open(f"{site}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_a_busy_database_is_one_line(
    writer_lock: None, site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # commands that only read do not wait for the write lock at all
    assert main(["-q", "user", "list"]) == 0
    assert main(["-q", "evidence", "orphans"]) == 0
    assert "root" in capsys.readouterr().out
    # those that write give up after the busy timeout, in one line
    monkeypatch.setenv("GRIDPATROL_PASSWORD", "correct horse battery")
    for argv in (["user", "add", "bob", "--role", "viewer"], ["device", "add", "van-2"]):
        assert main(["-q", *argv]) == 1
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            f"gridpatrol {argv[0]}: error: database busy (database is busy: no write lock within 1 s: "
            "another process is writing to it): retry"
        ]


def test_the_camera_watch_logs_a_busy_database_in_one_line(
    writer_lock: None, site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = Services.build(make_settings(tmp_path, f"sqlite:///{site}?timeout=0.2"))
    watch = CameraWatch(services.factory, offline_after_s=60.0, every_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="api.periodic"):
            watch.start()
            watch._stop.wait(0.6)
            watch.stop()
    finally:
        services.close()
    records = [r for r in caplog.records if r.name == "api.periodic"]
    assert records, "no round met the busy database"
    for record in records:
        assert record.exc_info is None and record.levelno == logging.WARNING
        assert record.getMessage() == (
            "gridpatrol-camera-watch: a round was skipped: database is busy: no write lock within 0.2 s"
        )


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["user", "list"]])
def test_a_database_url_whose_driver_is_not_installed_is_one_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GRIDPATROL_DATABASE_URL=mysql://... (no MySQL driver here): the command ends with one line
    naming the missing driver, never the password; before, a ModuleNotFoundError traceback."""
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", "mysql://bob:S3cretPW@db.example/gridpatrol")
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "error: cannot open the database: ModuleNotFoundError: No module named 'MySQLdb'" in err
    assert "S3cretPW" not in err


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["user", "add", "bob", "--role", "admin"]])
def test_a_data_folder_that_cannot_be_made_is_one_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GRIDPATROL_DATA_DIR under a file (or a folder that cannot be made): one line naming the path;
    before, a FileExistsError / FileNotFoundError traceback from the command that sets a site up."""
    (tmp_path / "a-file").write_text("not a folder")
    data = tmp_path / "a-file" / "data"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(data))
    monkeypatch.delenv("GRIDPATROL_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw-for-bob-123\npw-for-bob-123\n"))
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "error: cannot open the database: " in err and str(tmp_path / "a-file") in err


@pytest.mark.parametrize("timeout", ["abc", "-1", "inf"])
def test_a_sqlite_timeout_that_is_no_number_of_seconds_is_refused(
    timeout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sqlite:///...?timeout=abc` ended the command with a ValueError traceback; -1 was taken, and a
    writer then waited for ever on the write lock. Each is one line naming the value, nothing made."""
    db = tmp_path / "site" / "gridpatrol.db"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", f"sqlite:///{db}?timeout={timeout}")
    assert main(["-q", "db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (
        f"cannot open the database: ArgumentError: the SQLite URL's timeout='{timeout}' is no number" in err
    )
    assert not db.exists()


def test_a_read_only_database_is_one_line_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that must write to a database it may only read (a read-only file or folder; here
    opened read-only): one line with SQLite's reason, as the service's 503; it was a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("GRIDPATROL_DATABASE_URL", raising=False)
    assert main(["-q", "db", "upgrade"]) == 0
    capsys.readouterr()
    monkeypatch.setenv(
        "GRIDPATROL_DATABASE_URL", f"sqlite:///file:{tmp_path / 'gridpatrol.db'}?mode=ro&uri=true"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pw\n"))
    assert main(["-q", "user", "add", "bob", "--role", "admin", "--password-stdin"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "error: database: not reachable; retry (OperationalError: " in err
    assert "attempt to write a readonly database)" in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "postgres://bob:S3cretPW@db.example/gridpatrol",
            "a database URL starting postgres:// names no SQLAlchemy dialect: write postgresql+psycopg://",
        ),
        (
            "sqlite:///data/",
            "the SQLite URL names a folder (data/), not a database file: add the file's name",
        ),
        ("sqlite:///a-folder", "the SQLite URL names a folder (a-folder), not a database file"),
        (
            "sqlite:///file://db.example/x.db?uri=true",
            "the SQLite URI filename 'file://db.example/x.db' names",
        ),
    ],
)
@pytest.mark.parametrize("argv", [["db", "upgrade"], ["user", "list"]])
def test_a_database_url_sqlalchemy_or_sqlite_would_take_wrongly_is_one_line_naming_it(
    url: str,
    said: str,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """postgres:// (SQLAlchemy's "Can't load plugin: sqlalchemy.dialects:postgres", no word of the
    name to write) and a SQLite path naming a folder (`sqlite:///data/` made a file `data`): one line
    saying what to write, nothing made, no password."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-folder").mkdir()
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "site"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", url)
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert said in err and "S3cretPW" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "site") == ["a-folder"]  # no data file
    assert list((tmp_path / "a-folder").iterdir()) == []


def test_a_sqlite_uri_filename_opens_the_file_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sqlite:///file:site/gridpatrol.db?uri=true` (a URI filename, for SQLite's own options such as
    mode=ro) made a folder named 'file:site' and then could not open the database; commands that read
    one said it was not found. It opens site/gridpatrol.db, as file:///ABSOLUTE/PATH does."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    absolute = tmp_path / "other place" / "gridpatrol.db"
    for url, db in [
        ("sqlite:///file:site/gridpatrol.db?uri=true", tmp_path / "site" / "gridpatrol.db"),
        (f"sqlite:///file://{str(absolute).replace(' ', '%20')}?uri=true", absolute),
    ]:
        monkeypatch.setenv("GRIDPATROL_DATABASE_URL", url)
        assert main(["-q", "db", "upgrade"]) == 0, capsys.readouterr().err
        assert db.is_file()
        assert main(["-q", "user", "list"]) == 0, capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("file:")]


def _refuse(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.executescript(sql)
    conn.close()


REFUSALS = [
    (  # a racing process's camera of the same id, stored between the command's check and its INSERT
        ["camera", "add", "gate-3", "--url", "rtsp://cam.example/live"],
        "CREATE TRIGGER racer BEFORE INSERT ON cameras BEGIN INSERT INTO cameras ({columns}) "
        "SELECT {values} FROM cameras WHERE id = 'gate-1'; END",
        "refused a change to cameras (UNIQUE constraint failed: cameras.id)",
    ),
    (  # a deferred foreign key broken by the change: refused at COMMIT
        ["camera", "disable", "gate-1"],
        "CREATE TABLE no_parent (id INTEGER PRIMARY KEY); CREATE TABLE refused_at_commit "
        "(parent INTEGER REFERENCES no_parent(id) DEFERRABLE INITIALLY DEFERRED); CREATE TRIGGER "
        "broken AFTER UPDATE ON cameras BEGIN INSERT INTO refused_at_commit VALUES (1); END",
        "refused the change at commit (FOREIGN KEY constraint failed)",
    ),
    (  # a trigger's refusal is not "already exists"
        ["user", "add", "bob", "--role", "viewer"],
        "CREATE TRIGGER frozen BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'users are frozen'); END",
        "refused a change to users (users are frozen)",
    ),
    (
        ["device", "add", "van-2"],
        "CREATE TRIGGER frozen BEFORE INSERT ON devices BEGIN SELECT RAISE(ABORT, 'no new devices'); END",
        "refused a change to devices (no new devices)",
    ),
    (
        ["webhook", "add", "https://hooks.example/in"],
        "CREATE TRIGGER frozen BEFORE INSERT ON webhooks BEGIN SELECT RAISE(ABORT, 'no hooks'); END",
        "refused a change to webhooks (no hooks)",
    ),
]


@pytest.mark.parametrize(("argv", "trigger", "said"), REFUSALS, ids=[" ".join(r[0][:2]) for r in REFUSALS])
def test_a_change_the_database_refuses_is_one_line_naming_what_it_refused(
    argv: list[str],
    trigger: str,
    said: str,
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An IntegrityError (a constraint, a trigger) at a command's INSERT or COMMIT was a traceback
    (and a user or device a trigger refused was said to exist already): one line naming the table and
    the constraint, exit 1, and what was stored before is kept."""
    monkeypatch.setenv("GRIDPATROL_PASSWORD", "correct horse battery")
    assert main(["-q", "camera", "add", "gate-1", "--url", "rtsp://cam.example/one"]) == 0
    with sqlite3.connect(site) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(cameras)")]
        stored = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("cameras", "users")}
    conn.close()
    values = ", ".join("NEW.id" if c == "id" else c for c in columns)
    _refuse(site, trigger.format(columns=", ".join(columns), values=values))
    capsys.readouterr()
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"gridpatrol {argv[0]}: error: database: {said}; the change was rolled back, what was stored "
        "before is kept"
    ]
    with sqlite3.connect(site) as conn:
        assert {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in stored} == stored
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM webhooks").fetchone() == (0,)
    conn.close()
