"""Runners on real RTSP streams against the real case service (issue 14, "Tests and measurements"):
several cameras at once with one dropping off the network and coming back; a runner process killed
with kill -9 while its camera fires, then restarted; the case service away for a minute while a
camera keeps firing.

The cameras are GStreamer's test RTSP server (rtsp_kit.RtspCamera: real RTSP, a test pattern); what the
model would see in it is scripted (rtsp_kit.ComingAndGoingCar: a car parks for 2.5 s and leaves for
2.5 s, again and again), with a 1 s dwell (rtsp_kit.SITE), so each camera spools two items every 5 s:
the incident when its rule fires, and its end ('<id>:end'). "Lost" and "twice" compare what each
camera spooled (its log lines, and its spool folder where a killed process left items) with the
sightings the case service holds.

A dropped stream takes its camera offline: its runner goes on reporting it (fps 0, the reason), and the
service takes it offline when its last frame is older than GRIDPATROL_CAMERA_OFFLINE_AFTER_S."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.runner.camera import CameraJob
from tests.api.api_testkit import LiveServer
from tests.runner.conftest import ServiceOnPort
from tests.runner.rtsp_kit import (
    SITE,
    WHOLE_FRAME,
    ComingAndGoingCar,
    RtspCamera,
    spooled_ids,
    wait_for,
)
from tests.streams.test_rtsp import PASSWORD, _system_python_with_rtsp_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPOOLED = re.compile(r"camera (\S+): incident (\S+) \(\S+\) spooled")
# the cameras of a street, ~200 m apart: each camera's incidents merge into cases of its own
PLACES = {
    "cam-north": {"lat": 30.2760, "lon": 120.1551},
    "cam-east": {"lat": 30.2741, "lon": 120.1575},
    "cam-south": {"lat": 30.2722, "lon": 120.1551},
}


# --- set-up ----------------------------------------------------------------------------------------


@pytest.fixture
def rtsp_cameras() -> Iterator[Callable[[int], list[RtspCamera]]]:
    """Start n RTSP cameras (each its own server and port); every one is stopped after the test."""
    python = _system_python_with_rtsp_server()
    if python is None:
        pytest.skip(
            "no GStreamer RTSP server (apt: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good)"
        )
    made: list[RtspCamera] = []

    def start(n: int) -> list[RtspCamera]:
        for _ in range(n):
            camera = RtspCamera(python)
            made.append(camera)
            camera.start()
        return made[-n:]

    yield start
    for camera in made:
        camera.stop()


def register(client: httpx.Client, camera_id: str, url: str) -> None:
    body = {"id": camera_id, "stream_url": url, "position": PLACES[camera_id], "zones": [WHOLE_FRAME]}
    r = client.post("/api/cameras", json=body)
    assert r.status_code == 201, r.text


def runner_key(client: httpx.Client, name: str) -> str:
    r = client.post("/api/devices", json={"name": name, "runner": True})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def registry(server_url: str, key: str) -> dict[str, dict[str, Any]]:
    """The cameras as the registry gives them to a runner (with their stream URLs)."""
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {key}"}) as client:
        return {camera["id"]: camera for camera in client.get("/api/runner/cameras").json()}


def write_site(tmp_path: Path) -> Path:
    site = tmp_path / "site.yaml"
    site.write_text(json.dumps(SITE))
    return site


class Jobs:
    """CameraJobs in threads of this process, stopped together."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, job: CameraJob) -> None:
        thread = threading.Thread(target=job.run, args=(self.stop,), name=f"job-{job.camera_id}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self.threads), "a camera job did not stop"
        # a job gives its forwarder 5 s to finish the send in flight; one that takes longer (a slow,
        # loaded service) is finished by its thread after the job has returned, up to the HTTP timeout
        wait_for("the forwarders' last sends", lambda: not _forwarders(), timeout_s=60)


def _forwarders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gridpatrol-forwarder" and t.is_alive()]


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    running = Jobs()
    yield running
    running.close()


# --- reading what arrived ------------------------------------------------------------------------


def state(client: httpx.Client, camera_id: str) -> dict[str, Any]:
    r = client.get(f"/api/cameras/{camera_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["state"])


def sightings(client: httpx.Client, camera_id: str) -> list[dict[str, Any]]:
    """Every sighting of the camera's cases, in the order the service recorded them, each with its
    case's camera."""
    page = client.get("/api/cases", params={"camera": camera_id, "per_page": 500}).json()
    assert page["total"] == len(page["items"])
    rows = []
    for case in page["items"]:
        detail = client.get(f"/api/cases/{case['id']}").json()
        assert len(detail["sightings_list"]) == detail["sightings"]
        rows += [{**s, "case_camera": detail["camera_id"]} for s in detail["sightings_list"]]
    return sorted(rows, key=lambda row: row["id"])


def received(client: httpx.Client, camera_id: str) -> list[str]:
    return [row["incident_id"] for row in sightings(client, camera_id)]


def _frame_age_s(report: dict[str, Any]) -> float:
    """How old the camera's last frame was when its runner reported it."""
    at = datetime.fromisoformat(report["reported_at"])
    return (at - datetime.fromisoformat(report["last_frame_at"])).total_seconds()


def logged(lines: Iterable[str], camera_id: str) -> list[str]:
    """The incident ids a camera spooled, in order, from its runner's log lines."""
    return [m[2] for line in lines if (m := SPOOLED.search(line)) and m[1] == camera_id]


# --- the tests -----------------------------------------------------------------------------------


def test_three_live_cameras_one_drops_and_comes_back(
    db_url: str,
    make_server,  # type: ignore[no-untyped-def]
    rtsp_cameras: Callable[[int], list[RtspCamera]],
    jobs: Jobs,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three cameras analysed at once in one process with one shared detector, as a runner hosts
    them. One camera's server is killed: its state says so (no frames, the reason as its last error)
    while the other two keep analysing and filing cases; its server comes back on the same URL and
    the camera analyses and files again, by itself. Every incident of every camera is a sighting of a
    case of that camera, once."""
    caplog.set_level(logging.INFO, logger="api.runner.camera")
    server: LiveServer = make_server(db_url)
    ids = list(PLACES)
    streams = dict(zip(ids, rtsp_cameras(3), strict=True))
    with server.client("admin") as admin:
        for camera_id, stream in streams.items():
            register(admin, camera_id, stream.url)
        key = runner_key(admin, "runner-live")
    site, shared = write_site(tmp_path), ComingAndGoingCar()
    for camera_id, camera in registry(server.url, key).items():
        spool = tmp_path / "spool" / camera_id
        jobs.start(
            CameraJob(
                camera,
                server=server.url,
                key=key,
                spool_dir=spool,
                config_path=site,
                detector=shared,
                report_s=0.5,
                stall_s=3.0,  # the default 10 s would only make the test longer
            )
        )
    dropped, others = "cam-east", ["cam-north", "cam-south"]

    with server.client("operator") as op:
        for camera_id in ids:
            wait_for(f"a case from {camera_id}", lambda c=camera_id: received(op, c), timeout_s=120)

        streams[dropped].stop()  # the camera drops off the network
        before = {camera_id: len(received(op, camera_id)) for camera_id in others}
        seen: list[dict[str, dict[str, Any]]] = []

        def dropped_says_so() -> dict[str, Any] | None:
            states = {camera_id: state(op, camera_id) for camera_id in ids}
            seen.append(states)
            down = states[dropped]
            return down if down["last_error"] and down["fps"] == 0 else None

        down = wait_for("the dropped camera's state showing the outage", dropped_says_so, timeout_s=60)
        assert "no frame for" in down["last_error"] and down["runner_state"]["status"] == "stalled"
        # meanwhile the other cameras kept analysing and filing incidents
        wait_for(
            "new sightings from the other cameras during the outage",
            lambda: all(len(received(op, c)) > before[c] for c in others),
            timeout_s=60,
        )
        for camera_id in others:  # a recent frame in every report, frames in most reports' windows
            reports = [states[camera_id] for states in seen]
            assert all(_frame_age_s(r) < 5 for r in reports), (camera_id, reports)
            assert sum(r["fps"] > 0 for r in reports) >= len(reports) / 2, (camera_id, reports)

        streams[dropped].start()  # back on the same URL
        back = set(received(op, dropped))
        up = wait_for(
            "the dropped camera analysing again",
            lambda: (s := state(op, dropped))["fps"] > 0 and s["last_error"] is None and s,
            timeout_s=120,
        )
        assert up["online"] is True and up["runner_state"]["status"] == "analysing"
        wait_for(
            "a new incident from the camera that came back",
            lambda: {i for i in received(op, dropped) if not i.endswith(":end")} - back,
        )
        for camera_id in others:
            assert _frame_age_s(state(op, camera_id)) < 5, camera_id

    jobs.close()
    lines = [record.getMessage() for record in caplog.records]
    assert PASSWORD not in "\n".join(lines)
    with server.client("operator") as op:
        for camera_id in ids:
            rows = sightings(op, camera_id)
            assert {row["camera_id"] for row in rows} == {camera_id}
            assert {row["case_camera"] for row in rows} == {camera_id}
            assert all(len(row["evidence"]) >= 2 for row in rows)
            got = [row["incident_id"] for row in rows]
            left = spooled_ids(tmp_path / "spool" / camera_id)  # spooled after the last delivery
            assert len(set(got)) == len(got), f"{camera_id}: a sighting twice"
            assert got + left == logged(lines, camera_id), f"{camera_id}: lost or out of order"
            assert len([i for i in got if not i.endswith(":end")]) >= 2, camera_id


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # on PostgreSQL too: test_forwarder.py
def test_a_runner_killed_with_kill_9_and_restarted_loses_and_repeats_nothing(
    db_url: str,
    rtsp_cameras: Callable[[int], list[RtspCamera]],
    tmp_path: Path,
) -> None:
    """A runner process (tests/runner/live_child.py: a CameraJob on a real camera) is killed with
    SIGKILL twice while its camera fires, and started again on the same spool each time:

    1. the moment it has spooled an incident, as its forwarder takes it to send;
    2. while the case service is away, so that incidents wait in its spool when it dies.

    Every incident any of the three runs spooled is a sighting, once, in the order they were spooled.
    (Each run parks its cars a few pixels from the last run's: an incident's id is made from the
    stream's clock, which starts at 0 with each run, and the box; see rtsp_kit.ComingAndGoingCar.)"""
    service = ServiceOnPort(tmp_path, db_url)
    service.start()
    runs: list[subprocess.Popen[bytes]] = []
    try:
        (stream,) = rtsp_cameras(1)
        with service.client("admin") as admin:
            register(admin, "cam-north", stream.url)
            key = runner_key(admin, "runner-edge")
        camera = registry(service.url, key)["cam-north"]
        spool, site = tmp_path / "spool" / "cam-north", write_site(tmp_path)

        def start_run() -> Path:
            n = len(runs) + 1
            spec, log = tmp_path / f"run-{n}.json", tmp_path / f"run-{n}.log"
            spec.write_text(
                json.dumps(
                    {
                        "camera": camera,
                        "server": service.url,
                        "spool": str(spool),
                        "site": str(site),
                        "log": str(log),
                        "shift_px": 3.0 * n,
                    }
                )
            )
            log.touch()
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.runner.live_child", str(spec)],
                    cwd=REPO,
                    env=dict(os.environ, RUNNER_KEY=key),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            return log

        def spooled(log: Path) -> list[str]:
            return logged(log.read_text().splitlines(), "cam-north")

        def kill(run: subprocess.Popen[bytes]) -> None:
            run.send_signal(signal.SIGKILL)
            assert run.wait(timeout=30) == -signal.SIGKILL

        with service.client("operator") as op:
            # 1: killed the moment it spools its third incident (its forwarder is sending it)
            log1 = start_run()
            wait_for("two incidents of run 1 delivered", lambda: len(received(op, "cam-north")) >= 2, 120)
            wait_for("run 1 spooling its third incident", lambda: len(spooled(log1)) >= 3, 60, every_s=0.005)
            kill(runs[0])

            # 2: killed while the service is away and incidents wait in its spool
            log2 = start_run()
            wait_for(
                "an incident of run 2 delivered",
                lambda: set(spooled(log2)) & set(received(op, "cam-north")),
                timeout_s=120,
            )
            service.stop()
            wait_for("three incidents waiting in run 2's spool", lambda: len(spooled_ids(spool)) >= 3, 60)
            kill(runs[1])
            at_kill = spooled_ids(spool)

            # 3: runs until its spool is empty again, then stops cleanly
            service.start()
            log3 = start_run()
            wait_for(
                "run 3 delivering the spool and two incidents of its own",
                lambda: len(spooled(log3)) >= 2 and not spooled_ids(spool),
                timeout_s=120,
            )
            runs[2].send_signal(signal.SIGTERM)
            assert runs[2].wait(timeout=60) == 0
            got = received(op, "cam-north")
            report = state(op, "cam-north")["runner_state"]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
        service.stop()

    one, two, three = spooled(log1), spooled(log2), spooled(log3)
    left = spooled_ids(spool)  # spooled by run 3 after its last delivery
    assert one and two and three and at_kill
    # an item run 2 spooled but had not logged when it died is its newest; the rest it logged
    expected = one + two + [i for i in at_kill if i not in one + two] + three
    assert len(set(got)) == len(got), "an incident became two sightings"
    assert got + left == expected, "an incident was lost, or arrived out of order"
    assert report["status"] == "stopped" and report["spool"]["items"] == len(left)
    assert report["forwarder"]["delivered"] >= len(at_kill)  # run 3 sent what run 2 left


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the ingest on PostgreSQL: the tests above
def test_the_case_service_away_for_a_minute_while_a_camera_keeps_firing(
    db_url: str,
    rtsp_cameras: Callable[[int], list[RtspCamera]],
    jobs: Jobs,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slow by design (about two minutes): the outage is the minute issue 14 names, and after a minute
    of failed sends the forwarder waits 30-60 s between tries (its backoff's cap, jittered), so the
    spool drains up to a minute after the service is back.

    The camera keeps firing throughout; the incidents it spooled during the outage wait in its spool,
    its state (reported again once the service is back) shows them waiting, then the spool drains to
    0: every incident arrives once, in the order it was spooled."""
    caplog.set_level(logging.INFO, logger="api.runner.camera")
    service = ServiceOnPort(tmp_path, db_url)
    service.start()
    try:
        (stream,) = rtsp_cameras(1)
        with service.client("admin") as admin:
            register(admin, "cam-south", stream.url)
            key = runner_key(admin, "runner-edge")
        spool = tmp_path / "spool" / "cam-south"
        job = CameraJob(
            registry(service.url, key)["cam-south"],
            server=service.url,
            key=key,
            spool_dir=spool,
            config_path=write_site(tmp_path),
            detector=ComingAndGoingCar(),
            report_s=0.5,
        )
        jobs.start(job)
        with service.client("operator") as op:
            wait_for("a first incident delivered", lambda: received(op, "cam-south"), timeout_s=120)
            before = received(op, "cam-south")

        service.stop()
        down_at = time.monotonic()
        wait_for("incidents waiting in the spool", lambda: spooled_ids(spool), timeout_s=30)
        time.sleep(max(0.0, down_at + 60.0 - time.monotonic()))  # the outage itself: a minute
        waiting = spooled_ids(spool)
        assert len(waiting) >= 10  # two items every 5 s
        service.start()
        back_at = datetime.now(UTC)

        with service.client("operator") as op:
            reports: list[dict[str, Any]] = []

            def drained() -> bool:
                report = state(op, "cam-south")
                if report["reported_at"] and datetime.fromisoformat(report["reported_at"]) > back_at:
                    reports.append(report)
                return bool(reports) and reports[-1]["runner_state"]["spool"]["items"] == 0

            wait_for("the spool drained after the outage", drained, timeout_s=150, every_s=0.1)
            first = reports[0]["runner_state"]  # the first report the service took after the outage
            assert first["spool"]["items"] > 0 and first["forwarder"]["failures"] >= 1
            if (first["forwarder"]["last_success_at"] or 0) < back_at.timestamp():  # nothing sent yet
                assert first["spool"]["items"] >= len(waiting) and first["spool"]["oldest_age_s"] >= 50
            # the camera keeps firing: stop it (and its forwarder's last send) before counting what
            # arrived, or an incident delivered after the count is in neither list
            jobs.close()
            got = received(op, "cam-south")
    finally:
        service.stop()
    jobs.close()

    spooled = logged([record.getMessage() for record in caplog.records], "cam-south")
    left = spooled_ids(spool)  # spooled after the last delivery
    assert len(set(got)) == len(got), "an incident became two sightings"
    assert got + left == spooled, "an incident was lost, or arrived out of order"
    assert got[: len(before)] == before  # what came before the outage, first
    at = got.index(waiting[0])
    assert got[at : at + len(waiting)] == waiting  # then the outage's incidents, in order


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_camera_whose_stream_drops_goes_offline_and_back(
    db_url: str,
    make_server,  # type: ignore[no-untyped-def]
    rtsp_cameras: Callable[[int], list[RtspCamera]],
    jobs: Jobs,
    tmp_path: Path,
) -> None:
    """Issue 14: a dropped stream takes its camera's state offline (GRIDPATROL_CAMERA_OFFLINE_AFTER_S,
    2 s here), and online again when it comes back."""
    server: LiveServer = make_server(db_url, settings={"camera_offline_after_s": 2.0})
    (stream,) = rtsp_cameras(1)
    with server.client("admin") as admin:
        register(admin, "cam-north", stream.url)
        key = runner_key(admin, "runner-live")
    jobs.start(
        CameraJob(
            registry(server.url, key)["cam-north"],
            server=server.url,
            key=key,
            spool_dir=tmp_path / "spool",
            config_path=write_site(tmp_path),
            detector=ComingAndGoingCar(),
            report_s=0.5,
            stall_s=3.0,
        )
    )
    with server.client("operator") as op:
        wait_for("frames analysed", lambda: state(op, "cam-north")["fps"], timeout_s=60)
        stream.stop()
        wait_for("the last error", lambda: state(op, "cam-north")["last_error"], timeout_s=60)
        wait_for("the camera offline", lambda: state(op, "cam-north")["online"] is False, timeout_s=20)
        stream.start()
        wait_for("the camera online again", lambda: state(op, "cam-north")["online"], timeout_s=120)
