"""Upload jobs run by a runner (api.runner.uploads) through the case service's runner job routes
(api.http.routes.runner_jobs), against the real case service on SQLite and PostgreSQL and the real
footage the worker tests use (../shared/footage/highway-dashcam-1.mp4).

The footage goes through the real pipeline (detect.pipeline.detect_footage: decoding, tracking, rules,
evidence images); the detector is scripted (ThreeCars: three cars parked one after another in a
no-parking zone over the whole frame), so that the footage gives incidents at all (its real traffic
moves) and the tests run in seconds. The model's own accuracy is measured elsewhere; here what is
tested is the path from an upload to cases, and the queue's guarantees on a runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from api.jobs.worker import Worker
from api.runner.uploads import ClaimedJob, UploadJobLoop
from api.storage.db import utcnow
from api.storage.models import Case, EvidenceLink, Job, Sighting
from tests.api.api_testkit import PG_URL, LiveServer, _Server, import_demo_grid, make_settings, seed_people

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
START = "2026-11-20T09:00:00+08:00"
SITE = {
    "model": {"weights": "unused.pt"},
    "analysis_fps": 5.0,
    "grace_s": 1.0,
    "kinds": {"car": "car"},
    "categories": {
        "illegal_parking": {
            "kinds": ["car"],
            "zone_kind": "no_parking",
            "min_dwell_s": 1.0,
            "min_median_conf": 0.4,
            "min_observations": 3,
            "require_static_camera": False,  # a dashcam on the move
        }
    },
    "cameras": [  # the test device's camera (van-1 files as demo-cam-01)
        {
            "id": "demo-cam-01",
            "zones": [{"id": "all", "kind": "no_parking", "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        }
    ],
}
# (box in pixels of the 640x360 clip, first analysed frame, frame after the last): at 5 fps of the
# 14 s clip, three cars of 3 s each, 1 s apart: three incidents
CARS = [
    ((20.0, 200.0, 120.0, 280.0), 0, 15),
    ((300.0, 200.0, 400.0, 280.0), 20, 35),
    ((500.0, 200.0, 600.0, 280.0), 40, 55),
]
INCIDENTS = 3
# the van drives through DEMO-QINGBO-03 of the demo grid while the clip runs (START is 01:00:00Z)
TRACK_GPX = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="van-1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
  <trkpt lat="30.2640" lon="120.1480"><time>2026-11-20T01:00:00Z</time></trkpt>
  <trkpt lat="30.2680" lon="120.1520"><time>2026-11-20T01:00:20Z</time></trkpt>
</trkseg></trk></gpx>
"""


class ThreeCars:
    """A detector that sees CARS by analysed frame, `delay_s` per frame (a fake of the model)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.frame = 0

    def detect(self, image: Any) -> list[Any]:
        from detect.values import Detection

        index, self.frame = self.frame, self.frame + 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return [
            Detection(box=box, score=0.9, class_name="car", kind="car")
            for box, first, end in CARS
            if first <= index < end
        ]


class ScriptedPipeline:
    """detect.pipeline.detect_footage, the real pipeline, with a fresh ThreeCars per job (picklable,
    for a Ray actor)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def __call__(self, input: Path, config: Any, **kwargs: Any) -> Iterator[Any]:
        from detect.pipeline import FootageRun, detect_footage

        # its notes on the footage kept, as detect.pipeline.ReusingPipeline keeps them
        return FootageRun(
            lambda notes: detect_footage(
                input, config, detector=ThreeCars(self.delay_s), notes=notes, **kwargs
            )
        )


