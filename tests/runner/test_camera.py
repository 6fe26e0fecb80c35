"""A runner's camera job against a real RTSP camera (GStreamer's test server) and the real case
service: frames analysed, an incident spooled and delivered as a case, the camera's live state
reported (online, frames per second, the runner's spool), stopped on request; the stream's password
in no log line and no report. The detector is scripted (a parked car in every frame): the model's
own accuracy is measured elsewhere; here the path from a live stream to a case is what is tested."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from api.runner.camera import FINAL_REPORT_S, STOP_S, CameraJob
from api.runner.spool import Spool
from detect.values import DWELL_ROLES, Detection
from tests.api.api_testkit import LiveServer, tmpfs
from tests.runner.rtsp_kit import SITE, WHOLE_FRAME, ComingAndGoingCar, RtspCamera, spooled_ids
from tests.runner.test_forwarder import LARGE, ScriptedService, runner_incident
from tests.streams.footage import write_video
from tests.streams.mjpeg_kit import PASSWORD as MJPEG_PASSWORD
from tests.streams.mjpeg_kit import MjpegCamera, mjpeg_handler, serve_http
from tests.streams.test_rtsp import PASSWORD, rtsp_server  # noqa: F401  (fixture)

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
    server: LiveServer,
    tmp_path: Path,
    camera: dict[str, Any],
    *,
    runner: str,
    detector: Any,
    clock: Callable[[], datetime] | None = None,
) -> CameraJob:
    """The camera registered (zone over the whole frame), a runner key made, and the job for the
    camera as the registry gives it to the runner (reading its hours on `clock`, when given)."""
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
        **({} if clock is None else {"clock": clock}),
    )


@pytest.mark.slow  # a real RTSP server
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


@pytest.mark.slow  # a real RTSP server
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


@pytest.mark.slow  # a real RTSP server
def test_a_camera_with_a_wrong_password_says_so_in_its_state(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its last error listed every cause OpenCV's failure could have (refused, unreachable, no answer,
    wrong credentials or path, not a video stream); the camera's own answer (401) is now named."""
    caplog.set_level(logging.DEBUG)
    url, _ = rtsp_server
    wrong = url.replace(f":{PASSWORD}@", ":Not-The-Password1@")
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server, tmp_path, {"id": "cam-pw", "stream_url": wrong}, runner="runner-pw", detector=ParkedCar(0)
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op:
            state = _wait(
                "the camera's last error",
                lambda: (
                    (s := op.get("/api/cameras/cam-pw").json()["state"])["last_error"]
                    and s["runner_state"]["status"] == "retrying"
                    and s
                ),
            )
    finally:
        stop.set()
        thread.join(timeout=20)
    host = url.rsplit("@", 1)[1].split("/")[0]  # as every answer names the stream: no user, no path
    assert state["last_error"] == (
        f"rtsp://{host}: cannot connect: wrong user name or password (the camera answered 401 Unauthorized)"
    )
    assert "Not-The-Password1" not in caplog.text


