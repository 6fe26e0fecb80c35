"""Fixtures for the runner's tests: the case service's own (tests/api/conftest.py: `db_url` over SQLite
and PostgreSQL, `make_server`), and a case service that can be stopped and started again on one port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_testkit import free_port, import_demo_grid, make_settings, seed_people
from tests.api.conftest import (  # noqa: F401  (fixtures, re-exported)
    db_url,
    make_server,
    migrated_postgres,
    migrated_sqlite,
)


class ServiceOnPort:
    """The case service on a fixed port, stopped and started like a server restarting: each start
    builds a fresh app over the same database and data folder (seeded with the demo grid and people
    on the first start only)."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.settings = make_settings(tmp_path, url)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        from api.http.app import create_app

        app = create_app(self.settings, run_webhooks=False)
        if not self.tokens:
            import_demo_grid(app.state.services)
            self.tokens = seed_people(app.state.services)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(20)
            self._server = self._thread = None

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )


@pytest.fixture
def service_on_port(tmp_path: Path, db_url: str) -> Iterator[ServiceOnPort]:  # noqa: F811
    service = ServiceOnPort(tmp_path, db_url)
    service.start()
    yield service
    service.stop()
