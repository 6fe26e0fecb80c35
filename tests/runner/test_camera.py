"""A runner's camera job against a real RTSP camera (GStreamer's test server) and the real case
service: frames analysed, an incident spooled and delivered as a case, the camera's live state
reported (online, frames per second, the runner's spool), stopped on request; the stream's password
in no log line and no report. The detector is scripted (a parked car in every frame): the model's
own accuracy is measured elsewhere; here the path from a live stream to a case is what is tested."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.runner.camera import CameraJob
from detect.values import Detection
from tests.api.api_testkit import LiveServer
from tests.runner.rtsp_kit import SITE, WHOLE_FRAME
from tests.streams.test_rtsp import PASSWORD, rtsp_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

CAR = Detection(box=(20.0, 60.0, 100.0, 110.0), score=0.9, class_name="car", kind="car")


class ParkedCar:
    """A detector that sees the same parked car in the first `frames` frames, then an empty street
    (a fake, not a mock)."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.left -= 1
        return [CAR] if self.left >= 0 else []


def _wait(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def _camera_job(
    server: LiveServer, tmp_path: Path, camera: dict[str, Any], *, runner: str, detector: ParkedCar
) -> CameraJob:
    """The camera registered (zone over the whole frame), a runner key made, and the job for the
    camera as the registry gives it to the runner."""
    with server.client("admin") as admin:
        r = admin.post("/api/cameras", json={**camera, "zones": [WHOLE_FRAME]})
        assert r.status_code == 201, r.text
        key = admin.post("/api/devices", json={"name": runner, "runner": True}).json()["key"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        (registered,) = client.get("/api/runner/cameras").json()
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    return CameraJob(
        registered,
        server=server.url,
        key=key,
        spool_dir=tmp_path / "spool" / camera["id"],
        config_path=site,
        detector=detector,
        report_s=0.5,
    )


def test_live_camera_to_case_with_state_reports(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, _ = rtsp_server
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server,
        tmp_path,
        {"id": "cam-live", "stream_url": url, "position": {"lat": 30.2741, "lon": 120.1551}},
        runner="runner-a",
        detector=ParkedCar(frames=30),  # about 6 s at 5 fps, then it drives off
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op:
            cases = _wait(
                "a case from the live camera",
                lambda: op.get("/api/cases", params={"camera": "cam-live"}).json()["items"],
            )
            assert cases[0]["category"] == "illegal_parking"
            state = _wait(
                "the camera's state with frames analysed",
                lambda: (s := op.get("/api/cameras/cam-live").json()["state"])["fps"] and s,
            )
            assert state["online"] is True and state["runner"] == "runner-a"
            assert 1.0 <= state["fps"] <= 6.0  # analysed at 5 fps of the camera's 10
            assert state["runner_state"]["status"] == "analysing"
            _wait(
                "the spool emptied by the forwarder",
                lambda: op.get("/api/cameras/cam-live").json()["state"]["runner_state"]["forwarder"][
                    "delivered"
                ],
            )
            detail = op.get(f"/api/cases/{cases[0]['id']}").json()
            assert len(detail["sightings_list"][0]["evidence"]) >= 2  # annotated frame and crop at least
            # the car drives off: the end of the violation is a second sighting of the same case
            ended = _wait(
                "the violation's end as a sighting of the case",
                lambda: (d := op.get(f"/api/cases/{cases[0]['id']}").json())["sightings"] == 2 and d,
            )
            assert ended["sightings_list"][-1]["incident_id"].endswith(":end")
            assert len(op.get("/api/cases", params={"camera": "cam-live"}).json()["items"]) == 1
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 10
    with server.client("operator") as op:
        text = op.get("/api/cameras/cam-live").text
    assert json.loads(text)["state"]["runner_state"]["status"] == "stopped"
    assert PASSWORD not in text and PASSWORD not in caplog.text


def test_a_camera_whose_stream_is_down_stops_at_once(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, camera_process = rtsp_server
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server,
        tmp_path,
        {"id": "cam-down", "stream_url": url},
        runner="runner-b",
        detector=ParkedCar(frames=0),
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    with server.client("operator") as op:
        _wait("frames analysed", lambda: op.get("/api/cameras/cam-down").json()["state"]["fps"])
        camera_process.kill()  # the camera goes away: its source waits to reconnect (minutes)
        time.sleep(2.0)
        stopped_at = time.monotonic()
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert time.monotonic() - stopped_at < 5
        assert op.get("/api/cameras/cam-down").json()["state"]["runner_state"]["status"] == "stopped"
