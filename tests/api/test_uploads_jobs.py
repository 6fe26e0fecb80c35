"""Uploads streamed to disk, jobs run by the worker with a fake pipeline, leases and retries."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from api.accounts.accounts import create_device, create_user
from api.accounts.tokens import login
from api.cases.incident import IncidentPayload
from api.jobs import queue
from api.jobs.uploads import MAX_SHOWN_FILENAME, display_filename, sniff_track, sniff_video
from api.jobs.worker import Worker
from api.services import Services
from api.storage.db import utcnow
from api.storage.models import Case, Job, Sighting, Upload
from detect.config import ConfigError
from streams import SourceError
from tests.api.api_testkit import (
    MP4_HEAD,
    Killed,
    LiveServer,
    fake_pipeline,
    footage,
    jpeg_bytes,
    make_settings,
    wait_job,
)
from tests.api.test_footage_cut_short import pipeline as decoding_pipeline
from tests.api.test_gps_tracks import _multipart, worker_server
from tests.streams.footage import write_video


def test_sniffing_tables() -> None:
    assert sniff_video(MP4_HEAD) == "video/mp4"
    assert sniff_video(b"\x1a\x45\xdf\xa3" + b"\x00" * 20 + b"webm") == "video/webm"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == "video/x-msvideo"
    assert sniff_video(b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 10) == "video/mp2t"
    assert sniff_video(b"hello world, not a video") is None
    assert sniff_video(b"\xff\xd8\xff\xe0") is None
    assert sniff_track(b'<?xml version="1.0"?><gpx>') == "application/gpx+xml"
    assert sniff_track(b"$GPRMC,123519,A,4807.038,N") == "text/x-nmea"
    assert sniff_track(b"time,lat,lon\n0,30.1,120.2\n") == "text/csv"
    assert sniff_track(b"\x00\x01\x02\x03") is None
    # BlackVue's .gps: "[ms]" before each sentence, not a JSON array (it was refused as one)
    assert sniff_track(b"[1795219199700]$GPRMC,235959.00,A,3015.8400,N") == "text/x-nmea"
    # a dashcam's event log with a comma in its first line is no CSV track (its job failed on it)
    assert sniff_track(b"2026-11-20 09:00:00 [INFO] power on, firmware 1.2.3\n") is None
    assert sniff_track(b'"Time";"Lat";"Lon"\r\n') == "text/csv"


def test_camcorder_m2ts_is_taken_and_analysed(make_server, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A camcorder's .MTS / .m2ts (MPEG-TS in 192-byte packets) was refused with 415 "not a video
    container we can read (... MPEG-PS/TS)", though `gridpatrol detect` reads it."""
    footage = write_video(tmp_path / "00012.m2ts", frame_count=12, fps=10.0, fourcc="mp4v").read_bytes()
    assert footage[4] == footage[196] == 0x47  # the BDAV packets a camcorder writes
    assert sniff_video(footage[:512]) == "video/mp2t"
    server = worker_server(make_server, sqlite_url, decoding_pipeline)
    with server.client("device") as device:
        receipt = device.post(
            "/api/uploads", files={"file": ("00012.MTS", footage, "application/octet-stream")}
        )
        assert receipt.status_code == 201, receipt.text
        job = wait_job(device, receipt.json()["id"])
    assert (job["status"], job["error"], job["warning"]) == ("done", None, None), job


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        pipeline=fake_pipeline(),
        config_loader=lambda: None,
        settings={"worker_poll_s": 0.05, "max_upload_bytes": 96 * 1024**2},
    )


