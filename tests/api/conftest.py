"""Fixtures for the case service: real SQLite files (and PostgreSQL when
GRIDPATROL_TEST_POSTGRES_URL is set), real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.services import Services
from tests.api.api_testkit import PG_URL, LiveServer, _Server, import_demo_grid, make_settings, seed_people

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the latest schema, migrated once a session: each test's fresh database is a copy
    of it. Migrating an empty file takes about half a second, most of a short test's time; the migrations
    themselves are tested from empty and back in tests/api/test_migrations.py."""
    from api.storage.db import make_engine, migrate

    path = tmp_path_factory.mktemp("migrated") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return path


def fresh_sqlite(template: Path, tmp_path: Path) -> str:
    """The URL of a new SQLite file in tmp_path, at the latest schema and holding no rows."""
    path = tmp_path / "test.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def _schema_url(schema: str) -> str:
    assert PG_URL
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[tuple[str, str] | None]:
    """A PostgreSQL schema at the latest schema, migrated once a session, as pg_dump writes it (its name,
    its SQL): each test's fresh schema replays that SQL under its own name, the way migrated_sqlite is
    copied. None (each test's schema is migrated from empty) where pg_dump is missing or fails."""
    if not PG_URL:
        yield None
        return
    from sqlalchemy import create_engine, make_url, text

    from api.storage.db import make_engine, migrate

    schema = f"t_template_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(_schema_url(schema))
        try:
            migrate(engine)
        finally:
            engine.dispose()
        url = make_url(PG_URL)
        command = ["pg_dump", "--schema", schema, "--no-owner", "--no-privileges", "--inserts"]
        command += ["-h", url.host or "localhost", "-p", str(url.port or 5432), "-d", url.database or ""]
        command += ["-U", url.username or ""]
        try:
            dump = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
                env={**os.environ, "PGPASSWORD": url.password or ""},
            ).stdout
        except (OSError, subprocess.SubprocessError):
            yield None
        else:
            # psql's own commands (\\restrict ...) are not SQL
            sql = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
            yield schema, sql
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _fresh_database(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        if migrated:
            yield fresh_sqlite(request.getfixturevalue("migrated_sqlite"), tmp_path)
        else:
            yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    yield from _fresh_postgres_schema(request, migrated=migrated)


def _fresh_postgres_schema(request: pytest.FixtureRequest, *, migrated: bool) -> Iterator[str]:
    """The URL of a new schema on the test PostgreSQL server (dropped afterwards), at the latest
    schema and holding no rows, or empty (`migrated` False)."""
    if not PG_URL:
        pytest.skip("GRIDPATROL_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    template = request.getfixturevalue("migrated_postgres") if migrated else None
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        if template is None:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # migrated by whatever opens it first
        else:
            conn.exec_driver_sql(template[1].replace(template[0], schema))
    try:
        yield _schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the latest schema, with no rows: a SQLite file, or a new schema on the test
    PostgreSQL server."""
    yield from _fresh_database(request, tmp_path, migrated=True)


@pytest.fixture
def other_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A second fresh schema on the test PostgreSQL server, beside db_url's: two services (or test
    runs) sharing one database."""
    yield from _fresh_postgres_schema(request, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (no schema at all), for the tests of migrating from an older revision."""
    yield from _fresh_database(request, tmp_path, migrated=False)


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    return fresh_sqlite(migrated_sqlite, tmp_path)


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    svc = Services.build(make_settings(tmp_path, db_url))
    yield svc
    svc.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start a real uvicorn server over create_app(settings, ...) on a free port."""
    stack: list[_Server] = []

    def start(url: str, *, people: bool = True, grid: bool = True, **app_kwargs: Any) -> LiveServer:
        from api.http.app import create_app

        overrides = app_kwargs.pop("settings", {})
        settings = make_settings(tmp_path, url, **overrides)
        app = create_app(settings, **app_kwargs)
        services: Services = app.state.services
        if grid:
            import_demo_grid(services)
        tokens = seed_people(services) if people else {}
        server = _Server(app)
        base = server.__enter__()
        stack.append(server)
        return LiveServer(base, app, services, tokens)

    yield start
    for server in reversed(stack):
        server.__exit__()
