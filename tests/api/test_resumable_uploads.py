"""Resumable uploads (/api/upload-sessions) over a real HTTP server: footage sent in chunks, a
connection dropped mid-chunk, the offset asked and the rest sent, filed as one POST /api/uploads files
it; wrong offsets, wrong hashes, other callers and expired sessions."""

from __future__ import annotations

import errno
import hashlib
import logging
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from api.jobs import resumable
from api.storage.db import utcnow
from api.storage.models import Job, Upload, UploadSession
from tests.api.api_testkit import LiveServer, fake_pipeline, footage, tmpfs, wait_job

CSV_TRACK = b"time,lat,lon\n0,30.2741,120.1551\n"
START = "2026-11-20T09:00:00+08:00"


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        pipeline=fake_pipeline(),
        config_loader=lambda: None,
        settings={"worker_poll_s": 0.05, "max_upload_bytes": 8 * 1024**2},
    )


def _open(client: httpx.Client, video: bytes, **fields: Any) -> httpx.Response:
    body = {"size": len(video), "sha256": hashlib.sha256(video).hexdigest(), **fields}
    return client.post("/api/upload-sessions", json=body)


def _chunk(client: httpx.Client, session_id: str, offset: int, data: bytes) -> httpx.Response:
    return client.patch(
        f"/api/upload-sessions/{session_id}",
        params={"offset": offset},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def _drop_mid_chunk(server: LiveServer, session_id: str, offset: int, data: bytes) -> None:
    """A chunk whose connection drops half way: its head sent, then the socket closed."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                f"PATCH /api/upload-sessions/{session_id}?offset={offset} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {server.tokens['device']}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: len(data) // 2]
        )
        time.sleep(0.3)


def _left_in(uploads: Path) -> list[str]:
    return sorted(p.name for p in uploads.glob(".*") if p.is_file())


def test_chunks_with_a_dropped_connection_file_the_same_upload_and_job_as_one_post(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    video = footage("sent in chunks", 1_000_000)
    size = len(video)
    with server.client("device") as device:
        opened = _open(device, video, filename="patrol.mp4", start_time=START)
        assert opened.status_code == 201, opened.text
        session = opened.json()
        sid = session["id"]
        assert (session["offset"], session["size"], session["filename"]) == (0, size, "patrol.mp4")
        assert _chunk(device, sid, 0, video[:300_000]).json()["offset"] == 300_000
        # the same chunk again (its answer was lost): 409 with the offset the server has
        again = _chunk(device, sid, 0, video[:300_000])
        assert again.status_code == 409 and again.json()["offset"] == 300_000, again.text
        assert again.json()["errors"][0]["field"] == "offset"
        ahead = _chunk(device, sid, 600_000, video[600_000:])
        assert ahead.status_code == 409 and ahead.json()["offset"] == 300_000
        # the network drops half way through the next chunk; the sender stops, asks, and goes on
        _drop_mid_chunk(server, sid, 300_000, video[300_000:700_000])
        deadline = time.monotonic() + 10
        while "disconnected before its body ended" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        asked = device.get(f"/api/upload-sessions/{sid}")
        assert asked.status_code == 200 and asked.json()["offset"] == 300_000, asked.text
        # the reloaded page opens the same footage again: the same session, where it stood
        reopened = _open(device, video, filename="patrol.mp4", start_time=START)
        assert reopened.status_code == 200 and reopened.json()["id"] == sid
        offset = reopened.json()["offset"]
        early = device.post(f"/api/upload-sessions/{sid}/finish")
        assert early.status_code == 409 and early.json()["offset"] == offset, early.text
        while offset < size:
            offset = _chunk(device, sid, offset, video[offset : offset + 256_000]).json()["offset"]
        assert offset == size
        past = _chunk(device, sid, size, b"one more")
        assert past.status_code == 413 and past.json()["errors"][0]["field"] == "chunk", past.text
        done = device.post(
            f"/api/upload-sessions/{sid}/finish", files={"track": ("t.csv", CSV_TRACK, "text/csv")}
        )
        assert done.status_code == 201, done.text
        receipt = done.json()
        assert receipt["upload"]["sha256"] == hashlib.sha256(video).hexdigest()
        assert receipt["upload"]["has_track"] and receipt["upload"]["camera_id"] == "demo-cam-01"
        job = wait_job(device, receipt["id"])
        assert job["status"] == "done" and job["incidents"] == 3, job
        # the session is gone with its bytes; the footage is where one POST puts it
        assert device.get(f"/api/upload-sessions/{sid}").status_code == 404
        uploads = server.services.settings.uploads_dir
        assert _left_in(uploads) == []
        filed = uploads / f"{receipt['upload']['sha256']}.mp4"
        assert filed.read_bytes() == video
        # one POST of the same footage and track: the same upload and job (idempotent on SHA-256)
        one = device.post(
            "/api/uploads",
            files={"file": ("patrol.mp4", video, "video/mp4"), "track": ("t.csv", CSV_TRACK, "text/csv")},
            data={"start_time": START},
        )
        assert one.status_code == 200 and one.json()["id"] == receipt["id"], one.text
        assert one.json()["upload"] == {**receipt["upload"], "revision": 0}
    with server.services.factory() as db:
        assert db.scalar(select(func.count()).select_from(Upload)) == 1
        assert db.scalar(select(func.count()).select_from(Job)) == 1
        upload = db.scalars(select(Upload)).one()
        assert (upload.filename, upload.size, upload.uploaded_by) == ("patrol.mp4", size, "device:van-1")
        assert upload.start_time is not None and upload.start_time.isoformat() == "2026-11-20T01:00:00"


def test_the_same_footage_in_one_post_then_in_chunks_is_the_same_job(server: LiveServer) -> None:
    video = footage("one post first", 200_000)
    with server.client("device") as device:
        first = device.post("/api/uploads", files={"file": ("a.mp4", video, "video/mp4")})
        assert first.status_code == 201, first.text
        sid = _open(device, video).json()["id"]
        assert _chunk(device, sid, 0, video).json()["offset"] == len(video)
        again = device.post(f"/api/upload-sessions/{sid}/finish")
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert _left_in(server.services.settings.uploads_dir) == []


def test_a_wrong_hash_is_422_naming_it_and_nothing_is_stored(server: LiveServer) -> None:
    video = footage("declared", 100_000)
    sent = footage("but these were sent", 100_000)
    with server.client("device") as device:
        sid = _open(device, video).json()["id"]
        assert _chunk(device, sid, 0, sent).status_code == 200
        refused = device.post(
            f"/api/upload-sessions/{sid}/finish", files={"track": ("t.csv", CSV_TRACK, "text/csv")}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "sha256"
        assert hashlib.sha256(sent).hexdigest() in refused.json()["detail"]
        assert device.get(f"/api/upload-sessions/{sid}").status_code == 404
    uploads = server.services.settings.uploads_dir
    assert [p.name for p in uploads.iterdir() if p.is_file()] == []
    with server.services.factory() as db:
        assert db.scalar(select(func.count()).select_from(Upload)) == 0
        assert db.scalar(select(func.count()).select_from(UploadSession)) == 0


def test_a_refused_finish_keeps_the_bytes_to_finish_again(server: LiveServer) -> None:
    video = footage("bad track first", 50_000)
    with server.client("device") as device:
        sid = _open(device, video).json()["id"]
        _chunk(device, sid, 0, video)
        bad = device.post(
            f"/api/upload-sessions/{sid}/finish", files={"track": ("t.json", b'{"a": 1}', "text/csv")}
        )
        assert bad.status_code == 415 and bad.json()["errors"][0]["field"] == "track", bad.text
        assert device.get(f"/api/upload-sessions/{sid}").json()["offset"] == len(video)
        done = device.post(f"/api/upload-sessions/{sid}/finish")
        assert done.status_code == 201, done.text
    assert _left_in(server.services.settings.uploads_dir) == []


def test_another_caller_is_told_there_is_no_such_session(server: LiveServer) -> None:
    video = footage("the device's own", 50_000)
    with server.client("device") as device, server.client("operator") as operator:
        sid = _open(device, video).json()["id"]
        _chunk(device, sid, 0, video[:10_000])
        assert operator.get(f"/api/upload-sessions/{sid}").status_code == 404
        stolen = _chunk(operator, sid, 10_000, video[10_000:])
        assert stolen.status_code == 404 and stolen.json()["errors"][0]["field"] == "upload_session"
        assert operator.post(f"/api/upload-sessions/{sid}/finish").status_code == 404
        assert operator.delete(f"/api/upload-sessions/{sid}").status_code == 404
        # the operator opening the same footage gets a session of its own
        own = _open(operator, video)
        assert own.status_code == 201 and own.json()["id"] != sid
        assert device.get(f"/api/upload-sessions/{sid}").json()["offset"] == 10_000
        assert device.delete(f"/api/upload-sessions/{sid}").json()["offset"] == 10_000
        assert device.get(f"/api/upload-sessions/{sid}").status_code == 404


def test_an_expired_session_is_removed_with_its_bytes(server: LiveServer) -> None:
    uploads = server.services.settings.uploads_dir
    with server.client("device") as device:
        stale = _open(device, footage("left behind", 50_000)).json()["id"]
        _chunk(device, stale, 0, footage("left behind", 50_000)[:20_000])
        quiet = _open(device, footage("asked too late", 50_000)).json()["id"]
        assert len(_left_in(uploads)) == 2
        with server.services.factory() as db:
            db.execute(update(UploadSession).values(touched_at=utcnow() - timedelta(hours=25)))
            db.commit()
        gone = device.get(f"/api/upload-sessions/{quiet}")
        assert gone.status_code == 404 and "expired" in gone.json()["detail"], gone.text
        assert resumable.data_path(uploads, quiet).exists() is False
        # opening any session removes the others that expired
        assert _open(device, footage("a new one", 50_000)).status_code == 201
        assert not resumable.data_path(uploads, stale).exists()
        with server.services.factory() as db:
            assert db.scalar(select(func.count()).select_from(UploadSession)) == 1
            db.execute(update(UploadSession).values(touched_at=utcnow() - timedelta(hours=25)))
            db.commit()
    # and so does the server's background sweep, with no one asking
    sweep = resumable.UploadSessionSweep(
        server.services.factory, uploads_dir=uploads, expiry=timedelta(hours=24)
    )
    sweep.round()
    assert _left_in(uploads) == []
    with server.services.factory() as db:
        assert db.scalar(select(func.count()).select_from(UploadSession)) == 0


def test_the_server_sweeps_expired_sessions_in_the_background(make_server, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    server = make_server(sqlite_url)
    sweeps = [t for t in server.app.state.background if isinstance(t, resumable.UploadSessionSweep)]
    assert len(sweeps) == 1 and sweeps[0].expiry == timedelta(hours=24)


def test_sizes_are_bounded_and_a_full_disk_is_507(make_server, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    server = make_server(sqlite_url, run_webhooks=False, settings={"max_upload_bytes": 2**60})
    small = make_server(
        sqlite_url, people=False, grid=False, run_webhooks=False, settings={"max_upload_bytes": 4096}
    )
    small.tokens.update(server.tokens)
    sha = hashlib.sha256(b"x").hexdigest()
    with server.client("device") as device, small.client("device") as limited:
        too_big = limited.post("/api/upload-sessions", json={"size": 5000, "sha256": sha})
        assert too_big.status_code == 413 and too_big.json()["errors"][0]["field"] == "size", too_big.text
        full = device.post("/api/upload-sessions", json={"size": 2**52, "sha256": sha})
        assert full.status_code == 507 and full.json()["errors"][0]["field"] == "uploads", full.text
        bad = device.post("/api/upload-sessions", json={"size": 10, "sha256": "not-hex"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("sha256"), bad.text


def test_a_chunk_the_full_disk_refuses_is_507_and_taken_back(
    make_server, sqlite_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A real full disk (a 6 MiB tmpfs as the data folder; skipped without the right to mount): the
    chunk is 507 naming the uploads, the session keeps what it had, and goes on once there is room."""
    video = footage("onto a full disk", 2_000_000)
    with tmpfs(tmp_path / "data", 6) as data:
        server = make_server(sqlite_url, run_webhooks=False)
        with server.client("device") as device:
            sid = _open(device, video).json()["id"]
            assert _chunk(device, sid, 0, video[:500_000]).json()["offset"] == 500_000
            filler = data / "filler"
            with filler.open("wb", buffering=0) as fh:
                with pytest.raises(OSError) as full:
                    while True:
                        fh.write(b"\0" * 65536)
                assert full.value.errno == errno.ENOSPC
            refused = _chunk(device, sid, 500_000, video[500_000:])
            assert refused.status_code == 507, refused.text
            assert refused.json()["detail"] == "uploads: no space left on device"
            assert device.get(f"/api/upload-sessions/{sid}").json()["offset"] == 500_000
            assert resumable.data_path(server.services.settings.uploads_dir, sid).stat().st_size == 500_000
            filler.unlink()
            assert _chunk(device, sid, 500_000, video[500_000:]).json()["offset"] == len(video)
            done = device.post(f"/api/upload-sessions/{sid}/finish")
            assert done.status_code == 201, done.text


def test_a_session_whose_bytes_were_removed_by_hand_starts_again(server: LiveServer) -> None:
    video = footage("its bytes deleted", 50_000)
    uploads = server.services.settings.uploads_dir
    with server.client("device") as device:
        sid = _open(device, video).json()["id"]
        _chunk(device, sid, 0, video[:20_000])
        resumable.data_path(uploads, sid).unlink()
        lost = _chunk(device, sid, 20_000, video[20_000:])
        assert lost.status_code == 404 and "no longer in the uploads folder" in lost.json()["detail"], (
            lost.text
        )
        again = _open(device, video)
        assert again.status_code == 201 and again.json()["offset"] == 0
        sid = again.json()["id"]
        resumable.data_path(uploads, sid).unlink()
        reopened = _open(device, video)
        assert reopened.status_code == 201 and reopened.json()["id"] != sid
        assert device.post(f"/api/upload-sessions/{sid}/finish").status_code == 404


def test_a_session_keeps_the_footage_s_file_name_fit_to_show(server: LiveServer) -> None:
    """The name a chunked upload is opened with is kept as one POST's is: without its folder, a bell or
    a right-to-left override (the session answered it, and filed the upload under it, as sent)."""
    video = footage("a name with a bell", 4096)
    with server.client("device") as device:
        opened = _open(device, video, filename="/home/crew/patrol\a\u202e4pm.mp4")
        assert opened.status_code == 201, opened.text
        assert opened.json()["filename"] == "patrol4pm.mp4"
