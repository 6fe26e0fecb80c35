"""GPS tracks through the service and the CLI: uploads with a track run by the worker through the real
detect_footage (scripted detector) put the case in its grid cell; a bad track fails the job, or the
`gridpatrol detect` command, naming the track."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from api.cli.main import main
from api.storage.models import Job, ReviewLabel, Upload
from detect.pipeline import FootageRun, detect_footage
from detect.values import Detection
from tests.api.api_testkit import LiveServer, upload_with_track, wait_job
from tests.detect.rule_fixtures import make_config
from tests.streams.test_gps import blackvue_gps

# the van parks in DEMO-QINGBO-03 (lat 30.262814..30.27, lon 120.146679..120.155 in demo-grid.geojson);
# its fixes are 20 s apart, the evidence frame 5 s after the first: a quarter of the way
TRACK_GPX = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="van-1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
  <trkpt lat="30.2640" lon="120.1480"><time>2026-11-20T01:00:00Z</time></trkpt>
  <trkpt lat="30.2680" lon="120.1520"><time>2026-11-20T01:00:20Z</time></trkpt>
</trkseg></trk></gpx>
"""
GPX_PART = ("patrol.gpx", TRACK_GPX, "application/gpx+xml")  # the track as a multipart file
CAR = Detection(box=(20.0, 60.0, 100.0, 150.0), score=0.9, class_name="car", kind="car", track_id=3)


def still_video(path: Path, seed: int, frames: int = 15) -> bytes:
    """A still camera's clip: one textured 320x180 image, `frames` times at 1 fps (MJPG AVI)."""
    image = np.random.default_rng(seed).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 1.0, (320, 180))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path.read_bytes()


def live_matroska(path: Path, seed: int) -> bytes:
    """still_video's clip in Matroska as a live recorder writes it: no Duration in its header (the
    element made an EBML Void of the same size), so its length is not known before it is all decoded."""
    image = np.random.default_rng(seed).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 1.0, (320, 180))
    assert writer.isOpened()
    for _ in range(15):
        writer.write(image)
    writer.release()
    data = path.read_bytes()
    at = data.index(b"\x44\x89")  # Duration: its id, a 1-byte size (0x80 | n), an n-byte float
    n = data[at + 2] & 0x7F
    return data[:at] + b"\xec\x40" + bytes([n]) + bytes(n) + data[at + 3 + n :]