# --- the case service ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes fresh, empty databases by name: SQLite files, or new schemas on the test PostgreSQL."""
    if not CLIP.is_file():
        pytest.skip(f"real footage not found at {CLIP}")
    schemas: list[str] = []
    if request.param == "postgres" and not PG_URL:
        pytest.skip("GRIDPATROL_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL) if request.param == "postgres" else None

    def make(name: str) -> str:
        if admin is None:
            return f"sqlite:///{tmp_path / name}.db"
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        sep = "&" if "?" in (PG_URL or "") else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    yield make
    if admin is not None:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """A real case service (no in-process worker) with its own data folder, a runner key in tokens."""
    running: list[_Server] = []

    def start(name: str, url: str, **settings: Any) -> LiveServer:
        from api.http.app import create_app

        app = create_app(make_settings(tmp_path / name, url, **settings), run_webhooks=False)
        services = app.state.services
        import_demo_grid(services)
        tokens = seed_people(services)
        server = _Server(app)
        base = server.__enter__()
        running.append(server)
        live = LiveServer(base, app, services, tokens)
        with live.client("admin") as admin:
            for runner in ("runner-1", "runner-2"):
                r = admin.post("/api/devices", json={"name": runner, "runner": True})
                assert r.status_code == 201, r.text
                live.tokens[runner] = r.json()["key"]
        return live

    yield start
    for server in reversed(running):
        server.__exit__()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(SITE))
    return path


def _upload(server: LiveServer, name: str, body: bytes, track: bytes | None = None) -> int:
    files = {"file": (name, body, "video/mp4")}
    if track is not None:
        files["track"] = ("patrol.gpx", track, "application/gpx+xml")
    with server.client("device") as device:
        r = device.post("/api/uploads", files=files, data={"start_time": START})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def _job(server: LiveServer, job_id: int) -> dict[str, Any]:
    with server.client("device") as device:
        return device.get(f"/api/jobs/{job_id}").json()


