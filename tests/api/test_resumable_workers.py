"""A chunk of a resumable upload is received once across the service's processes (`serve --workers
N`, or several servers behind a proxy): a retry sent while the first try is still arriving, at
another process, is refused with 409 instead of writing at the same offset, and the session's bytes
stay whole. Two real processes on one uploads folder and one database: receive_chunk itself in a
second process, and two real HTTP servers (one of them `gridpatrol serve` in a subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from api.accounts.accounts import Principal
from api.errors import InputError
from api.jobs import resumable
from api.jobs.uploads import ReceivedForm
from api.storage.db import make_engine, make_sessionmaker, utcnow
from api.storage.models import UploadSession
from tests.api.api_testkit import LiveServer, footage, free_port

REPO = Path(__file__).resolve().parents[2]
EXPIRY = timedelta(hours=24)
CREW = Principal(kind="device", name="van-1", role="device", camera_id="demo-cam-01")


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def _held(first: bytes, rest: bytes, holding: Path, go: Path) -> AsyncIterator[bytes]:
    """A body that arrives in two parts with a pause between (the phone's network stalls): the first
    part written, `holding` is made; the rest comes once `go` exists."""
    yield first
    holding.touch()
    while not go.exists():
        await asyncio.sleep(0.02)
    yield rest


def _send_held_chunk(
    url: str, uploads_dir: Path, view: resumable.SessionView, parts: tuple[bytes, bytes], marks: Path
) -> int | str:
    """In a process of its own, as a second server process would: the chunk `parts` at offset 0,
    stalling between its parts; the offset the server then has, or what refused it."""
    engine = make_engine(url)
    try:
        chunks = _held(*parts, marks / "holding", marks / "go")
        sent = resumable.receive_chunk(
            make_sessionmaker(engine),
            view,
            offset=0,
            chunks=chunks,
            uploads_dir=uploads_dir,
            expiry=EXPIRY,
        )
        return asyncio.run(sent).offset
    except Exception as exc:  # told to the test, which fails naming it
        return repr(exc)
    finally:
        engine.dispose()


async def _cut_off(data: bytes) -> AsyncIterator[bytes]:
    """A body whose connection drops after its first bytes."""
    yield data[: len(data) // 2]
    raise ConnectionResetError("the phone lost its network")


def test_a_retry_at_another_process_is_refused_while_the_first_try_arrives(
    sqlite_url: str, tmp_path: Path
) -> None:
    uploads = tmp_path / "data" / "uploads"
    engine = make_engine(sqlite_url)
    factory = make_sessionmaker(engine)
    video = footage("sent from a patrol van", 300_000)
    view, _ = resumable.open_session(
        factory,
        principal=CREW,
        sha256=hashlib.sha256(video).hexdigest(),
        size=len(video),
        filename="patrol.mp4",
        camera_id=None,
        start_time=None,
        uploads_dir=uploads,
        max_bytes=len(video),
        expiry=EXPIRY,
    )
    chunk = video[:200_000]
    marks = tmp_path / "marks"
    marks.mkdir()
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        first = pool.apply_async(
            _send_held_chunk, (sqlite_url, uploads, view, (chunk[:120_000], chunk[120_000:]), marks)
        )
        _wait(lambda: (marks / "holding").exists() or first.ready(), "the first try to be written")
        assert not first.ready(), first.get()
        # the retry reaches this process while the first try is still arriving, and is cut off too
        with pytest.raises(resumable.OffsetConflict) as busy:
            asyncio.run(
                resumable.receive_chunk(
                    factory, view, offset=0, chunks=_cut_off(chunk), uploads_dir=uploads, expiry=EXPIRY
                )
            )
        assert busy.value.status == 409 and busy.value.extra == {"offset": 0}
        assert "being received now" in str(busy.value)
        # and so is a finish meanwhile
        with pytest.raises(InputError) as finishing:
            resumable.finish_session(
                factory,
                principal=CREW,
                session_id=view.id,
                extra=ReceivedForm(),
                uploads_dir=uploads,
                expiry=EXPIRY,
            )
        assert finishing.value.status == 409 and finishing.value.field == "upload_session"
        (marks / "go").touch()
        assert first.get(60) == len(chunk)
    # the session's bytes are whole: what it counted is what its file holds
    path = resumable.data_path(uploads, view.id)
    assert path.read_bytes() == chunk
    with factory() as db:
        assert db.get(UploadSession, view.id).received == len(chunk)  # type: ignore[union-attr]
    # and the retry, now that the first try is counted, is told the offset to go on from
    stale = resumable.receive_chunk(
        factory, view, offset=0, chunks=_cut_off(chunk), uploads_dir=uploads, expiry=EXPIRY
    )
    with pytest.raises(resumable.OffsetConflict) as told:
        asyncio.run(stale)
    assert told.value.extra == {"offset": len(chunk)}
    assert path.read_bytes() == chunk
    engine.dispose()


def test_two_requests_of_one_process_are_refused_the_same_way(sqlite_url: str, tmp_path: Path) -> None:
    """flock conflicts between two open files of one process too: no guard of its own is needed."""
    uploads = tmp_path / "data" / "uploads"
    engine = make_engine(sqlite_url)
    factory = make_sessionmaker(engine)
    video = footage("one process, two requests", 100_000)
    view, _ = resumable.open_session(
        factory,
        principal=CREW,
        sha256=hashlib.sha256(video).hexdigest(),
        size=len(video),
        filename=None,
        camera_id=None,
        start_time=None,
        uploads_dir=uploads,
        max_bytes=len(video),
        expiry=EXPIRY,
    )

    async def both() -> resumable.SessionView:
        marks = tmp_path
        first = asyncio.create_task(
            resumable.receive_chunk(
                factory,
                view,
                offset=0,
                chunks=_held(video[:50_000], video[50_000:], marks / "holding", marks / "go"),
                uploads_dir=uploads,
                expiry=EXPIRY,
            )
        )
        while not (marks / "holding").exists():
            await asyncio.sleep(0.01)
        with pytest.raises(resumable.OffsetConflict) as busy:
            await resumable.receive_chunk(
                factory, view, offset=0, chunks=_cut_off(video), uploads_dir=uploads, expiry=EXPIRY
            )
        assert "being received now" in str(busy.value)
        (marks / "go").touch()
        return await first

    assert asyncio.run(both()).offset == len(video)
    assert resumable.data_path(uploads, view.id).read_bytes() == video
    engine.dispose()


def _age(factory: Any, session_id: str) -> None:
    """The session as if no chunk had come for longer than EXPIRY."""
    with factory() as db:
        db.execute(
            update(UploadSession)
            .where(UploadSession.id == session_id)
            .values(touched_at=utcnow() - EXPIRY - timedelta(hours=1))
        )
        db.commit()


def test_a_delete_or_an_expiry_waits_for_the_chunk_arriving(sqlite_url: str, tmp_path: Path) -> None:
    """A DELETE while a chunk is arriving is 409 as a finish is, and the expiry sweep leaves the
    session for its next round: the chunk is written and counted whole, never its file removed under
    it (which answered the chunk "another chunk was taken at this offset")."""
    uploads = tmp_path / "data" / "uploads"
    engine = make_engine(sqlite_url)
    factory = make_sessionmaker(engine)
    video = footage("deleted mid-chunk", 100_000)
    view, _ = resumable.open_session(
        factory,
        principal=CREW,
        sha256=hashlib.sha256(video).hexdigest(),
        size=len(video),
        filename=None,
        camera_id=None,
        start_time=None,
        uploads_dir=uploads,
        max_bytes=len(video),
        expiry=EXPIRY,
    )
    path = resumable.data_path(uploads, view.id)
    sweep = resumable.UploadSessionSweep(factory, uploads_dir=uploads, expiry=EXPIRY)

    async def deleted_and_swept_mid_chunk() -> resumable.SessionView:
        first = asyncio.create_task(
            resumable.receive_chunk(
                factory,
                view,
                offset=0,
                chunks=_held(video[:40_000], video[40_000:], tmp_path / "holding", tmp_path / "go"),
                uploads_dir=uploads,
                expiry=EXPIRY,
            )
        )
        while not (tmp_path / "holding").exists():
            await asyncio.sleep(0.01)
        with pytest.raises(InputError) as busy:
            resumable.delete_session(
                factory, principal=CREW, session_id=view.id, uploads_dir=uploads, expiry=EXPIRY
            )
        assert busy.value.status == 409 and busy.value.field == "upload_session"
        assert "under way; retry" in str(busy.value)
        # no chunk counted for longer than the expiry, but one arriving: not idle, not removed
        _age(factory, view.id)
        sweep.round()
        assert path.exists()
        with factory() as db:
            assert db.get(UploadSession, view.id) is not None
        # nor is it expired to its sender asking meanwhile (a retry asking the offset)
        asked = resumable.find_session(
            factory, principal=CREW, session_id=view.id, uploads_dir=uploads, expiry=EXPIRY
        )
        assert asked.offset == 0 and path.exists()
        (tmp_path / "go").touch()
        return await first

    assert asyncio.run(deleted_and_swept_mid_chunk()).offset == len(video)
    assert path.read_bytes() == video
    # idle, it goes: the sweep's next round takes it once it has expired
    sweep.round()
    assert path.exists()
    _age(factory, view.id)
    sweep.round()
    assert not path.exists()
    with factory() as db:
        assert db.get(UploadSession, view.id) is None
    engine.dispose()


def test_a_delete_while_a_chunk_arrives_at_another_process_is_409(sqlite_url: str, tmp_path: Path) -> None:
    """The same across processes (`serve --workers N`): the chunk is held in a process of its own."""
    uploads = tmp_path / "data" / "uploads"
    engine = make_engine(sqlite_url)
    factory = make_sessionmaker(engine)
    video = footage("deleted at another worker", 100_000)
    view, _ = resumable.open_session(
        factory,
        principal=CREW,
        sha256=hashlib.sha256(video).hexdigest(),
        size=len(video),
        filename=None,
        camera_id=None,
        start_time=None,
        uploads_dir=uploads,
        max_bytes=len(video),
        expiry=EXPIRY,
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        first = pool.apply_async(
            _send_held_chunk, (sqlite_url, uploads, view, (video[:30_000], video[30_000:]), marks)
        )
        _wait(lambda: (marks / "holding").exists() or first.ready(), "the chunk's head to be written")
        assert not first.ready(), first.get()
        with pytest.raises(InputError) as busy:
            resumable.delete_session(
                factory, principal=CREW, session_id=view.id, uploads_dir=uploads, expiry=EXPIRY
            )
        assert busy.value.status == 409 and busy.value.field == "upload_session"
        _age(factory, view.id)
        with factory() as db:  # the sweep, as another process runs it
            assert resumable.remove_expired(db, uploads_dir=uploads, expiry=EXPIRY) == 0
        (marks / "go").touch()
        assert first.get(60) == len(video)
    # the chunk counted, the delete goes through
    gone = resumable.delete_session(
        factory, principal=CREW, session_id=view.id, uploads_dir=uploads, expiry=EXPIRY
    )
    assert gone.offset == len(video)
    assert not resumable.data_path(uploads, view.id).exists()
    engine.dispose()


# --- over HTTP: two servers on one data folder and database ---------------------------------------


@pytest.fixture
def second_server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """`gridpatrol serve` in a process of its own, on the data folder and database of make_server's."""
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(tmp_path / "data"), GRIDPATROL_DATABASE_URL=sqlite_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "second-server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--no-worker", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def healthy() -> bool:
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            return httpx.get(base + "/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(healthy, "the second server")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def test_a_chunk_retried_at_another_server_process_is_409_and_the_upload_stays_whole(
    make_server: Any, sqlite_url: str, second_server: str
) -> None:
    first: LiveServer = make_server(sqlite_url, run_webhooks=False, config_loader=lambda: None)
    video = footage("a flaky network", 600_000)
    chunk = video[:400_000]
    go = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield chunk[:150_000]
        go.wait(60)
        yield chunk[150_000:]

    auth = {"Authorization": f"Bearer {first.tokens['device']}"}
    octets = {**auth, "Content-Type": "application/octet-stream"}
    with (
        httpx.Client(base_url=first.url, headers=auth, timeout=60) as here,
        httpx.Client(base_url=second_server, headers=auth, timeout=60) as there,
        ThreadPoolExecutor(1) as phone,
    ):
        body = {"size": len(video), "sha256": hashlib.sha256(video).hexdigest(), "filename": "p.mp4"}
        opened = here.post("/api/upload-sessions", json=body)
        assert opened.status_code == 201, opened.text
        sid = opened.json()["id"]
        path = resumable.data_path(first.services.settings.uploads_dir, sid)
        # the first try: its head arrives at this process, then the network stalls
        arriving = phone.submit(
            here.patch,
            f"/api/upload-sessions/{sid}",
            params={"offset": 0},
            content=stalled(),
            headers={**octets, "Content-Length": str(len(chunk))},
        )
        _wait(lambda: path.stat().st_size > 0 or arriving.done(), "the first try's head to be written")
        # the phone retries the chunk, and the retry reaches the other process
        retry = there.patch(
            f"/api/upload-sessions/{sid}", params={"offset": 0}, content=chunk, headers=octets
        )
        assert retry.status_code == 409, retry.text
        assert retry.json()["offset"] == 0 and "being received now" in retry.json()["detail"]
        early = there.post(f"/api/upload-sessions/{sid}/finish")
        assert early.status_code == 409 and early.json()["errors"][0]["field"] == "upload_session"
        given_up = there.delete(f"/api/upload-sessions/{sid}")
        assert given_up.status_code == 409, given_up.text
        assert given_up.json()["errors"][0]["field"] == "upload_session"
        go.set()
        answered = arriving.result(60)
        assert answered.status_code == 200 and answered.json()["offset"] == len(chunk), answered.text
        assert path.read_bytes() == chunk
        # the rest at the other process, finished there: the footage whole
        rest = there.patch(
            f"/api/upload-sessions/{sid}",
            params={"offset": len(chunk)},
            content=video[len(chunk) :],
            headers=octets,
        )
        assert rest.status_code == 200 and rest.json()["offset"] == len(video), rest.text
        done = there.post(f"/api/upload-sessions/{sid}/finish")
        assert done.status_code == 201, done.text
        filed = first.services.settings.uploads_dir / f"{done.json()['upload']['sha256']}.mp4"
        assert filed.read_bytes() == video