class SurestAtFive:
    """A scripted detector: the car in every frame, surest in frame 5 (the evidence frame)."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return [CAR if self.calls != 6 else replace(CAR, score=0.97)]


class IdentityTracker:
    def update(self, detections: Any, image: np.ndarray) -> list[Detection]:
        return list(detections)


def pipeline(input: Any, config: Any, **kwargs: Any) -> Any:
    """detect_footage with the fakes, keeping its notes as the worker's does; a new detector per job
    (its frame count starts again)."""
    detector = SurestAtFive()
    return FootageRun(
        lambda notes: detect_footage(
            input, config, detector=detector, tracker=IdentityTracker(), notes=notes, **kwargs
        )
    )


def worker_server(  # type: ignore[no-untyped-def]
    make_server, url: str, pipeline: Any, config: Any = None
) -> LiveServer:
    """A live server whose worker runs `pipeline` with `config` (default: the test rules' config), its
    camera the device's (demo-cam-01) with no configured position: only a track can place its
    incidents."""
    config = config or make_config()
    config = config.model_copy(
        update={"cameras": [config.cameras[0].model_copy(update={"id": "demo-cam-01"})]}
    )
    return make_server(  # type: ignore[no-any-return]
        url,
        run_worker=True,
        run_webhooks=False,
        pipeline=pipeline,
        config_loader=lambda: config,
        settings={"worker_poll_s": 0.05},
    )


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return worker_server(make_server, sqlite_url, pipeline)


def test_gpx_track_puts_the_case_in_its_grid_cell(server: LiveServer, tmp_path: Path) -> None:
    with server.client("device") as device, server.client("admin") as admin:
        tracked = upload_with_track(
            device, still_video(tmp_path / "a.avi", 1), GPX_PART, "2026-11-20T09:00:00+08:00"
        )
        untracked = device.post(
            "/api/uploads",
            files={"file": ("other.avi", still_video(tmp_path / "b.avi", 2), "video/x-msvideo")},
            data={"start_time": "2026-11-20T09:00:00+08:00"},
        )
        bad = device.post(
            "/api/uploads",
            files={
                "file": ("third.avi", still_video(tmp_path / "c.avi", 3), "video/x-msvideo"),
                "track": (
                    "bad.csv",
                    b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n1,123.4,120\n",
                    "text/csv",
                ),
            },
        )
        jobs = [wait_job(device, r.json()["id"]) for r in (tracked, untracked, bad)]
        assert [j["status"] for j in jobs] == ["done", "done", "failed"], jobs
        assert (
            jobs[2]["error"]
            == "GPS track 'bad.csv' could not be read: line 3: bad latitude 123.4 (must be -90..90)"
        )
        cases = admin.get("/api/cases", params={"sort": "first_seen", "order": "asc"}).json()["items"]
        assert len(cases) == 2
        placed = next(c for c in cases if c["position"] is not None)
        assert placed["grid_cell"] == "DEMO-QINGBO-03" and placed["team"] is not None
        assert placed["position"] == {"lat": pytest.approx(30.265), "lon": pytest.approx(120.149)}
        assert placed["first_seen"] == "2026-11-20T01:00:00Z"
        unplaced = next(c for c in cases if c["position"] is None)
        assert unplaced["unassigned"] is True  # the same footage without a track

        # a retry with the same track is the same upload; a track added or changed afterwards is refused
        again = device.post(
            "/api/uploads",
            files={
                "file": ("patrol.avi", (tmp_path / "a.avi").read_bytes(), "video/x-msvideo"),
                "track": GPX_PART,
            },
        )
        assert again.status_code == 200 and again.json()["id"] == tracked.json()["id"]
        for name, footage in (("patrol.avi", "a.avi"), ("other.avi", "b.avi")):
            late = device.post(
                "/api/uploads",
                files={
                    "file": (name, (tmp_path / footage).read_bytes(), "video/x-msvideo"),
                    "track": ("late.gpx", TRACK_GPX.replace(b"30.2640", b"30.2641"), "application/gpx+xml"),
                },
            )
            assert late.status_code == 409, late.text
            assert "track" in late.text and "cannot be added to or changed" in late.text
        assert len(admin.get("/api/cases").json()["items"]) == 2


def _detect_with_track(tmp_path: Path, track: bytes, *options: str) -> int:
    """`gridpatrol detect` on a short still clip with this CSV track; its exit status."""
    footage = tmp_path / "patrol.avi"
    still_video(footage, 1, frames=2)
    path = tmp_path / "track.csv"
    path.write_bytes(track)
    site = Path(__file__).resolve().parents[2] / "configs" / "site.yaml"
    argv = [
        "detect",
        str(footage),
        "--config",
        str(site),
        "--out",
        str(tmp_path / "out"),
        "--track",
        str(path),
    ]
    return main([*argv, *options])


def test_cli_detect_refuses_a_bad_track_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n1,123.4,120\n"
    assert _detect_with_track(tmp_path, bad) == 1
    assert "track.csv: line 3: bad latitude 123.4" in capsys.readouterr().err


def test_cli_detect_names_an_unknown_track_time_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track = b"time,lat,lon\n2026-11-20 09:00:00,30.26,120.14\n"
    assert _detect_with_track(tmp_path, track, "--track-tz", "Mars/Olympus") == 1
    assert "--track-tz: unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def _gpx(time: str) -> bytes:
    return TRACK_GPX.replace(b"2026-11-20T01:00:00Z", time.encode())


# tracks with a fix off the calendar: the job fails naming the track's point or line (an
# OverflowError and "internal error" before, once the footage was aligned on a year-1 track)
OFF_CALENDAR_TRACKS = [
    (
        ("year1.gpx", _gpx("0001-01-01T00:00:00Z"), "application/gpx+xml"),
        "point 1 (trkpt): time '0001-01-01T00:00:00Z' is outside 1970..2199",
    ),
    (
        ("east.gpx", _gpx("0001-01-01T00:00:00+14:00"), "application/gpx+xml"),
        "point 1 (trkpt): time '0001-01-01T00:00:00+14:00' is outside 1970..2199",
    ),
    (
        (
            "late.csv",
            b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n9999-12-31T23:59:59-12:00,30.26,120.14\n",
            "text/csv",
        ),
        "line 3: time '9999-12-31T23:59:59-12:00' is outside 1970..2199",
    ),
    (
        ("before.csv", b"time,lat,lon\n-86400,30.26,120.14\n", "text/csv"),
        "line 2: time -86400 is outside 1970..2199",
    ),
]


def test_a_track_off_the_calendar_fails_its_job_naming_the_fix(server: LiveServer, tmp_path: Path) -> None:
    with server.client("device") as device:
        receipts = [
            device.post(
                "/api/uploads",
                files={
                    "file": (
                        f"{n}.avi",
                        still_video(tmp_path / f"{n}.avi", 10 + n, frames=3),
                        "video/x-msvideo",
                    ),
                    "track": track,
                },
            )
            for n, (track, _) in enumerate(OFF_CALENDAR_TRACKS)
        ]
        assert [r.status_code for r in receipts] == [201] * len(OFF_CALENDAR_TRACKS), receipts
        jobs = [wait_job(device, r.json()["id"]) for r in receipts]
    for job, ((name, _, _), reason) in zip(jobs, OFF_CALENDAR_TRACKS, strict=True):
        error = f"GPS track '{name}' could not be read: {reason}"
        assert job["status"] == "failed" and job["error"] == error, job


def test_a_resend_after_a_failed_job_replaces_its_bad_track(server: LiveServer, tmp_path: Path) -> None:
    """A track that failed its job is corrected by sending the footage again with a good one (a 409
    before: the failed job's bad track could never be replaced, only run again)."""
    footage = still_video(tmp_path / "a.avi", 1)
    bad_track = b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n1,123.4,120\n"
    uploads = server.services.settings.uploads_dir
    with server.client("device") as device, server.client("admin") as admin:
        first = device.post(
            "/api/uploads",
            files={
                "file": ("a.avi", footage, "video/x-msvideo"),
                "track": ("bad.csv", bad_track, "text/csv"),
            },
            data={"start_time": "2026-11-20T09:00:00+08:00"},
        )
        assert first.status_code == 201, first.text
        failed = wait_job(device, first.json()["id"])
        assert failed["status"] == "failed" and "bad latitude 123.4" in failed["error"], failed
        sha = first.json()["upload"]["sha256"]
        assert (uploads / f"{sha}.track.csv").is_file()

        fixed = device.post(
            "/api/uploads",
            files={
                "file": ("a.avi", footage, "video/x-msvideo"),
                "track": ("good.gpx", TRACK_GPX, "application/gpx+xml"),
            },
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["id"] != first.json()["id"] and fixed.json()["upload"]["has_track"]
        done = wait_job(device, fixed.json()["id"])
        assert done["status"] == "done", done
        assert not (uploads / f"{sha}.track.csv").exists()  # the bad track is replaced, not kept beside
        (case,) = admin.get("/api/cases").json()["items"]
        assert case["grid_cell"] == "DEMO-QINGBO-03"
        assert admin.get(f"/api/uploads/{fixed.json()['upload']['id']}/track").status_code == 200
        with server.services.factory() as session:
            upload = session.get(Upload, fixed.json()["upload"]["id"])
            assert upload is not None and upload.revision == 1  # a new track: a corrected run

        # once its job is done, the track is the one it ran with: neither changed nor run again
        late = device.post(
            "/api/uploads",
            files={
                "file": ("a.avi", footage, "video/x-msvideo"),
                "track": ("bad.csv", bad_track, "text/csv"),
            },
        )
        assert late.status_code == 409 and "cannot be added to or changed" in late.text, late.text
        again = device.post("/api/uploads", files={"file": ("a.avi", footage, "video/x-msvideo")})
        assert again.status_code == 200 and again.json()["id"] == fixed.json()["id"], again.text


def test_a_start_time_without_an_offset_is_the_cameras_local_time(server: LiveServer, tmp_path: Path) -> None:
    """A start time without a UTC offset is read in the camera's zone, as CSV track times are (it was
    read as UTC: 8 h off the track, the job done without a word but a log line); a track that places
    no frame says so on the job, and the footage may be sent again with the right start time."""
    with server.client("device") as device, server.client("admin") as admin:
        local = upload_with_track(
            device,
            still_video(tmp_path / "a.avi", 1),
            GPX_PART,
            "2026-11-20T09:00:00",  # 01:00Z in Asia/Shanghai, the track's start
            name="a.avi",
        )
        job = wait_job(device, local.json()["id"])
        assert job["status"] == "done" and job["warning"] is None, job
        (case,) = admin.get("/api/cases").json()["items"]
        assert case["grid_cell"] == "DEMO-QINGBO-03" and case["first_seen"] == "2026-11-20T01:00:00Z"

        footage = still_video(tmp_path / "b.avi", 2)
        off = device.post(  # UTC meant, no offset sent: 8 h before the track
            "/api/uploads",
            files={
                "file": ("b.avi", footage, "video/x-msvideo"),
                "track": GPX_PART,
            },
            data={"start_time": "2026-11-20T01:00:00"},
        )
        job = wait_job(device, off.json()["id"])
        assert job["status"] == "done", job
        assert job["warning"].startswith("GPS track 'patrol.gpx' placed none of the footage's frames"), job
        assert "2026-11-20T01:00:00+08:00 .. 2026-11-20T01:00:15+08:00" in job["warning"]
        assert "the track 2026-11-20T09:00:00+08:00 .. 2026-11-20T09:00:20+08:00" in job["warning"]
        assert "send the footage again" in job["warning"]
        page = admin.get("/static/js/upload.js").text
        assert "job.warning" in page  # the upload page shows it

        fixed = device.post(
            "/api/uploads",
            files={"file": ("b.avi", footage, "video/x-msvideo")},
            data={"start_time": "2026-11-20T01:00:00Z"},
        )
        assert fixed.status_code == 200 and fixed.json()["id"] != off.json()["id"], fixed.text
        job = wait_job(device, fixed.json()["id"])
        assert job["status"] == "done" and job["warning"] is None, job
        with server.services.factory() as session:
            upload = session.get(Upload, fixed.json()["upload"]["id"])
            assert upload is not None and upload.start_time == datetime(2026, 11, 20, 1, 0)
        # (the case the first run filed, still under review, is superseded by the corrected run's:
        # test_a_corrected_resend_supersedes_the_earlier_runs_cases)
        again = device.post("/api/uploads", files={"file": ("b.avi", footage, "video/x-msvideo")})
        assert again.json()["id"] == fixed.json()["id"]  # a done job with a fitting track is just returned

        # a camera the site config does not know: no zone to read the time in, so it is refused
        unknown = admin.post(
            "/api/uploads",
            files={"file": ("c.avi", still_video(tmp_path / "c.avi", 3), "video/x-msvideo")},
            data={"camera_id": "cam-nowhere", "start_time": "2026-11-20T09:00:00"},
        )
        assert unknown.status_code == 422, unknown.text
        (error,) = unknown.json()["errors"]
        assert error["field"] == "start_time" and "camera 'cam-nowhere'" in error["reason"], error
        assert "has no UTC offset" in error["reason"]


class CarAndTruck:
    """A scripted detector: a car and a truck parked in the zone in every frame (two incidents of two
    categories per clip: without a position, incidents of one category and camera make one case)."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        truck = replace(CAR, box=(110.0, 20.0, 150.0, 60.0), class_name="truck", kind="truck", track_id=4)
        return [CAR, truck]


def two_car_pipeline(input: Any, config: Any, **kwargs: Any) -> Any:
    return detect_footage(input, config, detector=CarAndTruck(), tracker=IdentityTracker(), **kwargs)


def test_a_corrected_resend_supersedes_the_earlier_runs_cases(
    make_server,  # type: ignore[no-untyped-def]
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Footage sent with a wrong start time files cases with the wrong time and no position; sent again
    with the right one, it files them anew, correctly timed and placed, and the first run's cases still
    under review are rejected as duplicates (by the worker, no review label); one an operator had filed
    stays and the job names it. Before: the corrected run filed nothing (the incident ids did not
    change), and the first run's cases kept their wrong times."""
    rule = {"zone_kind": "no_parking", "min_dwell_s": 10, "min_median_conf": 0.4, "min_observations": 3}
    config = make_config(
        categories={
            "illegal_parking": {"kinds": ["car"], **rule},
            "truck_parking": {"kinds": ["truck"], **rule},
        }
    )
    server = worker_server(make_server, sqlite_url, two_car_pipeline, config)
    footage = still_video(tmp_path / "a.avi", 7)
    files = {"file": ("a.avi", footage, "video/x-msvideo")}
    with server.client("device") as device, server.client("operator") as op:
        first = upload_with_track(
            device,
            footage,
            GPX_PART,
            "2026-11-20T09:00:00Z",  # meant +08:00: 8 h after the track
            name="a.avi",
        )
        job = wait_job(device, first.json()["id"])
        assert job["status"] == "done" and job["incidents"] == 2, job
        assert job["warning"].startswith("GPS track 'patrol.gpx' placed none"), job
        old = sorted(op.get("/api/cases").json()["items"], key=lambda c: c["id"])
        assert len(old) == 2 and all(c["position"] is None and c["unassigned"] for c in old), old
        assert all(c["first_seen"].startswith("2026-11-20T09:00") for c in old), old
        filed, pending = old
        moved = op.post(f"/api/cases/{filed['id']}/transitions", json={"to": "filed"})
        assert moved.status_code == 200, moved.text

        fixed = device.post("/api/uploads", files=files, data={"start_time": "2026-11-20T09:00:00+08:00"})
        assert fixed.status_code == 200 and fixed.json()["id"] != first.json()["id"], fixed.text
        job = wait_job(device, fixed.json()["id"])
        assert job["status"] == "done" and job["incidents"] == 2, job
        assert job["warning"] == (
            "1 case of the earlier run was already reviewed and keeps its times and positions: "
            f"{filed['number']}"
        ), job
        cases = op.get("/api/cases").json()["items"]
        assert len(cases) == 4, cases
        new = [c for c in cases if c["id"] not in (filed["id"], pending["id"])]
        assert all(c["grid_cell"] == "DEMO-QINGBO-03" for c in new), new
        assert all(c["first_seen"] == "2026-11-20T01:00:00Z" for c in new), new
        assert all(c["status"] == "pending_review" for c in new), new
        kept = op.get(f"/api/cases/{filed['id']}").json()
        assert kept["status"] == "filed"
        gone = op.get(f"/api/cases/{pending['id']}").json()
        assert gone["status"] == "rejected" and gone["reject_reason"] == "duplicate", gone
        last = gone["history"][-1]
        assert last["who"].startswith("worker:") and last["to"] == "rejected", last
        assert last["note"].startswith("superseded: the footage was sent again with a corrected start time")
        assert f"(job {fixed.json()['id']})" in last["note"]

        # the same corrected footage again: the same job, nothing filed twice
        again = device.post("/api/uploads", files=files, data={"start_time": "2026-11-20T09:00:00+08:00"})
        assert again.json()["id"] == fixed.json()["id"]

    with server.services.factory() as session:
        upload = session.get(Upload, fixed.json()["upload"]["id"])
        assert upload is not None and upload.revision == 1
        # the operator's confirm is a review label; the worker's rejection is none
        labels = session.scalars(select(ReviewLabel)).all()
        assert [(label.case_id, label.what, label.actor) for label in labels] == [
            (filed["id"], "confirm", "user:operator")
        ]

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(server.services.settings.data_dir))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("GRIDPATROL_CHECKPOINT_DIR", raising=False)
    capsys.readouterr()
    assert main(["evidence", "verify"]) == 0, capsys.readouterr()
    assert "0 problem(s)" in capsys.readouterr().out


def test_a_dashcam_track_whose_heading_or_speed_is_text_still_places_the_case(
    server: LiveServer, tmp_path: Path
) -> None:
    """A CSV track with 'N' in its heading column and '36 km/h' in its speed column (a dashcam's
    export): the job is done and the case placed from the positions, both columns ignored, as the job's
    warning says; each failed the job ("heading 'N' is not a number", "speed '36 km/h' is not a
    number"). A heading beyond a full turn (720) is ignored alike, not wrapped round, and a speed below
    0 is no speed."""
    track = (
        b"time,lat,lon,speed,heading\n"
        b"2026-11-20T01:00:00Z,30.2640,120.1480,36 km/h,N\n"
        b"2026-11-20T01:00:20Z,30.2680,120.1520,-5,720\n"
    )
    with server.client("device") as device, server.client("admin") as admin:
        sent = upload_with_track(
            device,
            still_video(tmp_path / "a.avi", 1),
            ("dashcam.csv", track, "text/csv"),
            "2026-11-20T09:00:00+08:00",
        )
        job = wait_job(device, sent.json()["id"])
        assert job["status"] == "done", job
        assert job["warning"] == (
            "GPS track 'dashcam.csv': line 2: speed '36 km/h' is not a speed within 0..70 m/s: the "
            "track's speed column is ignored (2 such value(s)), the track read without speeds; "
            "GPS track 'dashcam.csv': line 2: heading 'N' is not degrees within one turn (-360..360): the "
            "track's heading column is ignored (2 such value(s)), the heading taken from the fixes"
        )
        (case,) = admin.get("/api/cases").json()["items"]
    assert case["grid_cell"] == "DEMO-QINGBO-03"
    assert case["position"] == {"lat": pytest.approx(30.265), "lon": pytest.approx(120.149)}


def test_a_blackvue_gps_log_places_the_case(server: LiveServer, tmp_path: Path) -> None:
    """A BlackVue `.gps` (each NMEA sentence after the `[ms]` the camera wrote it at) was refused with
    415 "not a GPS track": its first character, "[", was taken for a JSON array's. The fixes are dated by
    their RMC sentences, so the case is placed as with the same track in GPX."""
    fixes = [
        (datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC), 3015.84, 12008.88),  # 30.2640, 120.1480 as in GPX_PART
        (datetime(2026, 11, 20, 1, 0, 20, tzinfo=UTC), 3016.08, 12009.12),  # 30.2680, 120.1520
    ]
    track = "\n".join(blackvue_gps(fixes)) + "\n"
    with server.client("device") as device, server.client("admin") as admin:
        sent = upload_with_track(
            device,
            still_video(tmp_path / "a.avi", 1),
            ("20261120_090000_NF.gps", track.encode(), "application/octet-stream"),
            "2026-11-20T09:00:00+08:00",
        )
        assert sent.status_code == 201, sent.text
        job = wait_job(device, sent.json()["id"])
        assert (job["status"], job["error"]) == ("done", None), job
        (case,) = admin.get("/api/cases").json()["items"]
    assert case["grid_cell"] == "DEMO-QINGBO-03"
    assert case["position"] == {"lat": pytest.approx(30.265), "lon": pytest.approx(120.149)}


def test_a_heading_column_ignored_is_named_when_the_footage_s_length_is_not_known(
    server: LiveServer, tmp_path: Path
) -> None:
    """Footage whose length cannot be read before decoding it (a live recorder's Matroska) with a track
    whose heading column holds 'N': the job is done, its warning names the ignored column, and how much
    of the footage the track placed stays unknown. Before, the note was lost with the measurement."""
    track = (
        b"time,lat,lon,heading\n"
        b"2026-11-20T01:00:00Z,30.2640,120.1480,N\n"
        b"2026-11-20T01:00:20Z,30.2680,120.1520,90\n"
    )
    with server.client("device") as device:
        sent = upload_with_track(
            device,
            live_matroska(tmp_path / "a.mkv", 1),
            ("dashcam.csv", track, "text/csv"),
            "2026-11-20T09:00:00+08:00",
            name="patrol.mkv",
        )
        job = wait_job(device, sent.json()["id"])
    assert job["status"] == "done", job
    assert job["warning"] == (
        "GPS track 'dashcam.csv': line 2: heading 'N' is not degrees within one turn (-360..360): the "
        "track's heading column is ignored (1 such value(s)), the heading taken from the fixes"
    )
    with server.services.factory() as session:
        done = session.get(Job, job["id"])
        assert done is not None and done.track_covered is None  # not measured: not "none placed"


def test_a_corrected_resend_that_places_nothing_files_its_own_case(
    server: LiveServer, tmp_path: Path
) -> None:
    """A resend whose corrected start time is still wrong (its track places no frame again) files its
    incident as a case of its own, and the first run's case still under review is superseded. Its
    position-less sighting merged into that earlier case (same camera, within the merge window), which
    then held a sighting of the corrected run and was kept pending, with the first run's time, and the
    corrected run filed no case of its own."""
    footage = still_video(tmp_path / "a.avi", 5)
    files = {"file": ("a.avi", footage, "video/x-msvideo")}
    with server.client("device") as device, server.client("operator") as op:
        first = device.post(
            "/api/uploads",
            files={**files, "track": GPX_PART},
            data={"start_time": "2026-11-20T09:00:00Z"},  # meant +08:00: 8 h after the track
        )
        job = wait_job(device, first.json()["id"])
        assert job["status"] == "done" and job["warning"].startswith("GPS track 'patrol.gpx' placed none"), (
            job
        )
        (old,) = op.get("/api/cases").json()["items"]
        assert old["position"] is None and old["first_seen"] == "2026-11-20T09:00:00Z", old

        again = device.post("/api/uploads", files=files, data={"start_time": "2026-11-20T10:00:00Z"})
        assert again.status_code == 200 and again.json()["id"] != first.json()["id"], again.text
        job = wait_job(device, again.json()["id"])
        assert job["status"] == "done" and job["warning"].startswith("GPS track 'patrol.gpx' placed none"), (
            job
        )
        cases = {c["id"]: c for c in op.get("/api/cases").json()["items"]}
        assert len(cases) == 2, cases
        gone = op.get(f"/api/cases/{old['id']}").json()
        assert gone["status"] == "rejected" and gone["reject_reason"] == "duplicate", gone
        assert len(gone["sightings_list"]) == 1, gone["sightings_list"]
        (new,) = [c for c in cases.values() if c["id"] != old["id"]]
        assert new["status"] == "pending_review" and new["first_seen"] == "2026-11-20T10:00:00Z", new


def _long_track() -> bytes:
    """A van's five-minute GPX track northwards through DEMO-QINGBO-03, a fix every 20 s from
    01:00:00Z: lat 30.2630 + 0.00002 per second (about 2 m/s), lon 120.1500."""
    points = "".join(
        f'<trkpt lat="{30.2630 + 0.00002 * s:.5f}" lon="120.1500">'
        f"<time>2026-11-20T01:{s // 60:02d}:{s % 60:02d}Z</time></trkpt>"
        for s in range(0, 301, 20)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><trkseg>{points}</trkseg></trk></gpx>"
    ).encode()


def test_footage_without_a_start_time_in_a_longer_track_says_its_places_are_a_guess(
    server: LiveServer, tmp_path: Path
) -> None:
    """A crew's phone logs the track from the start of the shift and the dashcam clip (15 s) is sent
    without a start time: its first frame is placed at the track's first fix. That guess placed every
    frame, so the job was done without a word while its case sat 4 min of driving (about 490 m) from
    where the van was; and the same footage sent again with its start time was the same job, the start
    time dropped. Now the job says so, and the start time sent afterwards corrects the run."""
    footage = still_video(tmp_path / "a.avi", 6)
    files = {"file": ("a.avi", footage, "video/x-msvideo")}
    with server.client("device") as device, server.client("operator") as op:
        first = device.post("/api/uploads", files={**files, "track": ("shift.gpx", _long_track(), "")})
        assert first.status_code == 201, first.text
        job = wait_job(device, first.json()["id"])
        assert job["status"] == "done", job
        assert job["warning"] is not None, job
        assert "without a start time" in job["warning"], job
        span = "2026-11-20T09:00:00+08:00 .. 2026-11-20T09:05:00+08:00, 5 min for 15 s of footage"
        assert span in job["warning"], job
        assert "send the footage again with its start time" in job["warning"]
        (guessed,) = op.get("/api/cases").json()["items"]
        assert guessed["first_seen"] == "2026-11-20T01:00:00Z", guessed
        assert guessed["position"] == {"lat": pytest.approx(30.2631), "lon": pytest.approx(120.15)}

        # the clip began at 09:04 local time: sent again with it, a new run places it there
        again = device.post("/api/uploads", files=files, data={"start_time": "2026-11-20T09:04:00+08:00"})
        assert again.status_code == 200 and again.json()["id"] != first.json()["id"], again.text
        job = wait_job(device, again.json()["id"])
        assert job["status"] == "done" and job["warning"] is None, job
        (case,) = [c for c in op.get("/api/cases").json()["items"] if c["id"] != guessed["id"]]
        assert case["first_seen"] == "2026-11-20T01:04:00Z", case
        assert case["position"] == {"lat": pytest.approx(30.2679), "lon": pytest.approx(120.15)}
        gone = op.get(f"/api/cases/{guessed['id']}").json()
        assert gone["status"] == "rejected" and gone["reject_reason"] == "duplicate", gone

        # a logger started after the camera: a track of 6 s for the 15 s clip is a guess too (it
        # places 11 of the 15 frames, over the half under which the job said so)
        short = b"".join(_long_track().split(b"</trkpt>", 1)[:1]) + (
            b'</trkpt><trkpt lat="30.26301" lon="120.1500"><time>2026-11-20T01:00:06Z</time></trkpt>'
            b"</trkseg></trk></gpx>"
        )
        late = device.post(
            "/api/uploads",
            files={"file": ("b.avi", still_video(tmp_path / "b.avi", 8), ""), "track": ("b.gpx", short, "")},
        )
        job = wait_job(device, late.json()["id"])
        assert job["status"] == "done" and "without a start time" in (job["warning"] or ""), job
        assert (
            "2026-11-20T09:00:00+08:00 .. 2026-11-20T09:00:06+08:00, 6 s for 15 s of footage"
            in (job["warning"])
        )


def test_footage_that_nothing_dates_says_its_cases_are_dated_when_filed(
    server: LiveServer, tmp_path: Path
) -> None:
    """A clip sent from the upload page without a start time or a GPS track: its case was dated when
    the job filed it, hours after the crew recorded it maybe, and the job said nothing. Now its
    warning says so, and the footage sent again with its start time is run again, dated by it."""
    footage = still_video(tmp_path / "a.avi", 7)
    files = {"file": ("a.avi", footage, "video/x-msvideo")}
    with server.client("device") as device, server.client("operator") as op:
        first = device.post("/api/uploads", files=files)
        assert first.status_code == 201, first.text
        job = wait_job(device, first.json()["id"])
        assert job["status"] == "done" and job["incidents"] == 1, job
        assert job["warning"] is not None, job
        assert "without a start time and nothing dates its frames" in job["warning"], job
        assert (
            "its 1 incident(s) have no time of their own and are dated when they are filed"
            in (job["warning"])
        )
        (filed,) = op.get("/api/cases").json()["items"]
        assert not filed["first_seen"].startswith("2026-11-20"), filed

        again = device.post("/api/uploads", files=files, data={"start_time": "2026-11-20T09:00:00+08:00"})
        assert again.status_code == 200 and again.json()["id"] != first.json()["id"], again.text
        job = wait_job(device, again.json()["id"])
        assert job["status"] == "done" and job["warning"] is None, job
        (case,) = [c for c in op.get("/api/cases").json()["items"] if c["id"] != filed["id"]]
        assert case["first_seen"] == "2026-11-20T01:00:00Z", case


def test_an_incident_the_track_does_not_cover_is_named_on_the_job(server: LiveServer, tmp_path: Path) -> None:
    """The crew's logger got its first fix 11 s after the dashcam started: the track placed 9 of the
    clip's 15 frames, over the half under which the job says so, but not the evidence frame (6 s before
    the first fix). Its case had no position, no grid cell, and the job said nothing of why."""
    with server.client("device") as device, server.client("operator") as op:
        sent = upload_with_track(
            device, still_video(tmp_path / "a.avi", 9), GPX_PART, "2026-11-20T08:59:49+08:00"
        )
        job = wait_job(device, sent.json()["id"])
        assert job["status"] == "done" and job["warning"] is not None, job
        assert job["warning"] == (
            "1 incident(s) have no position: GPS track 'patrol.gpx' (2026-11-20T09:00:00+08:00 .. "
            "2026-11-20T09:00:20+08:00) does not cover their evidence frames (before its first fix, after "
            "its last, or in a gap over 30 s)"
        )
        (case,) = op.get("/api/cases").json()["items"]
        assert case["position"] is None and case["unassigned"] is True, case


def _multipart(parts: list[tuple[str, bytes, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of file parts (field, raw filename bytes, content) as a client may
    send it, the filename's bytes unescaped (httpx percent-encodes control characters in one); the body
    and its Content-Type."""
    boundary = "gridpatrol-raw-form"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + b"\r\n"
        for field, filename, content in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_failed_job_names_the_track_by_the_name_it_was_sent_as(server: LiveServer, tmp_path: Path) -> None:
    """A crew's track that cannot be read: the job's error said "the GPS track could not be read", not
    which file, as the upload kept no track file name. Now the error names it, as sent but fit to show
    (its folder, a bell and a right-to-left override left out), and the job and the upload listing say
    it; the track sent again after the failure (a corrected file) renames it."""
    bad = b"time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n1,123.4,120\n"
    body, content_type = _multipart(
        [
            ("file", b"patrol.avi", still_video(tmp_path / "a.avi", 4)),
            ("track", "C:\\crew\\drive\a_0612\u202e.csv".encode(), bad),
        ]
    )
    with server.client("device") as device, server.client("operator") as operator:
        sent = device.post("/api/uploads", content=body, headers={"Content-Type": content_type})
        assert sent.status_code == 201, sent.text
        assert sent.json()["upload"]["track_filename"] == "drive_0612.csv"
        job = wait_job(device, sent.json()["id"])
        assert job["status"] == "failed", job
        assert job["error"] == (
            "GPS track 'drive_0612.csv' could not be read: line 3: bad latitude 123.4 (must be -90..90)"
        )
        assert job["upload"]["has_track"] is True and job["upload"]["track_filename"] == "drive_0612.csv"
        (listed,) = operator.get("/api/uploads").json()["items"]
        assert listed["track_filename"] == "drive_0612.csv"

        again = device.post(
            "/api/uploads",
            files={
                "file": ("patrol.avi", (tmp_path / "a.avi").read_bytes(), "video/x-msvideo"),
                "track": ("drive_0612_fixed.gpx", TRACK_GPX, "application/gpx+xml"),
            },
            data={"start_time": "2026-11-20T09:00:00+08:00"},
        )
        assert again.status_code == 200, again.text
        job = wait_job(device, again.json()["id"])
        assert (job["status"], job["error"]) == ("done", None), job
        assert job["upload"]["track_filename"] == "drive_0612_fixed.gpx"
        with server.services.factory() as session:
            upload = session.scalars(select(Upload)).one()
            assert upload.track_filename == "drive_0612_fixed.gpx"


def _track_at(points: list[tuple[float, float]]) -> bytes:
    """A GPX track of these (lat, lon) fixes, 10 s apart from 2026-11-20T01:00:00Z (09:00 in
    Hangzhou): the 15 s still clip sent with start time 09:00+08:00 is placed on it."""
    fixes = "".join(
        f'<trkpt lat="{lat}" lon="{lon}"><time>2026-11-20T01:00:{10 * i:02d}Z</time></trkpt>'
        for i, (lat, lon) in enumerate(points)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><trkseg>{fixes}</trkseg></trk></gpx>"
    ).encode()


def test_a_track_outside_the_grid_is_told_on_the_job(server: LiveServer, tmp_path: Path) -> None:
    """A crew sends another city's track (Shanghai's, for the Hangzhou demo grid), then, after a grid in
    Paris is imported, a track with latitude and longitude swapped (in range both ways). Each job was
    done without a word, its case filed unassigned as if the van had patrolled outside the grid (and
    the coverage listed a cell 'unassigned'). Now each job says its track passed no grid cell, how far
    from the grid, and for the swapped one that swapping puts it in the grid; the cases are still filed,
    unassigned, and no coverage is recorded."""
    shanghai = _track_at([(31.2304, 121.4737), (31.2306, 121.4739)])
    with server.client("device") as device, server.client("admin") as admin:
        sent = upload_with_track(
            device,
            still_video(tmp_path / "a.avi", 11),
            ("shanghai_0612.gpx", shanghai, "application/gpx+xml"),
            "2026-11-20T09:00:00+08:00",
        )
        job = wait_job(device, sent.json()["id"])
        assert (job["status"], job["incidents"]) == ("done", 1), job
        assert job["warning"] == (
            "GPS track 'shanghai_0612.gpx' passes through no grid cell, so the incidents it placed are "
            "filed without one (unassigned): its nearest fix (31.23040, 121.47370) is 161.8 km from the "
            "grid's bounds (lat 30.2484..30.2916, lon 120.1300..120.1800); it may be another place's track; "
            "if the track is wrong, the footage may be sent again with the right one"
        )
        assert job["track_off_grid"] is True, job
        (case,) = admin.get("/api/cases").json()["items"]
        assert case["unassigned"] is True and case["position"] is not None, case
        assert admin.get("/api/coverage", params={"since": "2026-11-20T00:00:00Z"}).json()["cells"] == []

        paris = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"id": cell, "name": cell, "team": "team-paris"},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[w, 48.85], [e, 48.85], [e, 48.86], [w, 48.86], [w, 48.85]]],
                    },
                }
                for cell, w, e in (("PARIS-W", 2.34, 2.35), ("PARIS-E", 2.35, 2.36))
            ],
        }
        imported = admin.put("/api/grids", json=paris, params={"force": "true"})
        assert imported.status_code == 200, imported.text
        swapped = _track_at([(2.3450, 48.8550), (2.3455, 48.8552)])  # (lon, lat) written as (lat, lon)
        sent = upload_with_track(
            device,
            still_video(tmp_path / "b.avi", 12),
            ("swapped.gpx", swapped, "application/gpx+xml"),
            "2026-11-20T09:00:00+08:00",
            name="b.avi",
        )
        job = wait_job(device, sent.json()["id"])
        assert (job["status"], job["incidents"]) == ("done", 1), job
        assert job["warning"].startswith("GPS track 'swapped.gpx' passes through no grid cell"), job
        assert job["warning"].endswith(
            "; with latitude and longitude swapped, 2 of its 2 fixes fall in grid cells: the file has them "
            "the wrong way round; if the track is wrong, the footage may be sent again with the right one"
        ), job
        assert len(admin.get("/api/cases").json()["items"]) == 2
        assert admin.get("/api/coverage", params={"since": "2026-11-20T00:00:00Z"}).json()["cells"] == []


def test_footage_whose_track_passed_no_grid_cell_may_be_sent_again_with_the_right_track(
    server: LiveServer, tmp_path: Path
) -> None:
    """A crew sends footage with the wrong GPS track (Shanghai's, for the Hangzhou demo grid): every
    frame is placed, off the grid, the job is done with the off-grid warning and its case filed
    unassigned. Sending the footage again with the right track was a 409 ("a track cannot be ... changed
    on footage already received unless its job failed"), so the case stayed unassigned. Now it is a
    correction, as for a track that placed no frame: a new job, its case in its grid cell, the earlier
    run's case superseded. A track that did pass grid cells still cannot be changed."""
    footage = still_video(tmp_path / "a.avi", 13)
    shanghai = (
        "shanghai_0612.gpx",
        _track_at([(31.2304, 121.4737), (31.2306, 121.4739)]),
        "application/gpx+xml",
    )
    files = {"file": ("a.avi", footage, "video/x-msvideo")}
    start = {"start_time": "2026-11-20T09:00:00+08:00"}
    with server.client("device") as device, server.client("operator") as op:
        first = upload_with_track(device, footage, shanghai, "2026-11-20T09:00:00+08:00", name="a.avi")
        assert first.status_code == 201, first.text
        job = wait_job(device, first.json()["id"])
        assert (job["status"], job["incidents"], job["track_off_grid"]) == ("done", 1, True), job
        assert job["warning"].startswith("GPS track 'shanghai_0612.gpx' passes through no grid cell"), job
        assert job["warning"].endswith(
            "if the track is wrong, the footage may be sent again with the right one"
        )
        (old,) = op.get("/api/cases").json()["items"]
        assert old["unassigned"] is True and old["position"] is not None, old

        fixed = device.post("/api/uploads", files={**files, "track": GPX_PART}, data=start)
        assert fixed.status_code == 200, fixed.text  # the upload filed before, a new job for it
        assert fixed.json()["id"] != first.json()["id"] and fixed.json()["upload"]["revision"] == 1, (
            fixed.text
        )
        job = wait_job(device, fixed.json()["id"])
        assert (job["status"], job["incidents"], job["warning"]) == ("done", 1, None), job
        assert job["track_off_grid"] is False and job["upload"]["track_filename"] == "patrol.gpx", job
        (new,) = [c for c in op.get("/api/cases").json()["items"] if c["id"] != old["id"]]
        assert new["grid_cell"] == "DEMO-QINGBO-03" and new["status"] == "pending_review", new
        gone = op.get(f"/api/cases/{old['id']}").json()
        assert gone["status"] == "rejected" and gone["reject_reason"] == "duplicate", gone
        note = gone["history"][-1]["note"]
        assert note.startswith("superseded: the footage was sent again with a corrected") and (
            f"(job {fixed.json()['id']})" in note
        ), note
        cells = op.get("/api/coverage", params={"since": "2026-11-20T00:00:00Z"}).json()["cells"]
        assert [c["cell_id"] for c in cells] == ["DEMO-QINGBO-03"], cells

        # its track passed a grid cell now: another track is refused as before, naming the track
        again = device.post("/api/uploads", files={**files, "track": shanghai}, data=start)
        assert again.status_code == 409, again.text
        assert "a track cannot be added to or changed on footage already received" in again.text
        assert (
            device.get(f"/api/jobs/{fixed.json()['id']}").json()["upload"]["track_filename"] == "patrol.gpx"
        )
