"""What the service answered for is on disk: a power cut after a 201 cannot lose the incident (the
runner, told 201, has already dropped its spooled copy) nor leave its case naming an evidence file
that was never flushed. SQLite commits with synchronous=FULL (PostgreSQL's default commit is
durable already); evidence is on disk before the case that references it is committed. The local
store fsyncs each file and its folders; the incident routes flush a request's files together
before ingest; a failed flush is a 503/507 naming the evidence store, and nothing is recorded."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.cases import checkpoints
from api.errors import ServiceFault, StorageFull
from api.storage import disk
from api.storage.db import durability_warnings, make_engine
from api.storage.evidence_store import EvidenceStore
from api.storage.models import Case, Sighting
from tests.api.api_testkit import PG_URL, LiveServer, footage, incident_json, jpeg_bytes, post_incident
from tests.api.test_incident_batch import batch_parts, post_batch


def test_sqlite_commits_are_flushed_to_disk(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        assert durability_warnings(engine) == []
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, not NORMAL (1)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_settings_that_lose_commits_are_named() -> None:
    if not PG_URL:
        pytest.skip("GRIDPATROL_TEST_POSTGRES_URL is not set")
    engine = make_engine(PG_URL)
    try:
        assert durability_warnings(engine) == []  # the server's defaults are durable
    finally:
        engine.dispose()
    sep = "&" if "?" in PG_URL else "?"
    engine = make_engine(f"{PG_URL}{sep}options=-csynchronous_commit%3Doff")
    try:
        (warning,) = durability_warnings(engine)
        assert "synchronous_commit is off" in warning
    finally:
        engine.dispose()


def _fsynced_inodes(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The inodes os.fsync is called on from now (each still really fsync'ed)."""
    seen: set[int] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)  # evidence_store, disk and the rest call os.fsync
    return seen


def test_each_file_its_folders_and_the_root_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    fsynced = _fsynced_inodes(monkeypatch)
    stored = store.put_bytes(jpeg_bytes("one"))
    path = store.path_for(stored.sha256)
    wanted = {p.stat().st_ino for p in (path, path.parent, path.parent.parent, store.root)}
    assert wanted <= fsynced
    # a request's files received one by one (open_incoming) are flushed by sync, not before
    fsynced.clear()
    incoming = [store.open_incoming() for _ in range(3)]
    for i, inc in enumerate(incoming):
        inc.write(jpeg_bytes(f"many-{i}"))
    files = [inc.finish() for inc in incoming]
    assert fsynced == set()
    store.sync(files)
    paths = [store.path_for(f.sha256) for f in files]
    assert {p.stat().st_ino for path in paths for p in (path, path.parent, path.parent.parent)} <= fsynced
    fsynced.clear()
    store.sync([])
    assert fsynced == set()  # nothing to flush


@pytest.mark.parametrize(("code", "fault"), [(errno.EIO, ServiceFault), (errno.ENOSPC, StorageFull)])
def test_a_failed_flush_is_a_fault_naming_the_evidence_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fault: type
) -> None:
    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    store = EvidenceStore(tmp_path / "evidence")
    monkeypatch.setattr(os, "fsync", failing)  # the disk fails under the flush
    with pytest.raises(fault) as caught:
        store.put_bytes(jpeg_bytes("x"))
    assert caught.value.field == "evidence store"
    assert caught.value.status == (507 if code == errno.ENOSPC else 503)


