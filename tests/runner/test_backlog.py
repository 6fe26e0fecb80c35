"""The spools of cameras a runner's machine no longer analyses (api.runner.backlog), sent to the real
case service (SQLite and PostgreSQL) all the same; a spool a job holds is left to the job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.runner.backlog import SpoolSweeper
from api.runner.spool import Spool
from tests.api.api_testkit import LiveServer, free_port
from tests.runner.test_forwarder import LARGE, runner_incident


@pytest.fixture
def server(make_server: Any, db_url: str) -> LiveServer:
    return make_server(db_url, run_webhooks=False)


def _runner_with_cameras(server: LiveServer, *camera_ids: str) -> str:
    """The cameras registered and a runner key made; returns the key."""
    with server.client("admin") as admin:
        for camera_id in camera_ids:
            r = admin.post("/api/cameras", json={"id": camera_id, "stream_url": f"rtsp://cam/{camera_id}"})
            assert r.status_code == 201, r.text
        return str(admin.post("/api/devices", json={"name": "runner-s", "runner": True}).json()["key"])


def _spooled(root: Path, camera_id: str, *incident_ids: str) -> None:
    with Spool(root / camera_id, **LARGE) as spool:
        for incident_id in incident_ids:
            data, files = runner_incident(incident_id)
            spool.put({**data, "source_id": camera_id}, files)


def test_a_disabled_cameras_backlog_is_delivered_and_a_held_spool_left_to_its_job(
    server: LiveServer, tmp_path: Path
) -> None:
    """A camera disabled while the service was away kept its backlog in its spool until it ran on
    that machine again (never, staying disabled); the runner now sends it anyway. A spool that a
    camera's job has open is its job's to send, and is not touched."""
    key = _runner_with_cameras(server, "cam-off", "cam-on")
    root = tmp_path / "spool"
    _spooled(root, "cam-off", "off-1", "off-2", "off-3")
    _spooled(root, "cam-on", "on-1")
    (root / "cam-off.work").mkdir()  # a job's working folder beside its spool: no spool
    with server.client("admin") as admin:
        assert admin.patch("/api/cameras/cam-off", json={"enabled": False}).status_code == 200
    sweeper = SpoolSweeper(root, server=server.url, key=key)
    with Spool(root / "cam-on", **LARGE) as running:  # cam-on's job holds its spool
        assert sweeper.sweep() == {"cam-off": 3}
        assert len(running) == 1
    with Spool(root / "cam-off", **LARGE) as spool:
        assert len(spool) == 0
    with server.client("operator") as op:
        cases = op.get("/api/cases", params={"camera": "cam-off"}).json()["items"]
        assert len(cases) == 3
        assert op.get("/api/cases", params={"camera": "cam-on"}).json()["items"] == []


def test_a_backlog_the_service_cannot_take_now_is_tried_later_and_later(tmp_path: Path) -> None:
    """No service: the spool keeps its items, and the sweeper tries it again after a pause doubling
    from every_s (the forwarder's warning that sending failed not every 30 s for as long)."""
    root = tmp_path / "spool"
    _spooled(root, "cam-off", "off-1")
    sweeper = SpoolSweeper(root, server=f"http://127.0.0.1:{free_port()}", key="gpd_k", every_s=30.0)
    assert sweeper.sweep(now=1000.0) == {"cam-off": 0}
    assert sweeper.sweep(now=1029.0) == {}  # not yet
    assert sweeper.sweep(now=1030.0) == {"cam-off": 0}
    assert sweeper.sweep(now=1089.0) == {}  # 60 s after
    assert sweeper.sweep(now=1090.0) == {"cam-off": 0}
    with Spool(root / "cam-off", **LARGE) as spool:
        assert len(spool) == 1