@pytest.mark.slow  # a real RTSP server
def test_a_camera_whose_password_was_reset_at_a_reboot_says_so_while_it_reconnects(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera that streams, then comes back from a reboot with another password: its source retries
    for minutes (its reconnect policy) and its state said only "no frame for 40 s: the stream dropped
    or stalled; reconnecting", the same as a camera that is off, and the log "reconnect attempt 3
    failed". The camera's own answer (401) is now its last error within seconds, and logged once."""
    caplog.set_level(logging.DEBUG)
    camera = RtspCamera("/usr/bin/python3")
    camera.start()
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server,
        tmp_path,
        {"id": "cam-reset", "stream_url": camera.url},
        runner="runner-rs",
        detector=ParkedCar(0),
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op:
            _wait("frames analysed", lambda: op.get("/api/cameras/cam-reset").json()["state"]["fps"])
            camera.stop()
            camera.password = "Reset-At-Reboot1"
            camera.start()
            state = _wait(
                "the camera's word on the stalled stream",
                lambda: (
                    "401" in ((s := op.get("/api/cameras/cam-reset").json()["state"])["last_error"] or "")
                    and s
                ),
                timeout=40,
            )
    finally:
        stop.set()
        thread.join(timeout=30)
        camera.stop()
    assert state["runner_state"]["status"] == "stalled"
    assert re.fullmatch(
        r"no frame for \d+ s: wrong user name or password \(the camera answered 401 Unauthorized\); "
        r"reconnecting",
        state["last_error"],
    )
    told = [r for r in caplog.records if "wrong user name or password" in r.getMessage()]
    assert len(told) == 1 and told[0].name == "api.runner.camera"
    assert PASSWORD not in caplog.text and "Reset-At-Reboot1" not in caplog.text


@pytest.mark.slow  # a real RTSP server
def test_a_job_let_go_sends_the_last_word_of_a_violation_still_open(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    """A camera disabled, changed or moved (its job stopped) while a car still stands: the violation
    ends there, and its end (the dwell strip, the last time seen) reaches the case before the job
    returns; it was cut off before it was spooled."""
    url, _ = rtsp_server
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server,
        tmp_path,
        {"id": "cam-let-go", "stream_url": url, "position": {"lat": 30.2741, "lon": 120.1551}},
        runner="runner-d",
        detector=ParkedCar(frames=10_000),  # parked for good
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op:
            (case,) = _wait(
                "a case", lambda: op.get("/api/cases", params={"camera": "cam-let-go"}).json()["items"], 60
            )
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 15
    with server.client("operator") as op:
        detail = op.get(f"/api/cases/{case['id']}").json()
    ids = [sighting["incident_id"] for sighting in detail["sightings_list"]]
    assert len(ids) == 2 and ids[1] == ids[0] + ":end", ids
    assert {e["role"] for e in detail["sightings_list"][1]["evidence"]} >= set(DWELL_ROLES)  # the strip
    assert not list((tmp_path / "spool" / "cam-let-go" / "items").iterdir())  # nothing left behind


@pytest.mark.slow  # a real RTSP server
def test_the_end_of_active_hours_sends_the_last_word_of_a_violation_still_open(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The camera's hours end while a car stands: its violation ends there, and the end reaches the
    case. The wall clock the hours are read on is the test's own (moved past their end once the case
    is there; the stream, the service and the minutes of the hours real)."""
    url, _ = rtsp_server
    server: LiveServer = make_server(db_url)
    tz = ZoneInfo("Asia/Shanghai")
    clock = [datetime(2026, 12, 5, 10, 0, tzinfo=tz)]
    camera = {"id": "cam-hours", "stream_url": url, "position": {"lat": 30.2741, "lon": 120.1551}}
    job = _camera_job(
        server,
        tmp_path,
        {**camera, "timezone": "Asia/Shanghai", "active_hours": ["08:00-10:30"]},
        runner="runner-e",
        detector=ParkedCar(frames=10_000),
        clock=lambda: clock[0],
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op:
            (case,) = _wait(
                "a case", lambda: op.get("/api/cases", params={"camera": "cam-hours"}).json()["items"], 40
            )
            assert job.status == "analysing"
            clock[0] = datetime(2026, 12, 5, 10, 30, tzinfo=tz)  # the hours are over
            ended = _wait(
                "the violation's end at the end of the hours",
                lambda: (d := op.get(f"/api/cases/{case['id']}").json())["sightings"] == 2 and d,
                20,
            )
    finally:
        stop.set()
        thread.join(timeout=30)
    first, last = (sighting["incident_id"] for sighting in ended["sightings_list"])
    assert last == first + ":end"


class Frames:
    """A detector that counts the frames it is given and sees nothing in them (a fake)."""

    def __init__(self) -> None:
        self.seen = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.seen += 1
        return []


class WaitsOnAClock(threading.Event):
    """A job's stop event whose waits in the job's own thread move a fake wall clock on by their
    timeout at once, recording (clock, timeout, the job's status) first; set at the first wait that
    is not for the active hours (the job ran a session). The job's reporter thread waits for real."""

    def __init__(self, clock: list[datetime]) -> None:
        super().__init__()
        self.clock = clock
        self.job: CameraJob | None = None
        self.waits: list[tuple[datetime, float, str]] = []

    def wait(self, timeout: float | None = None) -> bool:
        if threading.current_thread().name.startswith("gridpatrol-report"):
            return super().wait(timeout)
        assert self.job is not None and timeout is not None
        status = self.job.status
        self.waits.append((self.clock[0], timeout, status))
        if status != "outside active hours":
            self.set()
        self.clock[0] += timedelta(seconds=timeout)
        return self.is_set()


@pytest.mark.parametrize(
    ("hours", "now", "starts"),
    [
        ("08:00-18:00", "2026-12-05T07:59:45.500", "2026-12-05T08:00:00"),  # under a poll away
        ("08:00-18:00", "2026-12-05T06:58:01", "2026-12-05T08:00:00"),  # an hour and more
        ("22:00-06:00", "2026-12-05T21:59:59", "2026-12-05T22:00:00"),  # a span over midnight
        ("00:00-01:00", "2026-12-05T23:59:50", "2026-12-06T00:00:00"),  # the next day's
    ],
)
def test_a_camera_starts_when_its_active_hours_begin(
    tmp_path: Path, hours: str, now: str, starts: str
) -> None:
    """A camera outside its hours looked again every 30 s, so it started up to 30 s after they
    began (07:59:45.5 -> 08:00:15.5); it now sleeps to their start (at most 30 s at a time) and
    analyses its stream from the start on (the wall clock injected; the video and decoding real)."""
    tz = ZoneInfo("Asia/Shanghai")
    clock = [datetime.fromisoformat(now).replace(tzinfo=tz)]
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    detector = Frames()
    camera = {"id": "cam-dawn", "stream_url": str(write_video(tmp_path / "dawn.avi", 10, fps=5.0))}
    job = CameraJob(
        {**camera, "timezone": "Asia/Shanghai", "active_hours": [hours], "zones": [WHOLE_FRAME]},
        server="http://127.0.0.1:9",  # no service: the state reports fail quietly
        key="unused",
        spool_dir=tmp_path / "spool" / "cam-dawn",
        config_path=site,
        detector=detector,
        clock=lambda: clock[0],
    )
    stop = WaitsOnAClock(clock)
    stop.job = job
    job.run(stop)
    *outside, (session_ended, _, status) = stop.waits
    assert outside and all(s == "outside active hours" and t <= 30.0 for _, t, s in outside)
    assert status == "retrying" and detector.seen == 10  # the whole video analysed...
    assert session_ended == datetime.fromisoformat(starts).replace(tzinfo=tz)  # ...at the start


def test_the_end_of_active_hours_closes_a_stalled_stream(tmp_path: Path) -> None:
    """A stream that stalls (the camera's connection gone, its source waiting minutes to reconnect)
    while a car stands, and the camera's hours end: the stream is closed and the violation's last word
    spooled at the next state report. The hours' end was seen only at a frame: the camera stayed
    'analysing' until the source gave up, its violation open (the wall clock injected; the MJPEG
    camera, its HTTP server and the decoding real)."""
    tz = ZoneInfo("Asia/Shanghai")
    clock = [datetime(2026, 12, 5, 10, 0, tzinfo=tz)]
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    mjpeg = MjpegCamera(frames_per_connection=[120])  # 6 s at 20 fps, then 503 to every reconnect
    with serve_http(mjpeg_handler(mjpeg)) as port:
        camera = {"id": "cam-stall", "stream_url": f"http://viewer:{MJPEG_PASSWORD}@127.0.0.1:{port}/v.mjpg"}
        job = CameraJob(
            {**camera, "timezone": "Asia/Shanghai", "active_hours": ["08:00-10:30"], "zones": [WHOLE_FRAME]},
            server="http://127.0.0.1:9",  # no service: the incidents stay in the spool
            key="unused",
            spool_dir=tmp_path / "spool" / "cam-stall",
            config_path=site,
            detector=ParkedCar(frames=10_000),
            report_s=0.2,
            clock=lambda: clock[0],
        )
        stop = threading.Event()
        thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
        thread.start()
        try:
            (fired,) = _wait("the violation spooled", lambda: spooled_ids(job.spool_dir), 20)
            _wait("the stream stalled", lambda: sum(mjpeg.authorized) >= 2, 20)  # a reconnect refused
            assert job.status == "analysing"
            clock[0] = datetime(2026, 12, 5, 10, 30, tzinfo=tz)  # the hours are over
            _wait("the camera outside its hours", lambda: job.status == "outside active hours", 5)
            assert spooled_ids(job.spool_dir) == [fired, fired + ":end"]
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_job_waits_for_its_spool_while_another_process_sends_it(tmp_path: Path) -> None:
    """The runner's sweeper (api.runner.backlog) may be sending a camera's spool, a few seconds at a
    time, when the camera starts on that machine: its job waits for the spool and then runs; it
    failed at once (SpoolBusy), to be started again after a pause."""
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    detector = Frames()
    camera = {"id": "cam-wait", "stream_url": str(write_video(tmp_path / "wait.avi", 10, fps=5.0))}
    job = CameraJob(
        {**camera, "zones": [WHOLE_FRAME]},
        server="http://127.0.0.1:9",  # no service: the state reports fail quietly
        key="unused",
        spool_dir=tmp_path / "spool" / "cam-wait",
        config_path=site,
        detector=detector,
    )
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            job.run(stop)
        except BaseException as exc:  # what the slot's thread would log as the job's failure
            failed.append(exc)

    with Spool(tmp_path / "spool" / "cam-wait", max_bytes=1 << 30, max_items=1000):  # the sweeper's
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        _wait("the job waiting for its spool", lambda: job.status == "waiting for its spool", 10)
    try:
        _wait("the video analysed", lambda: detector.seen == 10, 20)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive() and failed == []


@pytest.mark.slow  # a real RTSP server
def test_a_rotated_key_keeps_the_incidents_and_says_so_once(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The runner's key rotated (or revoked) while its camera fires: the incidents wait in the spool,
    and the refused state reports are logged once, not at every report (a line every 5 s per
    camera, for as long as the runner runs with the old key)."""
    url, _ = rtsp_server
    server: LiveServer = make_server(db_url)
    job = _camera_job(
        server,
        tmp_path,
        {"id": "cam-key", "stream_url": url, "position": {"lat": 30.2741, "lon": 120.1551}},
        runner="runner-f",
        detector=ComingAndGoingCar(park_s=2.0, gone_s=1.5),
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with server.client("operator") as op, server.client("admin") as admin:
            _wait("a case", lambda: op.get("/api/cases", params={"camera": "cam-key"}).json()["items"], 60)
            caplog.clear()
            assert admin.post("/api/devices/runner-f/rotate").status_code == 200
            _wait("incidents kept", lambda: len(spooled_ids(tmp_path / "spool" / "cam-key")) >= 2, 30)
            time.sleep(3.0)  # six reports more, at 0.5 s
    finally:
        stop.set()
        thread.join(timeout=30)
    refused = [r for r in caplog.records if "the state report was refused: 401" in r.getMessage()]
    assert len(refused) == 1
    assert len(spooled_ids(tmp_path / "spool" / "cam-key")) >= 2  # nothing lost


def fill(disk: Path) -> Callable[[], None]:
    """Fill the disk; returns what frees it again."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as out:
        while True:
            out.write(b"\0" * 65536)
    return filler.unlink


@pytest.mark.slow  # a real RTSP server
def test_a_full_disk_loses_the_incident_says_so_and_the_camera_goes_on(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = rtsp_server
    server: LiveServer = make_server(db_url)
    with tmpfs(tmp_path / "disk", 4) as disk:
        job = _camera_job(
            server,
            disk,
            {"id": "cam-full", "stream_url": url, "position": {"lat": 30.2741, "lon": 120.1551}},
            runner="runner-c",
            detector=ComingAndGoingCar(park_s=2.0, gone_s=1.5),  # an incident and its end every 3.5 s
        )
        stop = threading.Event()
        thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
        thread.start()
        try:
            with server.client("operator") as op:

                def state() -> dict[str, Any]:
                    return dict(op.get("/api/cameras/cam-full").json()["state"])

                def delivered() -> int:
                    return int(((state()["runner_state"] or {}).get("forwarder") or {}).get("delivered", 0))

                _wait("an incident delivered", delivered, 60)
                free = fill(disk)
                full = _wait("the full disk said", lambda: (s := state())["last_error"] and s, 30)
                assert thread.is_alive()  # the job goes on
                assert "cannot write an incident to this machine's disk" in full["last_error"]
                assert full["runner_state"]["status"] in ("retrying", "connecting", "analysing")
                before = delivered()
                free()
                _wait("incidents delivered again", lambda: delivered() > before, 60)
                _wait("the error gone", lambda: state()["last_error"] is None, 30)
        finally:
            stop.set()
            thread.join(timeout=20)
    assert not thread.is_alive()


def reports(service: ScriptedService) -> list[dict[str, Any]]:
    """The state reports a camera job sent the scripted service."""
    return [json.loads(r["body"]) for r in service.requests if r["method"] == "PUT"]


@pytest.mark.slow  # a real RTSP server
@pytest.mark.parametrize("ahead_s", [90.0, -90.0])
def test_the_last_frame_is_reported_on_the_service_clock(
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    ahead_s: float,
) -> None:
    """A runner's clock 90 s behind the service's made its last frame look 90 s old, and the
    service took a camera streaming at 5 fps offline (GRIDPATROL_CAMERA_OFFLINE_AFTER_S, 60 s)."""
    url, _ = rtsp_server
    service = ScriptedService([], ahead_s=ahead_s)  # only its clock differs from the real service's
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    camera = {"id": "cam-skew", "stream_url": url, "zones": [WHOLE_FRAME]}
    job = CameraJob(
        camera,
        server=service.url,
        key="gpd_runner",
        spool_dir=tmp_path / "spool" / "cam-skew",
        config_path=site,
        detector=ParkedCar(frames=0),
        report_s=3.0,  # the first report has a frame already: sent again at once, on the service's clock
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        framed = _wait(
            "two reports with a frame",
            lambda: len(f := [r for r in reports(service) if r["last_frame_at"]]) >= 2 and f,
        )
    finally:
        stop.set()
        thread.join(timeout=20)
        service.close()
    reported = datetime.fromisoformat(framed[1]["last_frame_at"])  # the first sent again at once
    service_now = datetime.now(UTC) + timedelta(seconds=ahead_s)
    assert abs((service_now - reported).total_seconds()) < 5  # fresh on the service's clock
    said = "behind" if ahead_s > 0 else "ahead of"
    assert re.search(rf"this machine's clock is (89|90|91) s {said} the case service's", caplog.text)
    assert abs(framed[1]["clock_offset_s"] + ahead_s) <= 1.0  # the runner's minus the service's


def test_a_service_that_does_not_take_the_clock_difference_gets_the_reports_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner reporting its clock difference to an older service (which refuses a field it does
    not know): the report is sent again at once without it, and so are all after; said once."""
    caplog.set_level(logging.WARNING)
    service = ScriptedService([], ahead_s=90.0, refuse_field="clock_offset_s")
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    camera = {"id": "cam-old", "stream_url": str(write_video(tmp_path / "old.avi", 10, fps=5.0))}
    job = CameraJob(
        {**camera, "zones": [WHOLE_FRAME]},
        server=service.url,
        key="gpd_runner",
        spool_dir=tmp_path / "spool" / "cam-old",
        config_path=site,
        detector=Frames(),
        report_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait("five reports", lambda: len(reports(service)) >= 5, 20)
    finally:
        stop.set()
        thread.join(timeout=20)
        service.close()
    sent = reports(service)
    carried = [i for i, r in enumerate(sent) if "clock_offset_s" in r]
    assert carried == [1], carried  # the first had none (no answer yet); the second was refused
    assert "was refused: 422" not in caplog.text  # the reports are taken (the scripted one answers 201)
    assert caplog.text.count("does not take this runner's clock difference") == 1


class BehindDatetime(datetime):
    """datetime whose now() is 90 s behind this machine's: the wall clock of a runner set 90 s slow."""

    @classmethod
    def now(cls, tz: Any = None) -> BehindDatetime:
        moved = datetime.now(tz) - timedelta(seconds=90)
        return cls.fromtimestamp(moved.timestamp(), tz)


def test_a_runner_clock_90_s_behind_is_shown_and_flagged_with_its_camera(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A runner whose clock is 90 s behind the service's logged it on its own machine only: nobody at
    the service saw it, though its incidents carry its times. Its state reports now carry the
    difference, which the camera shows, flagged, its camera online all the same (the MJPEG camera,
    the runner's job and the service real; the runner's wall clock set back)."""
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr("api.runner.camera.datetime", BehindDatetime)
    server: LiveServer = make_server(db_url)
    mjpeg = MjpegCamera(frames_per_connection=[400])  # 20 s at 20 fps
    with serve_http(mjpeg_handler(mjpeg)) as port:
        url = f"http://viewer:{MJPEG_PASSWORD}@127.0.0.1:{port}/v.mjpg"
        job = _camera_job(
            server, tmp_path, {"id": "cam-slow-clock", "stream_url": url}, runner="r", detector=Frames()
        )
        stop = threading.Event()
        thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
        thread.start()
        try:
            with server.client("operator") as op:
                _wait(
                    "the clock difference shown with the camera",
                    lambda: op.get("/api/cameras/cam-slow-clock").json()["state"]["clock_warning"],
                    20,
                )
                time.sleep(4 * job.report_s)  # more reports, with frames: told once
                state = op.get("/api/cameras/cam-slow-clock").json()["state"]
        finally:
            stop.set()
            thread.join(timeout=20)
    assert not thread.is_alive()
    assert -92.0 <= state["clock_offset_s"] <= -88.0, state  # the Date header is in whole seconds
    assert re.search(r"(89|90|91) s behind the case service's", state["clock_warning"]), state
    assert state["online"] is True  # its frames reported on the service's clock
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "api.cameras.registry" and "clock" in r.getMessage()
    ]
    assert len(said) == 1 and "cam-slow-clock" in said[0], said


@pytest.mark.slow  # 15 s of waiting on a service that answers nothing in time
def test_a_stopping_job_lets_go_within_its_stop_limit_however_slow_the_service(tmp_path: Path) -> None:
    """A service that answers no incident and each state report only after 9 s, its clock apart: the
    stopping job's forwarder gives up its send (5 s of flush, 5 s of wait) and its last state report
    went twice (clocks apart), each answered after 9 s: ~28 s, past the engine's 30 s once the stream's
    own close is added (the slot's process ended). The last report is now one try of FINAL_REPORT_S."""
    service = ScriptedService([], ahead_s=90.0, delay_s=30.0, report_delay_s=9.0)
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    with Spool(tmp_path / "spool" / "cam-slow", **LARGE) as spool:
        spool.put(*runner_incident("waiting-1"))  # the forwarder's send, in flight at the stop
    detector = Frames()
    camera = {"id": "cam-slow", "stream_url": str(write_video(tmp_path / "slow.avi", 10, fps=5.0))}
    job = CameraJob(
        {**camera, "zones": [WHOLE_FRAME]},
        server=service.url,
        key="gpd_runner",
        spool_dir=tmp_path / "spool" / "cam-slow",
        config_path=site,
        detector=detector,
        report_s=60.0,  # no report of its own before the stop: the last one is the job's
    )
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait("the video analysed", lambda: detector.seen == 10, 20)
        _wait("the incident's send in flight", lambda: any(r["method"] == "POST" for r in service.requests))
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(timeout=60)
        stopping_s = time.monotonic() - stopped_at
        service.close()
    assert not thread.is_alive()
    assert stopping_s < STOP_S, stopping_s  # 10 s for the forwarder, FINAL_REPORT_S for the report
    assert stopping_s > 10.0 + FINAL_REPORT_S - 1.0, stopping_s  # each waited for as long as it may
    (last,) = reports(service)  # one try
    assert last["runner_state"]["status"] == "stopped"