def test_a_filesystem_that_cannot_fsync_folders_still_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Some network and FUSE filesystems answer EINVAL to a folder's fsync: the files are still
    flushed and stored, and that is logged once for the filesystem (a file's own failed fsync still
    fails: test_a_failed_flush_is_a_fault_naming_the_evidence_store)."""
    real = os.fsync
    files_flushed: list[int] = []

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        files_flushed.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(disk, "_told", set())
    store = EvidenceStore(tmp_path / "evidence")
    with caplog.at_level("WARNING", logger="api.storage.disk"):
        first = store.put_bytes(jpeg_bytes("nfs-1"))
        store.put_bytes(jpeg_bytes("nfs-2"))  # other folders, the same filesystem: not logged again
    assert store.verify(first.sha256) is None
    assert store.path_for(first.sha256).stat().st_ino in files_flushed
    told = [r for r in caplog.records if "cannot fsync folders" in r.getMessage()]
    assert len(told) == 1


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def _spy_sync(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[set[str], int]]:
    """Each sync of the server's store: the SHA-256s flushed and how many sightings were stored then."""
    store = server.services.store
    real = store.sync
    seen: list[tuple[set[str], int]] = []

    def sync(files: list[Any]) -> None:
        real(files)
        with server.services.factory() as session:
            stored = session.scalar(select(func.count()).select_from(Sighting)) or 0
        seen.append(({f.sha256 for f in files}, stored))

    monkeypatch.setattr(store, "sync", sync)
    return seen


def test_the_incident_routes_flush_the_requests_files_before_ingest(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _spy_sync(server, monkeypatch)
    with server.client("device") as device:
        data = incident_json("d-1")
        assert post_incident(device, data).status_code == 201
        assert syncs == [({e["sha256"] for e in data["evidence"]}, 0)]  # before its sighting was stored

        incidents = [incident_json(f"d-b{i}", position=(30.2741 + i * 0.01, 120.1551)) for i in range(3)]
        r = post_batch(device, batch_parts(*incidents))
        assert r.status_code == 200 and [e["status_code"] for e in r.json()["results"]] == [201] * 3
        assert len(syncs) == 2  # the batch's six files in one flush
        assert syncs[1] == ({e["sha256"] for inc in incidents for e in inc["evidence"]}, 1)


def test_a_failed_flush_records_nothing_and_the_next_post_is_taken(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.services.store
    real = store.sync

    def broken(files: list[Any]) -> None:
        raise ServiceFault("evidence store", "flushing evidence to disk failed: Input/output error")

    with server.client("device") as device:
        assert post_incident(device, incident_json("d-kept")).status_code == 201
        monkeypatch.setattr(store, "sync", broken)
        r = post_incident(device, incident_json("d-lost", position=(30.2841, 120.1651)))
        assert r.status_code == 503, r.text
        assert "evidence store" in r.text and "Traceback" not in r.text
        r = post_batch(device, batch_parts(incident_json("d-lost-b", position=(30.2841, 120.1651))))
        assert r.status_code == 503, r.text
        with server.services.factory() as session:
            assert session.scalar(select(func.count()).select_from(Case)) == 1
        monkeypatch.setattr(store, "sync", real)
        r = post_incident(device, incident_json("d-lost", position=(30.2841, 120.1651)))
        assert r.status_code == 201, r.text


def test_an_upload_is_on_disk_before_it_is_answered(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patrol crew may delete its footage once told 201: the footage, its track and their
    names in the uploads folder are flushed before the commit."""
    fsynced = _fsynced_inodes(monkeypatch)
    with server.client("device") as device:
        r = device.post(
            "/api/uploads",
            files={
                "file": ("patrol.mp4", footage("durable"), "video/mp4"),
                "track": ("t.csv", b"time,lat,lon\n2026-11-20T01:00:00Z,30.2741,120.1551\n", "text/csv"),
            },
        )
        assert r.status_code == 201, r.text
    uploads = server.services.settings.uploads_dir
    sha = r.json()["upload"]["sha256"]
    kept = [uploads / f"{sha}.mp4", uploads / f"{sha}.track.csv", uploads]
    assert {p.stat().st_ino for p in kept} <= fsynced


def test_a_checkpoint_file_is_on_disk_when_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsynced = _fsynced_inodes(monkeypatch)
    point = checkpoints.Checkpoint(3, "ab" * 32, 3, "2026-12-03T10:00:00Z")
    path = checkpoints.write(point, out=None, folder=tmp_path / "out", data_dir=tmp_path / "data")
    assert {path.stat().st_ino, path.parent.stat().st_ino} <= fsynced