def _loop(server: LiveServer, tmp_path: Path, site: Path, *, runner: str = "runner-1", delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    loop = UploadJobLoop(
        server.url,
        server.tokens[runner],
        work_root=tmp_path / "work",
        config_path=site,
        pipeline=ScriptedPipeline(delay_s),
        poll_s=0.1,
        patience_s=10.0,
    )
    loop.open_work_dir()
    return loop


def _in_process_worker(server: LiveServer, site: Path) -> Worker:
    """The service's own worker, with the scripted detector: the runner's results are compared to it."""
    from detect.config import load_config

    return Worker(
        server.services.factory,
        server.services.settings,
        pipeline=ScriptedPipeline(),
        config_loader=lambda: load_config(site),
        grid_cache=server.services.grid_cache,
    )


def _cases(server: LiveServer) -> dict[str, Any]:
    """Everything the cases of a service say that does not depend on when they were filed: cases,
    their sightings (incident id, camera, device, job) and each sighting's evidence (role, SHA-256)."""
    with server.services.read_factory() as session:
        cases = session.execute(
            select(
                Case.id,
                Case.number,
                Case.category,
                Case.status,
                Case.grid_cell_id,
                Case.team,
                Case.camera_id,
                Case.device_id,
                Case.first_seen,
                Case.last_seen,
                Case.sightings_count,
            ).order_by(Case.id)
        ).all()
        sightings = session.execute(
            select(
                Sighting.id,
                Sighting.case_id,
                Sighting.incident_id,
                Sighting.seen_at,
                Sighting.camera_id,
                Sighting.device_id,
                Sighting.job_id,
            ).order_by(Sighting.id)
        ).all()
        links = session.execute(
            select(EvidenceLink.sighting_id, EvidenceLink.role, EvidenceLink.sha256).order_by(EvidenceLink.id)
        ).all()
    return {
        "cases": [tuple(row) for row in cases],
        "sightings": [tuple(row) for row in sightings],
        "evidence": [tuple(row) for row in links],
    }


def _incident_ids(server: LiveServer) -> list[str]:
    with server.services.read_factory() as session:
        return list(session.scalars(select(Sighting.incident_id).order_by(Sighting.id)))


# --- the tests -------------------------------------------------------------------------------------


def test_a_runner_makes_the_cases_the_in_process_worker_makes(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    footage = CLIP.read_bytes()
    # the same upload on two fresh services: one's in-process worker, the other's runner
    by_worker = start_service("by-worker", fresh_db("by_worker"))
    job_id = _upload(by_worker, CLIP.name, footage, TRACK_GPX)
    worker = _in_process_worker(by_worker, site)
    assert worker.run_once()
    expected = _job(by_worker, job_id)
    assert expected["status"] == "done" and expected["incidents"] == INCIDENTS, expected

    by_runner = start_service("by-runner", fresh_db("by_runner"), job_lease_s=1.5)
    assert _upload(by_runner, CLIP.name, footage, TRACK_GPX) == job_id
    loop = _loop(by_runner, tmp_path, site, delay_s=0.03)  # ~2 s of frames: progress shows meanwhile
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_job(by_runner, job_id)["progress"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert loop.run_once()
    finally:
        done.set()
        watcher.join()
        loop.close()
    job = _job(by_runner, job_id)
    assert job["status"] == "done" and job["error"] is None and job["attempts"] == 1, job
    assert job["incidents"] == INCIDENTS and job["progress"] == 1.0
    assert any(0.0 < p < 1.0 for p in seen), seen  # heartbeats carried the progress
    made = _cases(by_runner)
    assert len(made["sightings"]) == INCIDENTS
    assert {row[5] for row in made["sightings"]} == {1} and {row[6] for row in made["sightings"]} == {job_id}
    assert made == _cases(by_worker)  # same ids, camera, device, times, evidence bytes
    assert {row[4] for row in made["cases"]} == {"DEMO-QINGBO-03"}  # placed by the downloaded track
    with by_runner.client("admin") as admin, by_worker.client("admin") as admin_of_worker:
        shape = admin.get(f"/api/uploads/{job_id}/track")  # written when the runner finished the job
        assert shape.status_code == 200, shape.text
        assert shape.json() == admin_of_worker.get(f"/api/uploads/{job_id}/track").json()
        covered = admin.get("/api/coverage").json()  # the cells the track passed, as the worker records them
        assert [c["cell_id"] for c in covered["cells"]] == ["DEMO-QINGBO-03"]
        assert covered == admin_of_worker.get("/api/coverage").json()
    assert not any((tmp_path / "work").glob("*/*-*"))  # the attempt's folder is gone


def test_a_corrected_resend_gets_the_same_new_ids_from_a_runner_as_from_the_worker(
    fresh_db: Callable[[str], str],
    start_service: Callable[..., LiveServer],
    site: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Footage sent with a start time 8 h off its track, then again with the right one: a runner runs
    the corrected job with the ids the in-process worker gives it (the claimed job's id_salt), new ones,
    and supersedes the first run's case as the worker does. The runner's log names the revision of each
    job it claims."""
    footage = CLIP.read_bytes()
    wrong = "2026-11-20T17:00:00+08:00"

    def send(server: LiveServer, start: str) -> int:
        files = {"file": (CLIP.name, footage, "video/mp4"), "track": ("patrol.gpx", TRACK_GPX, "x")}
        with server.client("device") as device:
            r = device.post("/api/uploads", files=files, data={"start_time": start})
            assert r.status_code in (200, 201), r.text
            return int(r.json()["id"])

    by_worker = start_service("by-worker", fresh_db("by_worker"))
    worker = _in_process_worker(by_worker, site)
    by_runner = start_service("by-runner", fresh_db("by_runner"))
    loop = _loop(by_runner, tmp_path, site)
    try:
        for revision, start in enumerate((wrong, START)):
            job_id = send(by_worker, start)
            assert worker.run_once()
            assert send(by_runner, start) == job_id
            caplog.clear()
            with caplog.at_level("INFO", logger="api.runner.uploads"):
                assert loop.run_once()
            assert f"job {job_id} attempt 1 claimed (revision {revision})" in caplog.text, caplog.text
            assert _job(by_runner, job_id)["status"] == "done"
            assert _job(by_runner, job_id)["warning"] == _job(by_worker, job_id)["warning"]
    finally:
        loop.close()
    made = _cases(by_runner)
    assert made == _cases(by_worker)
    first = {row[2] for row in made["sightings"] if row[6] == 1}
    second = {row[2] for row in made["sightings"] if row[6] == job_id}
    assert len(second) == INCIDENTS and not first & second  # the corrected run's ids are its own
    placed = [row for row in made["cases"] if row[4] == "DEMO-QINGBO-03"]
    assert {row[3] for row in placed} == {"pending_review"}
    superseded = [row for row in made["cases"] if row[4] == "unassigned"]
    assert superseded and {row[3] for row in superseded} == {"rejected"}, made["cases"]


def test_a_runner_logs_a_claimed_job_its_upload_s_correction_superseded(
    fresh_db: Callable[[str], str],
    start_service: Callable[..., LiveServer],
    site: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job claimed for revision 0 of an upload that is at revision 1 by then (a corrected resend
    raised it; set here in the database): the runner's claim line says the job is superseded, so an
    operator reading the runner's log can tell it from the corrected run."""
    from api.storage.models import Upload

    server = start_service("svc", fresh_db("svc"))
    job_id = _upload(server, CLIP.name, CLIP.read_bytes())
    with server.services.factory() as session:
        session.execute(update(Upload).values(revision=1))
        session.commit()
    loop = _loop(server, tmp_path, site)
    try:
        with caplog.at_level("INFO", logger="api.runner.uploads"):
            assert loop.run_once()
    finally:
        loop.close()
    claimed = f"job {job_id} attempt 1 claimed (revision 0, superseded: its upload is at revision 1)"
    assert claimed in caplog.text, caplog.text


def test_a_corrupt_upload_fails_only_itself(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    server = start_service("svc", fresh_db("svc"))
    corrupt = _upload(server, "broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x13\x37" * 5000)
    real = _upload(server, CLIP.name, CLIP.read_bytes())
    loop = _loop(server, tmp_path, site)
    try:
        assert loop.run_once() and loop.run_once() and not loop.run_once()
    finally:
        loop.close()
    bad = _job(server, corrupt)
    assert bad["status"] == "failed" and bad["incidents"] == 0, bad
    assert bad["error"].startswith("the footage could not be read: "), bad
    assert "broken.mp4" in bad["error"] and "Traceback" not in bad["error"]
    assert str(tmp_path) not in bad["error"]  # named as uploaded, not by the runner's work folder
    good = _job(server, real)
    assert good["status"] == "done" and good["incidents"] == INCIDENTS, good
    assert len(_incident_ids(server)) == INCIDENTS


def test_footage_cut_short_is_done_with_the_warning_the_runner_sends(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    """A file that decodes only in part is analysed as far as it goes and its job says so, from a
    runner as from the in-process worker (tests/api/test_footage_cut_short.py); it was done with no
    warning before."""
    from tests.api.test_gps_tracks import still_video

    whole = still_video(tmp_path / "whole.avi", 7, frames=20)
    server = start_service("svc", fresh_db("svc"))
    cut = _upload(server, "patrol-0812.avi", whole[: len(whole) // 2])
    loop = _loop(server, tmp_path, site)
    try:
        assert loop.run_once()
    finally:
        loop.close()
    job = _job(server, cut)
    assert job["status"] == "done", job
    warning = job["warning"] or ""
    assert warning.startswith("the footage was analysed only in part (patrol-0812.avi: decode failed after")
    assert "of 20 frames: truncated or damaged data); nothing after that point was looked at" in warning
    assert str(tmp_path) not in warning  # named as uploaded, not by the runner's work folder


def test_a_runner_s_job_names_its_track_and_tells_one_outside_the_grid(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    """A runner's job whose track cannot be read fails naming the track as it was sent (patrol.gpx),
    not "the GPS track" or the runner's copy of it; one whose track lies in another city (Shanghai, for
    the Hangzhou demo grid) is done with the warning that it passed no grid cell, as the in-process
    worker's job says (tests/api/test_gps_tracks.py)."""
    from tests.api.test_gps_tracks import _track_at

    server = start_service("svc", fresh_db("svc"))
    broken = _track_at([(123.4, 120.1480)])
    bad = _upload(server, CLIP.name, CLIP.read_bytes(), track=broken)
    far = _upload(server, "far.mp4", CLIP.read_bytes() + b"\0", track=_track_at([(31.2304, 121.4737)] * 3))
    loop = _loop(server, tmp_path, site)
    try:
        assert loop.run_once() and loop.run_once()
    finally:
        loop.close()
    failed = _job(server, bad)
    assert failed["status"] == "failed" and failed["upload"]["track_filename"] == "patrol.gpx", failed
    assert failed["error"].startswith("GPS track 'patrol.gpx' could not be read: point 1 (trkpt): "), failed
    assert str(tmp_path) not in failed["error"]
    done = _job(server, far)
    assert done["status"] == "done" and done["incidents"] == INCIDENTS, done
    assert "GPS track 'patrol.gpx' passes through no grid cell" in (done["warning"] or ""), done
    assert "is 161.8 km from the grid's bounds" in done["warning"]
    assert done["track_off_grid"] is True  # the footage may be sent again with the right track


def _killable_loop(url: str, key: str, work_root: str, site: str) -> None:
    """In a child process: one slow job (0.2 s a frame), to be killed with SIGKILL mid-job."""
    loop = UploadJobLoop(url, key, work_root=work_root, config_path=site, pipeline=ScriptedPipeline(0.2))
    loop.open_work_dir()
    loop.run_once()


def test_a_killed_runner_attempt_is_retried_without_duplicate_cases(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    server = start_service("svc", fresh_db("svc"), job_lease_s=2.0)
    job_id = _upload(server, CLIP.name, CLIP.read_bytes())
    work = tmp_path / "work"
    code = (
        "import sys; from tests.runner.test_upload_jobs import _killable_loop; _killable_loop(*sys.argv[1:])"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, server.url, server.tokens["runner-1"], str(work), str(site)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not _incident_ids(server):  # the first incident filed: the attempt is mid-job
            assert child.poll() is None and time.monotonic() < deadline, "the child filed nothing"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    filed = _incident_ids(server)
    assert 1 <= len(filed) < INCIDENTS
    with server.services.read_factory() as session:
        killed = session.get(Job, job_id)
        assert killed is not None and killed.status == "running" and killed.attempts == 1
        dead_lease = killed.lease_owner
    assert dead_lease is not None and dead_lease.startswith("runner:runner-1:")
    assert [p.name for p in work.iterdir()], "the killed loop's work folder is left behind"

    time.sleep(2.2)  # the dead attempt's lease lapses
    loop = _loop(
        server, tmp_path, site, runner="runner-2"
    )  # another runner; its start sweeps the dead one's folder
    try:
        assert [p.name for p in work.iterdir()] == [loop.work_dir.name]
        assert loop.run_once()
    finally:
        loop.close()
    job = _job(server, job_id)
    assert job["status"] == "done" and job["attempts"] == 2 and job["incidents"] == INCIDENTS, job
    ids = _incident_ids(server)
    assert len(ids) == len(set(ids)) == INCIDENTS and ids[: len(filed)] == filed  # none twice
    with server.services.read_factory() as session:
        sightings = sum(session.scalars(select(Case.sightings_count)))
    assert sightings == INCIDENTS
    headers = {"Authorization": f"Bearer {server.tokens['runner-1']}", "X-Job-Lease": dead_lease}
    r = httpx.post(
        f"{server.url}/api/runner/jobs/{job_id}/heartbeat", json={"progress": 0.5}, headers=headers
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "X-Job-Lease", r.text


def test_an_attempt_whose_lease_was_taken_over_stops_at_its_next_heartbeat(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    server = start_service("svc", fresh_db("svc"), job_lease_s=3.0)  # heartbeats every second
    job_id = _upload(server, CLIP.name, CLIP.read_bytes())
    slow = _loop(server, tmp_path, site, delay_s=0.1)  # ~7 s of frames
    first = slow.client.claim()
    assert first is not None and first.attempt == 1 and first.upload["source_id"].startswith("upload-")
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(slow.process(first)))
    thread.start()
    other = _loop(server, tmp_path, site, runner="runner-2")
    second: ClaimedJob | None = None
    try:
        deadline = time.monotonic() + 30
        while _job(server, job_id)["progress"] == 0.0:  # the first attempt is under way
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(20):  # its lease made to lapse, and the job claimed by another runner
            with server.services.factory() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
                session.commit()
            second = other.client.claim()
            if second is not None:
                break
        assert second is not None and second.id == job_id and second.attempt == 2
        taken_at = time.monotonic()
        thread.join(30)
        assert outcome == ["stopped"] and time.monotonic() - taken_at < 3.0  # within a heartbeat or so
        assert other.process(second) == "done"
        assert not slow.client.finish(first, error=None, incidents=0)  # the stale lease ends nothing
    finally:
        thread.join(30)
        slow.close()
        other.close()
    job = _job(server, job_id)
    assert job["status"] == "done" and job["attempts"] == 2 and job["incidents"] == INCIDENTS, job
    ids = _incident_ids(server)
    assert len(ids) == len(set(ids)) == INCIDENTS


def test_runner_job_routes_take_runner_keys_only(
    fresh_db: Callable[[str], str], start_service: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_service("svc", fresh_db("svc"))
    with server.client("runner-1") as runner:
        nothing = runner.post("/api/runner/jobs/claim")
        assert nothing.status_code == 200 and nothing.json() == {"job": None}, nothing.text
    job_id = _upload(server, CLIP.name, CLIP.read_bytes())
    routes = [
        ("POST", "/api/runner/jobs/claim", {}),
        ("GET", f"/api/runner/jobs/{job_id}/footage", {}),
        ("GET", f"/api/runner/jobs/{job_id}/track", {}),
        ("POST", f"/api/runner/jobs/{job_id}/heartbeat", {"json": {"progress": 0.5}}),
        ("POST", f"/api/runner/jobs/{job_id}/incidents", {"files": {"incident": (None, b"{}")}}),
        ("POST", f"/api/runner/jobs/{job_id}/finish", {"json": {"incidents": 0}}),
    ]
    for who in ("device", "admin", "operator", "viewer"):
        with server.client(who) as client:
            client.headers["X-Job-Lease"] = "runner:runner-1:0"
            for method, path, kwargs in routes:
                r = client.request(method, path, **kwargs)
                assert r.status_code == 403, (who, method, path, r.status_code, r.text)
    assert _job(server, job_id)["status"] == "queued"  # none of that claimed it

    with server.client("runner-1") as runner:
        claimed = runner.post("/api/runner/jobs/claim").json()["job"]
        assert claimed["id"] == job_id and claimed["upload"]["camera_id"] == "demo-cam-01"
        upload = claimed["upload"]
        assert upload["start_time"] == "2026-11-20T01:00:00Z" and not upload["has_track"]
        lease = {"X-Job-Lease": claimed["lease"]}
        footage = runner.get(f"/api/runner/jobs/{job_id}/footage", headers=lease)
        assert footage.status_code == 200 and footage.content == CLIP.read_bytes()
        assert runner.get(f"/api/runner/jobs/{job_id}/track", headers=lease).status_code == 404  # none came
    with server.client("runner-2") as thief:  # another runner with runner-1's lease
        for method, path, kwargs in routes[1:]:
            r = thief.request(method, path, headers=lease, **kwargs)
            assert r.status_code == 409, (method, path, r.status_code, r.text)
    assert _job(server, job_id)["status"] == "running"


def test_an_upload_job_through_a_real_ray_actor(
    start_service: Callable[..., LiveServer], site: Path, tmp_path: Path
) -> None:
    """One short job run by a Ray actor of start_upload_jobs on a local Ray (2 CPUs)."""
    ray = pytest.importorskip("ray", reason="ray is not installed")
    if not CLIP.is_file():
        pytest.skip(f"real footage not found at {CLIP}")
    from api.runner import uploads

    server = start_service("svc", f"sqlite:///{tmp_path / 'ray.db'}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # this machine cannot run Ray at all: say why
        pytest.skip(f"a local Ray cannot start here: {type(exc).__name__}: {exc}")
    try:
        (actor,) = uploads.start_upload_jobs(
            1,
            server=server.url,
            key=server.tokens["runner-1"],
            config_path=site,
            work_root=str(tmp_path / "work"),
            pipeline_factory=ScriptedPipeline,
            poll_s=0.2,
        )
        job_id = _upload(server, CLIP.name, CLIP.read_bytes())
        deadline = time.monotonic() + 180
        while (job := _job(server, job_id))["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done" and job["incidents"] == INCIDENTS, job
        status = ray.get(actor.status.remote(), timeout=30)
        assert status["done"] == 1 and status["incidents"] == INCIDENTS and status["pid"] != os.getpid()
        assert ray.get(actor.stop.remote(10.0), timeout=30)
        assert len(_incident_ids(server)) == INCIDENTS
    finally:
        uploads._ACTORS.clear()
        ray.shutdown()


def test_a_job_incident_filed_before_with_other_content_is_kept_and_the_job_goes_on(
    fresh_db: Callable[[str], str],
    start_service: Callable[..., LiveServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An attempt posts an incident id an earlier attempt filed with other numbers: the service refuses it
    (409 naming the incident and what differs, nothing changed) and the runner logs that the first filing
    stands and goes on, where a lapsed lease's 409 stops the attempt."""
    from api.runner.uploads import AttemptStopped, JobClient
    from tests.api.api_testkit import incident_json, jpeg_bytes

    server = start_service("svc", fresh_db("svc"))
    job_id = _upload(server, CLIP.name, CLIP.read_bytes())
    with server.client("runner-1") as runner:
        job = ClaimedJob.from_json(runner.post("/api/runner/jobs/claim").json()["job"])
    assert job.id == job_id
    files = {"annotated": jpeg_bytes("job-inc-a"), "crop": jpeg_bytes("job-inc-c")}
    paths = []
    for role, body in files.items():
        paths.append(tmp_path / f"job-inc-{role}.jpg")
        paths[-1].write_bytes(body)
    data = incident_json("job-inc", files=files)
    client = JobClient(server.url, server.tokens["runner-1"], patience_s=5)
    try:
        assert client.post_incident(job, data, paths) is False  # filed
        assert client.post_incident(job, data, paths) is True  # the same again: a duplicate
        with caplog.at_level("WARNING", logger="api.runner.uploads"):
            assert client.post_incident(job, dict(data, confidence_median=0.5), paths) is True
        assert "incident 'job-inc'" in caplog.text and "confidence_median" in caplog.text
        lost = ClaimedJob(job.id, job.attempt, "runner:runner-1:999", job.lease_s, job.upload)
        with pytest.raises(AttemptStopped):
            client.post_incident(lost, data, paths)
    finally:
        client.close()
    with server.services.factory() as session:
        stored = list(session.scalars(select(Sighting.incident_json)))
    assert len(stored) == 1 and json.loads(stored[0])["confidence_median"] == data["confidence_median"]