def test_upload_runs_a_job_into_cases(server: LiveServer) -> None:
    video = footage("good")
    track = b"time,lat,lon\n2026-11-20T01:00:00Z,30.2741,120.1551\n"
    with server.client("device") as device, server.client("admin") as admin:
        r = device.post(
            "/api/uploads",
            files={"file": ("patrol.mp4", video, "video/mp4"), "track": ("t.csv", track, "text/csv")},
            data={"start_time": "2026-11-20T09:00:00+08:00"},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["upload"]["sha256"] == hashlib.sha256(video).hexdigest() and body["upload"]["has_track"]
        job = wait_job(device, body["id"])
        assert job["status"] == "done" and job["progress"] == 1.0 and job["incidents"] == 3, job
        assert admin.get("/api/cases").json()["total"] == 3
        # the same footage again: the same upload and job, no new cases
        again = device.post("/api/uploads", files={"file": ("copy.mp4", video, "video/mp4")})
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        assert admin.get("/api/cases").json()["total"] == 3
        # another device's job is not visible to this device... but admins see it
        assert admin.get(f"/api/jobs/{body['id']}").status_code == 200
        assert admin.get("/api/jobs/999999").status_code == 404


def test_a_device_files_footage_only_as_its_own_camera(server: LiveServer) -> None:
    """The device van-1 is bound to demo-cam-01: the camera_id it sends does not move its footage
    (nor the cases found in it) to another camera, as with its incidents; a person still names one."""
    with server.client("device") as device, server.client("admin") as admin:
        r = device.post(
            "/api/uploads",
            files={"file": ("other.mp4", footage("as-another-camera"), "video/mp4")},
            data={"camera_id": "cam-b"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["upload"]["camera_id"] == "demo-cam-01"
        job = wait_job(device, r.json()["id"])
        assert job["status"] == "done" and job["incidents"] == 3, job
        assert admin.get("/api/cases", params={"camera": "cam-b"}).json()["total"] == 0
        assert admin.get("/api/cases", params={"camera": "demo-cam-01"}).json()["total"] == 3
        by_person = admin.post(
            "/api/uploads",
            files={"file": ("cam-b.mp4", footage("a person names the camera"), "video/mp4")},
            data={"camera_id": "cam-b"},
        )
        assert by_person.status_code == 201, by_person.text
        assert by_person.json()["upload"]["camera_id"] == "cam-b"


def test_corrupt_upload_fails_only_its_own_job(server: LiveServer) -> None:
    with server.client("device") as device, server.client("admin") as admin:
        bad = device.post("/api/uploads", files={"file": ("bad.mp4", footage("CORRUPT"), "video/mp4")}).json()
        good = device.post("/api/uploads", files={"file": ("ok.mp4", footage("fine"), "video/mp4")}).json()
        bad_job, good_job = wait_job(device, bad["id"]), wait_job(device, good["id"])
        assert bad_job["status"] == "failed"
        assert "footage could not be read" in bad_job["error"] and "cannot decode frame 3" in bad_job["error"]
        assert good_job["status"] == "done" and good_job["incidents"] == 3
        assert admin.get("/api/cases").json()["total"] == 3
        assert admin.get("/api/health").status_code == 200
        # the same footage again after its job failed: a new job (a done job is just returned)
        again = device.post("/api/uploads", files={"file": ("bad.mp4", footage("CORRUPT"), "video/mp4")})
        assert again.status_code == 200 and again.json()["id"] != bad["id"]
        assert wait_job(device, again.json()["id"])["status"] == "failed"
        with server.services.factory() as session:
            retried = session.get(Upload, again.json()["upload"]["id"])
            # a plain retry runs with the same inputs: the same revision, so the same incident ids
            assert retried is not None and retried.revision == 0
        same = device.post("/api/uploads", files={"file": ("ok.mp4", footage("fine"), "video/mp4")})
        assert same.json()["id"] == good["id"]
        # sent again with another camera: the fix of a failed job's camera, a conflict for a done one
        wrong = {"camera_id": "cam-typo", "start_time": "2026-11-29T08:00:00+08:00"}
        sent = admin.post(
            "/api/uploads", files={"file": ("x.mp4", footage("CORRUPT-2"), "video/mp4")}, data=wrong
        )
        assert wait_job(admin, sent.json()["id"])["status"] == "failed"
        fixed = {"camera_id": "cam-b", "start_time": "2026-11-29T09:00:00+08:00"}
        again = admin.post(
            "/api/uploads", files={"file": ("x.mp4", footage("CORRUPT-2"), "video/mp4")}, data=fixed
        )
        assert again.status_code == 200 and again.json()["id"] != sent.json()["id"], again.text
        assert again.json()["upload"]["camera_id"] == "cam-b"
        with server.services.factory() as session:
            upload = session.get(Upload, again.json()["upload"]["id"])
            assert upload is not None and upload.start_time == datetime(2026, 11, 29, 1, 0)
            assert upload.revision == 1  # corrected: its incidents get ids of their own
        moved = admin.post(
            "/api/uploads",
            files={"file": ("ok.mp4", footage("fine"), "video/mp4")},
            data={"camera_id": "cam-b"},
        )
        assert moved.status_code == 409 and moved.json()["errors"][0]["field"] == "camera_id", moved.text


def _unbound_van_server(make_server: Any, sqlite_url: str) -> Any:
    """A server with no worker, no people and no grid, and a van bound to no camera (it names one per
    upload), token "van"."""
    server = make_server(sqlite_url, run_worker=False, run_webhooks=False, people=False, grid=False)
    with server.services.factory() as session:
        _, server.tokens["van"] = create_device(session, name="van-unbound")
        session.commit()
    return server


def _sent_then_corrected(server: Any, van: Any, note: str) -> tuple[Any, Any]:
    """Footage sent for camera cam-typo, its job failed, then sent again for cam-b (a corrected resend:
    revision 1); the two answers."""
    files = {"file": ("x.mp4", footage(note), "video/mp4")}
    first = van.post("/api/uploads", files=files, data={"camera_id": "cam-typo"})
    assert first.status_code == 201, first.text
    with server.services.factory() as session:
        job = session.get(Job, first.json()["id"])
        assert job is not None
        job.status = queue.JobStatus.FAILED
        session.commit()
    corrected = van.post("/api/uploads", files=files, data={"camera_id": "cam-b"})
    assert corrected.status_code == 200, corrected.text
    return first, corrected


def test_a_job_shows_the_revision_it_runs_for_and_its_upload_s(make_server: Any, sqlite_url: str) -> None:
    """A job's JSON (the upload's receipt, GET /api/jobs/{id}) carries its revision, 0 for footage as
    first sent, 1 for the run a corrected resend queued, and its upload's current revision, so that the
    earlier job alone tells it was superseded. Before, no answer named either."""
    server = _unbound_van_server(make_server, sqlite_url)
    with server.client("van") as van:
        first, corrected = _sent_then_corrected(server, van, "corrected later")
        jobs = [van.get(f"/api/jobs/{sent.json()['id']}").json() for sent in (first, corrected)]
    assert (first.json()["revision"], first.json()["upload"]["revision"]) == (0, 0), first.text
    assert corrected.json()["revision"] == 1, corrected.text
    assert [(job["revision"], job["upload"]["revision"]) for job in jobs] == [(0, 1), (1, 1)], jobs


def test_the_uploads_list_and_a_runner_s_claim_show_the_revision(make_server: Any, sqlite_url: str) -> None:
    """After a corrected resend, GET /api/uploads lists the upload at revision 1 (a crew sees it was
    corrected), and a runner claiming the corrected job is told the revision it runs for and the
    upload's. Before, neither answer named a revision."""
    server = _unbound_van_server(make_server, sqlite_url)
    with server.services.factory() as session:
        _, server.tokens["runner"] = create_device(session, name="runner-r", runner=True)
        create_user(session, username="admin", password="password-admin", role="admin")
        session.commit()
    server.tokens["admin"] = login(
        server.services.factory, username="admin", password="password-admin", ttl_h=1
    )
    with server.client("van") as van, server.client("admin") as admin:
        _sent_then_corrected(server, van, "listed corrected")
        (listed,) = admin.get("/api/uploads").json()["items"]
    assert (listed["revision"], listed["camera_id"]) == (1, "cam-b"), listed
    with server.client("runner") as runner:
        claimed = runner.post("/api/runner/jobs/claim").json()["job"]
    assert claimed["id"] == listed["job_id"], claimed
    assert claimed["revision"] == claimed["upload"]["revision"] == 1, claimed
    assert claimed["upload"]["id_salt"] == queue.upload_id_salt(1), claimed


def test_a_retry_after_a_failed_corrected_run_keeps_that_run_s_cases(
    make_server: Any, sqlite_url: str
) -> None:
    """A corrected run (revision 1) that failed after filing two cases, then the footage sent again
    unchanged (a plain retry: revision 1 still, the same incident ids): the failed attempt's cases are
    the retry's own, and stay under review; only the first, uncorrected run's are superseded. Before,
    any job with a later one of the upload was an earlier run once the upload was corrected: the
    failed attempt's cases were rejected as duplicates, and the retry's same incidents, answered with
    those cases, filed none in their place."""
    runs: list[str] = []

    def flaky(input: Path, config: Any, *, out_dir: Path, source_id: str, id_salt: str = "", **_: Any) -> Any:
        runs.append(id_salt)
        for i in range(3):
            if i == 2 and len(runs) < 3:  # the first two runs fail after two incidents
                raise SourceError(f"{input.name}: cannot decode frame {i}")
            image = jpeg_bytes(f"{source_id}{id_salt}-{i}")
            (out_dir / f"inc{i}.jpg").write_bytes(image)
            yield IncidentPayload.model_validate(
                {
                    "id": f"{source_id}{id_salt}:{i}",
                    "category": "illegal_parking",
                    "source_id": "cam",
                    "first_seen_wall": "2026-11-20T09:00:00+08:00",
                    "position": [30.2741 + i * 0.001, 120.1551],
                    "evidence": [
                        {
                            "role": "annotated",
                            "path": f"inc{i}.jpg",
                            "sha256": hashlib.sha256(image).hexdigest(),
                        }
                    ],
                }
            )

    server = make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        pipeline=flaky,
        config_loader=lambda: None,
        settings={"worker_poll_s": 0.05},
    )
    files = {"file": ("x.mp4", footage("flaky"), "video/mp4")}
    with server.client("admin") as admin:
        sends = [{"camera_id": "cam-typo"}, {"camera_id": "cam-b"}, {"camera_id": "cam-b"}]
        jobs = []
        for data in sends:
            sent = admin.post("/api/uploads", files=files, data=data)
            assert sent.status_code in (200, 201), sent.text
            jobs.append(wait_job(admin, sent.json()["id"]))
        assert [job["status"] for job in jobs] == ["failed", "failed", "done"], jobs
        assert runs == ["", "revision-1", "revision-1"] and jobs[2]["warning"] is None, jobs
        cases = sorted(admin.get("/api/cases").json()["items"], key=lambda c: c["id"])
    assert [(c["camera_id"], c["status"]) for c in cases] == [
        ("cam-typo", "rejected"),
        ("cam-typo", "rejected"),
        ("cam-b", "pending_review"),
        ("cam-b", "pending_review"),
        ("cam-b", "pending_review"),
    ], cases
    with server.services.factory() as session:
        revisions = [job.revision for job in session.scalars(select(Job).order_by(Job.id))]
    assert revisions == [0, 1, 1]


def test_an_upload_cut_off_mid_body_keeps_nothing_and_logs_no_error(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = server.url.removeprefix("http://").split(":")
    body = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="cut.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n" + footage("cut off", 2_000_000) + b"\r\n--x--\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /api/uploads HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {server.tokens['device']}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "disconnected before its body ended" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "disconnected before its body ended" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    uploads = server.services.settings.uploads_dir
    assert not uploads.exists() or [p for p in uploads.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ("巡查报告.pdf", "巡查报告.pdf"),
        ("C:\\fakepath\\IMG_0001.jpg", "IMG_0001.jpg"),  # a Windows browser's path: its last part
        ("", "the file"),
    ],
)
def test_footage_of_another_type_is_refused_naming_the_file(
    server: LiveServer, sent: str, named: str
) -> None:
    """A PDF or a picture sent as footage was refused with 415 "not a video container we can read",
    naming no file: a crew member who sent several could not tell which. The reason now names it."""
    data = b"\xff\xd8\xff\xe0\x00\x10JFIF" if sent.endswith(".jpg") else b"%PDF-1.7\n%%EOF\n"
    body, content_type = _multipart([("file", sent.encode(), data)])
    with server.client("operator") as op:
        r = op.post("/api/uploads", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    reason = f"{named}: not a video container we can read (MP4, MOV, MKV/WebM, AVI, FLV, MPEG-PS/TS/M2TS)"
    assert r.json()["errors"] == [{"field": "file", "reason": reason}]
    assert sorted(p.name for p in server.services.settings.uploads_dir.iterdir()) == []


def test_upload_rejections_name_the_field(server: LiveServer) -> None:
    with server.client("device") as device:
        r = device.post("/api/uploads", files={"file": ("x.mp4", b"this is not a video at all", "video/mp4")})
        assert r.status_code == 415 and r.json()["errors"][0]["field"] == "file"
        r = device.post("/api/uploads", files={"track": ("t.csv", b"a,b\n", "text/csv")})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
        r = device.post(
            "/api/uploads",
            files={"file": ("v.mp4", footage("t"), "video/mp4"), "track": ("t.bin", b"\x00\x01\x02", "x/y")},
        )
        assert r.status_code == 415 and r.json()["errors"][0]["field"] == "track"
        r = device.post(
            "/api/uploads", files={"file": ("v.mp4", footage("s"), "video/mp4")}, data={"start_time": "soon"}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start_time"
        r = device.post("/api/uploads", content=b"raw", headers={"Content-Type": "video/mp4"})
        assert r.status_code == 415 and r.json()["errors"][0]["field"] == "body"
        # a declared size over the limit is refused before the body is read
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (
                    f"POST /api/uploads HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {server.tokens['device']}\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000000000\r\n\r\n"
                ).encode()
            )
            reply = b""
            while b'"reason"' not in reply and (chunk := sock.recv(65536)):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413") and b'"field":"file"' in reply
        r = device.post("/api/uploads", files={"other": ("x", b"y", "a/b")})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "other"
    leftovers = list(server.services.settings.uploads_dir.glob(".incoming-*"))
    assert leftovers == []


def test_size_limit_and_streaming_memory(make_server, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    server = make_server(
        sqlite_url, run_webhooks=False, settings={"max_upload_bytes": 48 * 1024**2}, grid=False
    )

    def body(total: int) -> Iterator[bytes]:
        boundary = "gpboundary"
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode() + MP4_HEAD
        chunk = b"\x00" * (1024 * 1024)
        for _ in range(total // len(chunk)):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": "multipart/form-data; boundary=gpboundary"}
    with server.client("device") as device:
        tracemalloc.start()
        try:
            ok = device.post("/api/uploads", content=body(40 * 1024 * 1024), headers=headers)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ok.status_code == 201, ok.text
        assert ok.json()["upload"]["size"] == 40 * 1024 * 1024 + len(MP4_HEAD)
        # the 40 MiB body never sat in memory (client chunks + parser buffers only)
        assert peak < 16 * 1024 * 1024, peak
        too_big = device.post("/api/uploads", content=body(60 * 1024 * 1024), headers=headers)
        assert too_big.status_code == 413 and too_big.json()["errors"][0]["field"] == "file"
    assert list(server.services.settings.uploads_dir.glob(".incoming-*")) == []


def _queue_upload(services: Services, tmp_path: Path, tag: str) -> int:
    from api.accounts.accounts import SYSTEM
    from api.jobs.uploads import ReceivedFile, ReceivedForm, register_upload

    data = footage(tag)
    path = tmp_path / f"{tag}.part"
    path.write_bytes(data)
    form = ReceivedForm(
        files={
            "file": ReceivedFile(
                "file", f"{tag}.mp4", path, len(data), hashlib.sha256(data).hexdigest(), data[:512]
            )
        }
    )
    with services.factory() as session:
        result = register_upload(session, form, uploads_dir=services.settings.uploads_dir, principal=SYSTEM)
        session.commit()
        return result.job.id


def kill_midway(services: Services, settings: Any, **pipeline: Any) -> None:
    """One attempt of the queued job by a worker that dies after filing two of its four incidents,
    leaving its lease to lapse (`pipeline`: fake_pipeline's other arguments)."""
    dying = Worker(
        services.factory,
        settings,
        pipeline=fake_pipeline(4, die_after=2, **pipeline),
        config_loader=lambda: None,
    )
    with pytest.raises(Killed):
        dying.run_once()


def _lapse_lease(services: Services, job_id: int) -> None:
    """The dead worker's lease runs out now (set in the row: a short real lease raced a loaded machine,
    lapsing before the test could see it held)."""
    with services.factory() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_dead_worker_job_is_retried_without_duplicates(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, job_lease_s=30, worker_poll_s=0.05)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path, "dies")
        calls: list[str] = []
        kill_midway(services, settings, calls=calls)
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert job.status == "running" and job.attempts == 1
            assert session.query(Sighting).count() == 2
        # while the dead worker's lease holds, nobody takes the job
        healthy = Worker(
            services.factory, settings, pipeline=fake_pipeline(4, calls=calls), config_loader=lambda: None
        )
        assert healthy.run_once() is False
        _lapse_lease(services, job_id)
        assert healthy.run_once() is True
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert (job.status, job.attempts, job.incidents) == ("done", 2, 4)
            assert session.query(Sighting).count() == 4
            assert session.query(Case).count() == 4
        assert calls[0] == calls[1]  # same source id both times: deterministic incident ids
    finally:
        services.close()


def test_a_retried_job_with_other_numbers_keeps_the_first_filing(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt after a dead worker's makes the same incident ids with other numbers (another model,
    a detector not bit-for-bit repeatable): the service refuses those as conflicts, the worker logs
    each and goes on, the job is done and the first attempt's sightings stand unchanged."""
    settings = make_settings(tmp_path, sqlite_url, job_lease_s=0.3, worker_poll_s=0.05)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path, "renumbered")
        kill_midway(services, settings)
        with services.factory() as session:
            first = list(session.scalars(select(Sighting.incident_json).order_by(Sighting.id)))
        assert len(first) == 2

        def other_numbers(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for incident in fake_pipeline(4)(*args, **kwargs):
                yield incident.model_copy(update={"confidence_median": 0.55})

        healthy = Worker(services.factory, settings, pipeline=other_numbers, config_loader=lambda: None)
        time.sleep(0.4)
        with caplog.at_level(logging.WARNING, logger="api.jobs.worker"):
            assert healthy.run_once() is True
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert (job.status, job.attempts, job.incidents) == ("done", 2, 4)
            stored = list(session.scalars(select(Sighting.incident_json).order_by(Sighting.id)))
        assert stored[:2] == first and len(stored) == 4
        assert [json.loads(text)["confidence_median"] for text in stored] == [0.0, 0.0, 0.55, 0.55]
        conflicts = [r.getMessage() for r in caplog.records if "first filing is kept" in r.getMessage()]
        assert len(conflicts) == 2 and all("confidence_median" in text for text in conflicts)
    finally:
        services.close()


def test_job_gives_up_after_max_attempts(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, job_lease_s=0.05, job_max_attempts=2)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path, "always-dies")
        worker = Worker(
            services.factory, settings, pipeline=fake_pipeline(3, die_after=0), config_loader=lambda: None
        )
        for _ in range(2):
            with pytest.raises(Killed):
                worker.run_once()
            time.sleep(0.1)
        assert worker.run_once() is False
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert job.status == "failed" and "gave up after 2 attempts" in job.error
    finally:
        services.close()


def test_lease_claim_is_exclusive(tmp_path: Path, db_url: str) -> None:
    services = Services.build(make_settings(tmp_path, db_url))
    try:
        _queue_upload(services, tmp_path, "one")
        with services.factory() as s1, services.factory() as s2:
            first = queue.claim_next(s1, owner="w1", lease_s=60, max_attempts=3)
            second = queue.claim_next(s2, owner="w2", lease_s=60, max_attempts=3)
        assert first is not None and second is None
        with services.factory() as session:
            assert not queue.heartbeat(session, job_id=first.job_id, owner="w2", lease_s=60, progress=0.5)
            assert queue.heartbeat(session, job_id=first.job_id, owner="w1", lease_s=60, progress=0.5)
            assert session.get(Job, first.job_id).progress == 0.5
    finally:
        services.close()


def test_missing_pipeline_fails_the_job_clearly(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    services = Services.build(settings)
    try:
        job_id = _queue_upload(services, tmp_path, "nopipe")

        def broken_config() -> Any:
            raise ConfigError("configs/site.yaml: model.weights: no such file")

        worker = Worker(services.factory, settings, pipeline=fake_pipeline(), config_loader=broken_config)
        assert worker.run_once()
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert job.status == "failed" and job.error.startswith("site config:")
        assert json.dumps(job.error)
    finally:
        services.close()


def test_a_full_disk_during_a_job_is_named_not_a_bug(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The pipeline's write fails for want of space (ENOSPC, as a full jobs or evidence folder gives it):
    the job fails saying so and what to do, one log line and no traceback logged as a bug."""
    import errno

    settings = make_settings(tmp_path, sqlite_url)
    services = Services.build(settings)
    full = tmp_path / "jobs" / "evidence" / "a.jpg"

    def no_space(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise OSError(errno.ENOSPC, "No space left on device", str(full))
        yield

    try:
        job_id = _queue_upload(services, tmp_path, "fulldisk")
        worker = Worker(services.factory, settings, pipeline=no_space, config_loader=lambda: None)
        with caplog.at_level(logging.WARNING):
            assert worker.run_once()
        with services.factory() as session:
            job = session.get(Job, job_id)
            assert job.status == "failed"
            said = f"no space left on device writing {full}: free space, then send the footage again"
            assert job.error == said
        assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    finally:
        services.close()


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("semicolons.csv", b"time;lat;lon\n2026-12-01T08:00:00+08:00;31.2;121.4\n", "text/csv"),
        ("tabs.csv", b"time\tlat\tlon\n2026-12-01T08:00:00+08:00\t31.2\t121.4\n", "text/csv"),
        ("utf16.csv", "time,lat,lon\n2026-12-01T08:00:00+08:00,31.2,121.4\n".encode("utf-16"), "text/csv"),
        (
            "commented.gpx",
            b"<!-- exported by a phone app -->\n<gpx><trk><trkseg>"
            b'<trkpt lat="31.2" lon="121.4"><time>2026-12-01T00:00:00Z</time></trkpt>'
            b"</trkseg></trk></gpx>",
            "application/gpx+xml",
        ),
        (  # Excel on a Chinese Windows saves CSV in GBK (415 before when a GBK note came early)
            "excel.csv",
            "time,lat,lon,备注\n2026-12-01T08:00:00+08:00,31.2,121.4,北山街\n".encode("gbk"),
            "text/csv",
        ),
        (  # a Chinese logger app's header, saved by Excel in GBK (415 before: no time, lat or lon column)
            "定位轨迹.csv",
            "序号,定位时间,纬度,经度,海拔(m),速度(km/h),方向\n"
            "1,2026-12-01 08:00:00,31.2,121.4,5,36,90\n".encode("gbk"),
            "text/csv",
        ),
        (  # names with their unit, a date and time in one column
            "units.csv",
            b"Date Time,Latitude (\xc2\xb0),Longitude (\xc2\xb0),Speed (km/h)\n"
            b"2026-12-01 08:00:00,31.2,121.4,36\n",
            "text/csv",
        ),
        (  # a GPX that declares its encoding
            "gbk.gpx",
            '<?xml version="1.0" encoding="GBK"?>\n<gpx><trk><name>西湖巡逻</name><trkseg>'.encode("gbk")
            + b'<trkpt lat="31.2" lon="121.4"><time>2026-12-01T00:00:00Z</time></trkpt>'
            b"</trkseg></trk></gpx>",
            "application/gpx+xml",
        ),
        (
            "header.nmea",
            b"# logger v2, serial 1234\n$GPRMC,080000.00,A,3015.0000,N,12008.4000,E,0.0,0.0,011226,,,A*58\n",
            "text/x-nmea",
        ),
        (  # BlackVue: the Unix time in milliseconds the line was written at before each sentence
            "20261121_075959_NF.gps",
            b"[1795219199700]$GPRMC,235959.00,A,3015.8400,N,12008.8800,E,10.5,45.0,201126,,,A*5C\n"
            b"[1795219199700]$GPVTG,45.0,T,,M,10.5,N,19.4,K,A*34\n",
            "text/x-nmea",
        ),
        (  # a Novatek dashcam's NMEA log
            "FILE0001.LOG",
            b"$GNRMC,080000.00,A,3015.0000,N,12008.4000,E,0.0,,011226,,,A*68\r\n",
            "text/x-nmea",
        ),
    ],
)
def test_every_track_the_reader_reads_is_taken(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    """The upload's sniffing agrees with streams.gps: what load_track reads is not refused with 415."""
    from streams.gps import load_track

    path = tmp_path / name
    path.write_bytes(data)
    assert len(load_track(path).fixes) == 1
    assert sniff_track(data[:4096]) == kind


NOT_A_TRACK = (
    "not a GPS track; tracks read: GPX with timed points, NMEA 0183 RMC/GGA sentences (.nmea/.log/.txt, a "
    "BlackVue .gps), or CSV with a time,lat,lon (or 时间,纬度,经度) header, or date,time,lat,lon with the "
    "day in its own column"
)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # a dashcam's event log chosen as its GPS log: taken as a CSV, its job failed on the header
        ("EVENT0001.log", b"2026-12-01 08:00:00 [INFO] power on, firmware 1.2.3\n"),
        ("track.json", b'[{"time": "2026-12-01T00:00:00Z", "lat": 31.2, "lon": 121.4}]'),
        ("geo.json", b'{"type": "FeatureCollection", "features": []}'),
        (
            "route.kml",
            b'<?xml version="1.0"?>\n<kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>',
        ),
    ],
)
def test_a_track_in_a_format_not_read_is_refused_on_upload(
    server: LiveServer, name: str, data: bytes
) -> None:
    """JSON sniffed as CSV, KML as GPX: taken with 201, their jobs then failed on a missing time column or
    "no fixes with time"; now a 415 naming the track's file and the formats read, and nothing is kept."""
    with server.client("device") as device:
        r = device.post(
            "/api/uploads",
            files={
                "file": ("v.mp4", footage("fmt-" + name), "video/mp4"),
                "track": (name, data, "text/plain"),
            },
        )
        assert r.status_code == 415, r.text
        assert r.json()["errors"] == [{"field": "track", "reason": f"{name}: {NOT_A_TRACK}"}]
    assert sorted(p.name for p in server.services.settings.uploads_dir.iterdir()) == []


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_upload_page_names_the_csv_tracks_read_as_the_415_does(lang: str) -> None:
    """The page's word for a dropped file that is neither footage nor a track said only "CSV", and the
    415 only "a time,lat,lon header", though a CSV with the day in its own date column is read too."""
    from api.http.i18n import Translator

    shown = Translator(lang)("upload.drop.unknown", names="route.kml")
    assert (
        "route.kml" in shown
        and "time,lat,lon" in shown
        and "date,time,lat,lon" in shown
        and "时间,纬度,经度" in shown
    )


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_upload_page_s_track_field_names_the_csv_tracks_read(server: LiveServer, lang: str) -> None:
    """The GPS track field's label said only "CSV", though a CSV with the day in its own date column is
    read too (the 415 and the drop message said so): its hint, tied to the field, says it in the 415's
    words."""
    import html

    from api.http.cookies import SESSION_COOKIE
    from api.jobs.uploads import TRACK_FORMATS_READ

    cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": lang}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as browser:
        page = browser.get("/upload")
    assert page.status_code == 200, page.text[:300]
    slot = page.text.split('id="track-hint"')[1]
    hint = html.unescape(slot.split(">", 1)[1].split("</span>")[0])
    assert 'aria-describedby="track-hint"' in slot.split("</div>")[0]
    assert "time,lat,lon" in hint and "date,time,lat,lon" in hint and "GPX" in hint and "NMEA" in hint
    assert "时间,纬度,经度" in hint  # a Chinese logger app's header is read too
    if lang == "en":
        assert TRACK_FORMATS_READ.split(", or ", 1)[1] in hint  # "CSV with a time,lat,lon header, or ..."


def test_a_text_field_sent_twice_is_refused(server: LiveServer) -> None:
    """Two camera_ids (or start_times) in one form: the last one silently won before."""
    with server.client("operator") as operator:
        for name, values in (("camera_id", ("demo-cam-01", "demo-cam-02")), ("start_time", ("a", "b"))):
            r = operator.post(
                "/api/uploads",
                files=[
                    ("file", ("v.mp4", footage("twice-" + name), "video/mp4")),
                    *((name, (None, value)) for value in values),
                ],
            )
            assert r.status_code == 422, r.text
            assert r.json()["errors"] == [{"field": name, "reason": "sent more than once"}]
    assert list(server.services.settings.uploads_dir.glob("*")) == []


def test_a_runner_asking_for_the_track_of_footage_sent_without_one_is_told_so(
    make_server: Any, sqlite_url: str
) -> None:
    """Footage sent without a GPS track: the job's track is a 404 saying none came with it; it said
    the file was missing, as if the service had lost one."""
    server = make_server(sqlite_url, run_webhooks=False)
    with server.services.factory() as session:
        _, server.tokens["runner"] = create_device(session, name="runner-t", runner=True)
        session.commit()
    with server.client("device") as device, server.client("runner") as runner:
        sent = device.post("/api/uploads", files={"file": ("a.mp4", footage("no track"), "video/mp4")})
        assert sent.status_code == 201, sent.text
        job = runner.post("/api/runner/jobs/claim").json()["job"]
        assert job["upload"]["has_track"] is False, job
        r = runner.get(f"/api/runner/jobs/{job['id']}/track", headers={"X-Job-Lease": job["lease"]})
        assert r.status_code == 404, r.text
        [error] = r.json()["errors"]
        assert error == {"field": "job_id", "reason": "no GPS track came with the job's footage"}


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("drive_0612.gpx", "drive_0612.gpx"),
        ("C:\\fakepath\\drive_0612.gpx", "drive_0612.gpx"),  # a browser's fake Windows path
        ("/home/crew/drive_0612.gpx", "drive_0612.gpx"),
        ("drive\n0612\r\t.gpx", "drive0612.gpx"),  # a newline would forge a log line
        ("\x1b[31mdrive.gpx", "[31mdrive.gpx"),  # a terminal's colour escape loses its ESC
        ("drive\u202expg.exe", "drivexpg.exe"),  # a right-to-left override would show it as 'exe.gpx'
        ("  drive.gpx  ", "drive.gpx"),
        ("行车轨迹.gpx", "行车轨迹.gpx"),
        ("x" * 300 + ".gpx", "x" * (MAX_SHOWN_FILENAME - 5) + "\u2026.gpx"),  # cut before its extension
        ("y" * 300, "y" * (MAX_SHOWN_FILENAME - 1) + "\u2026"),
        ("C:\\crew\\", None),  # a folder, no name
        ("\x00\x07", None),
        ("", None),
        (None, None),
    ],
)
def test_a_sent_file_name_is_fit_to_show(sent: str | None, shown: str | None) -> None:
    assert display_filename(sent) == shown
    assert shown is None or len(shown) <= MAX_SHOWN_FILENAME


def test_the_footage_s_file_name_is_kept_fit_to_show(server: LiveServer) -> None:
    """The footage's own file name was stored as sent but for its folder: a bell or a right-to-left
    override in it (which shows the rest of the name reversed) reached the upload listing, the job's
    messages and the pages. Now it is kept as the GPS track's name is: without its
    folder, control or format characters."""
    sent = "C:\\crew\\patrol\a_0612\u202e.mp4"
    body, content_type = _multipart([("file", sent.encode(), footage("a crew's name"))])
    with server.client("device") as device, server.client("operator") as operator:
        r = device.post("/api/uploads", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 201, r.text
        job = wait_job(device, r.json()["id"])
        assert job["status"] == "done", job
        (listed,) = operator.get("/api/uploads").json()["items"]
        assert listed["filename"] == "patrol_0612.mp4"
    with server.services.factory() as session:
        assert session.scalars(select(Upload.filename)).one() == "patrol_0612.mp4"


@pytest.mark.parametrize(
    "cell",
    [
        "Time",
        "时间",
        "定位时间 (UTC+8)",
        "date time",
        "Latitude (°)",
        "纬度（度）",
        "LNG",
        "经度",
        "speed",
        "海拔",
    ],
)
def test_the_upload_check_knows_the_csv_track_columns_streams_gps_reads(cell: str) -> None:
    """api.jobs.uploads may not import streams, so it keeps its own copy of the CSV track's time,
    latitude and longitude column names and of how a header cell is matched: the copy is the same
    names, and a header cell is a track column to both or to neither."""
    from api.jobs import uploads
    from streams import gps

    assert {*gps.TIME_COLUMNS, *gps.LAT_COLUMNS, *gps.LON_COLUMNS} == uploads._TRACK_COLUMNS
    name, _unit = gps._column_name(cell.strip().lower())
    read = name in uploads._TRACK_COLUMNS
    assert (sniff_track(f"{cell},x\n1,2\n".encode()) == "text/csv") is read
