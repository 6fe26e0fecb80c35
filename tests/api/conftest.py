"""Fixtures for the case service: real SQLite files (and PostgreSQL when
GRIDPATROL_TEST_POSTGRES_URL is set), real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.services import Services
from tests.api.api_testkit import PG_URL, LiveServer, _Server, import_demo_grid, make_settings, seed_people

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not PG_URL:
        pytest.skip("GRIDPATROL_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


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
