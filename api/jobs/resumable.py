"""Resumable uploads: footage sent in chunks, so that a connection dropped at 90% costs one chunk.

A sender opens a session with the file's size and SHA-256 (and what POST /api/uploads takes besides
the file: camera_id, start_time), appends chunks at the offset the server holds (a chunk at another
offset is refused with that offset: a sender that lost track asks, and goes on from there), and
finishes it: the bytes are checked against the declared size and SHA-256 (a mismatch discards them)
and filed by api.jobs.uploads.file_upload, as one POST /api/uploads files them, idempotent on SHA-256.

A session is its sender's only (another caller is told there is no such session). Its bytes live in
`<uploads>/.resumable-<id>`, beside the temporary files of one-request uploads, so a full disk is 507
`uploads` as there. A session with no chunk for `upload_session_expiry_h` has expired: it is removed,
with its bytes, by the server's background sweep (UploadSessionSweep, every 10 minutes), and sooner
when any session is opened or its sender next asks for it.

A session takes one chunk, or its finish, at a time, across the service's processes (`serve --workers
N`): its bytes' file is flock'ed meanwhile, and a second request is 409 (a phone's retry of a chunk
still arriving elsewhere would write at the same offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import Principal
from api.errors import InputError, NotFound, StorageFull, is_disk_full
from api.jobs.uploads import (
    SNIFF_BYTES,
    CameraZone,
    ReceivedFile,
    ReceivedForm,
    UploadError,
    UploadReceipt,
    disk_full_named,
    display_filename,
    file_upload,
    parse_start_time,
)
from api.periodic import Periodic
from api.storage.db import DatabaseBusy, utcnow
from api.storage.models import UploadSession

log = logging.getLogger(__name__)

CHUNK_MAX_BYTES = 64 * 1024**2  # one request's body; the page sends 4 MiB
MAX_OPEN_SESSIONS = 8  # unfinished sessions per sender
DATA_PREFIX = ".resumable-"
_READ_BYTES = 1024**2


class SessionNotFound(NotFound):
    def __init__(self, reason: str = "no such upload session") -> None:
        super().__init__("upload_session", reason)


class OffsetConflict(InputError):
    """A chunk that does not start where the received bytes end (409); `offset` says where they do."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__("offset", reason, status=409, extra={"offset": offset})


class SessionBusy(InputError):
    """A finish or a delete while a chunk or the finish of the session holds its bytes (409)."""

    def __init__(self) -> None:
        super().__init__(
            "upload_session", "a chunk or the finish of this upload is under way; retry", status=409
        )


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    sha256: str
    size: int
    offset: int
    filename: str | None
    camera_id: str | None
    start_time: str | None
    created_at: datetime
    expires_at: datetime


def _view(row: UploadSession, expiry: timedelta) -> SessionView:
    return SessionView(
        id=row.id,
        sha256=row.sha256,
        size=row.size,
        offset=row.received,
        filename=row.filename,
        camera_id=row.camera_id,
        start_time=row.start_time,
        created_at=row.created_at,
        expires_at=row.touched_at + expiry,
    )


def data_path(uploads_dir: Path, session_id: str) -> Path:
    return uploads_dir / f"{DATA_PREFIX}{session_id}"


def _discard(session: Session, rows: Sequence[UploadSession], uploads_dir: Path) -> None:
    """Delete the sessions and commit, then remove their bytes (a failed commit leaves both)."""
    for row in rows:
        session.delete(row)
    session.commit()
    for row in rows:
        data_path(uploads_dir, row.id).unlink(missing_ok=True)


def remove_expired(session: Session, *, uploads_dir: Path, expiry: timedelta) -> int:
    """Remove the sessions with no chunk for `expiry`, and their bytes (committed); how many. One that
    a chunk or a finish holds now is left: it is not idle, and a later sweep takes it if it stays so."""
    rows = session.scalars(select(UploadSession).where(UploadSession.touched_at < utcnow() - expiry)).all()
    return sum(_remove_if_idle(session, row, uploads_dir=uploads_dir, expiry=expiry) for row in rows)


def _remove_if_idle(session: Session, row: UploadSession, *, uploads_dir: Path, expiry: timedelta) -> bool:
    """Remove the expired session `row` and its bytes (committed) unless a request holds its bytes now
    or a chunk was counted since it was read; whether it was removed. Its lock is held meanwhile, so a
    chunk arriving then finds the session gone (404) instead of its bytes removed under it."""
    path = data_path(uploads_dir, row.id)
    try:
        lock = _locked(path)
    except SessionNotFound:  # its bytes were removed by hand: nothing holds them
        lock = None
    else:
        if lock is None:
            log.info("upload session %s is receiving a chunk: not expired now", row.id[:8])
            return False
    try:
        fresh = session.get(UploadSession, row.id, populate_existing=True)
        if fresh is None or fresh.touched_at >= utcnow() - expiry:  # removed, or a chunk counted since
            return False
        log.info("upload session %s expired with %d of %d bytes", row.id[:8], row.received, row.size)
        _discard(session, [row], uploads_dir)
        return True
    finally:
        if lock is not None:
            lock.close()


class UploadSessionSweep(Periodic):
    """Background thread of the server: remove the expired sessions every `every_s` seconds."""

    thread_name = "gridpatrol-upload-sessions"
    passing_faults = (DatabaseBusy,)

    def __init__(
        self, factory: sessionmaker[Session], *, uploads_dir: Path, expiry: timedelta, every_s: float = 600.0
    ) -> None:
        super().__init__(every_s)
        self.factory = factory
        self.uploads_dir = uploads_dir
        self.expiry = expiry

    def round(self) -> None:
        with self.factory() as session:
            remove_expired(session, uploads_dir=self.uploads_dir, expiry=self.expiry)


def _owned(
    session: Session, principal: Principal, session_id: str, *, uploads_dir: Path, expiry: timedelta
) -> UploadSession:
    row = session.get(UploadSession, session_id)
    if row is None or row.owner != principal.label:  # another sender's is no business of this one
        raise SessionNotFound()
    if row.touched_at < utcnow() - expiry:
        if _remove_if_idle(session, row, uploads_dir=uploads_dir, expiry=expiry):
            raise SessionNotFound(
                f"expired: no chunk came for {expiry.total_seconds() / 3600:g} h; start again"
            )
        # left: a chunk holds it or was counted since, unless another process removed it meanwhile
        if session.get(UploadSession, session_id, populate_existing=True) is None:
            raise SessionNotFound()
    if not data_path(uploads_dir, row.id).is_file():  # removed from the uploads folder by hand
        _discard(session, [row], uploads_dir)
        raise SessionNotFound("its bytes are no longer in the uploads folder; start again")
    return row


def open_session(
    factory: sessionmaker[Session],
    *,
    principal: Principal,
    sha256: str,
    size: int,
    filename: str | None,
    camera_id: str | None,
    start_time: str | None,
    uploads_dir: Path,
    max_bytes: int,
    expiry: timedelta,
    camera_zone: CameraZone | None = None,
) -> tuple[SessionView, bool]:
    """A new session, or this sender's unfinished one for the same SHA-256 (to resume after losing
    its id: a reloaded page), with these fields; and whether it is new. Blocking: run it in a thread."""
    if size > max_bytes:
        raise UploadError("size", f"larger than the limit of {max_bytes} bytes", 413)
    camera_id = (camera_id or "").strip() or None
    # read now as the finish will read it, so that a bad start_time is told before gigabytes are sent
    parse_start_time(start_time, principal.camera_id or camera_id, camera_zone)
    with disk_full_named():
        uploads_dir.mkdir(parents=True, exist_ok=True)
    with factory() as session:
        remove_expired(session, uploads_dir=uploads_dir, expiry=expiry)
        row = session.scalar(
            select(UploadSession).where(
                UploadSession.owner == principal.label, UploadSession.sha256 == sha256
            )
        )
        if row is not None and not data_path(uploads_dir, row.id).is_file():
            _discard(session, [row], uploads_dir)  # its bytes were removed by hand: start again
            row = None
        created = row is None
        if row is None:
            if _open_count(session, principal) >= MAX_OPEN_SESSIONS:
                raise InputError(
                    "upload_session",
                    f"{MAX_OPEN_SESSIONS} unfinished uploads already; finish or delete one first",
                    status=409,
                )
            free = shutil.disk_usage(uploads_dir).free
            if size > free:
                raise StorageFull("uploads", f"{size} bytes do not fit in the {free} bytes free")
            row = UploadSession(
                id=secrets.token_hex(16),
                owner=principal.label,
                sha256=sha256,
                size=size,
                received=0,
                created_at=utcnow(),
                touched_at=utcnow(),
            )
            session.add(row)
            with disk_full_named():
                data_path(uploads_dir, row.id).touch()
        elif row.size != size:
            raise UploadError(
                "size", f"an unfinished upload of this SHA-256 was declared with {row.size} bytes", 409
            )
        row.filename, row.camera_id, row.start_time = display_filename(filename), camera_id, start_time
        session.commit()
        return _view(row, expiry), created


def _open_count(session: Session, principal: Principal) -> int:
    count = session.scalar(select(func.count()).where(UploadSession.owner == principal.label))
    return count or 0


def find_session(
    factory: sessionmaker[Session],
    *,
    principal: Principal,
    session_id: str,
    uploads_dir: Path,
    expiry: timedelta,
) -> SessionView:
    with factory() as session:
        return _view(_owned(session, principal, session_id, uploads_dir=uploads_dir, expiry=expiry), expiry)


def delete_session(
    factory: sessionmaker[Session],
    *,
    principal: Principal,
    session_id: str,
    uploads_dir: Path,
    expiry: timedelta,
) -> SessionView:
    with factory() as session:
        row = _owned(session, principal, session_id, uploads_dir=uploads_dir, expiry=expiry)
        # held while the session goes, as a chunk holds it: never its bytes removed under a chunk
        lock = _locked(data_path(uploads_dir, row.id))
        if lock is None:
            raise SessionBusy()
        try:
            view = _view(row, expiry)
            _discard(session, [row], uploads_dir)
        finally:
            lock.close()
        return view


def _locked(path: Path) -> BinaryIO | None:
    """The session's bytes opened for writing and exclusively flock'ed, or None when another request
    holds them (in this process or another of the service's: flock conflicts between open files, so
    two requests of one process exclude each other as two processes do). The lock goes with the file's
    closing, or with its process: one killed mid-chunk leaves no session locked."""
    try:
        fh = path.open("r+b")
    except FileNotFoundError:  # deleted, or removed by hand, since the caller asked for it
        raise SessionNotFound() from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    except BaseException:
        fh.close()
        raise
    return fh


def _received(factory: sessionmaker[Session], session_id: str) -> int:
    with factory() as session:
        received = session.scalar(select(UploadSession.received).where(UploadSession.id == session_id))
    if received is None:
        raise SessionNotFound()
    return received


async def receive_chunk(
    factory: sessionmaker[Session],
    view: SessionView,
    *,
    offset: int,
    chunks: AsyncIterator[bytes],
    uploads_dir: Path,
    expiry: timedelta,
) -> SessionView:
    """Write a request body's bytes at `offset` of the session `view` (as find_session answered it),
    which must be where its received bytes end, and count them (`advance`): the session as it is then.
    A chunk cut off (the connection dropped) is taken back whole: the session keeps what it had before.

    One chunk at a time, across the service's processes: the session's file is flock'ed from before
    the offset is checked until the chunk is counted, and a second chunk meanwhile (a retry sent while
    the first is still arriving, maybe at another process) is refused with 409."""
    if offset != view.offset:
        raise OffsetConflict(view.offset, f"the server has {view.offset} bytes; send from there")
    fh = _locked(data_path(uploads_dir, view.id))
    if fh is None:
        raise OffsetConflict(view.offset, "a chunk of this upload is being received now; retry")
    try:
        # asked again under the lock: `view` may predate a chunk counted since (whose lock is gone)
        received = await asyncio.to_thread(_received, factory, view.id)
        if offset != received:
            raise OffsetConflict(received, f"the server has {received} bytes; send from there")
        # Neither truncate below can cut another chunk's bytes: every chunk is written and counted
        # under this lock, and the database counts `offset` with the lock held, so what lies past it
        # is this chunk's own bytes or those of one that was never counted (its process died).
        with disk_full_named():
            fh.truncate(offset)
            fh.seek(offset)
            written = 0
            try:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > CHUNK_MAX_BYTES:
                        raise UploadError("chunk", f"larger than the limit of {CHUNK_MAX_BYTES} bytes", 413)
                    if offset + written > view.size:
                        raise UploadError("chunk", f"goes past the declared size of {view.size} bytes", 413)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    fh.truncate(offset)
                raise
    except BaseException:
        fh.close()
        raise
    # the thread counts, then lets go of the lock: a request cancelled meanwhile must not free the
    # session before its bytes are counted (shielded, the count runs to its end regardless)
    return await asyncio.shield(asyncio.to_thread(_count_and_release, fh, factory, view, written, expiry))


def _count_and_release(
    fh: BinaryIO, factory: sessionmaker[Session], view: SessionView, written: int, expiry: timedelta
) -> SessionView:
    try:
        return advance(factory, view, written, expiry)
    finally:
        fh.close()


def advance(
    factory: sessionmaker[Session], view: SessionView, written: int, expiry: timedelta
) -> SessionView:
    """Count the `written` bytes receive_chunk wrote after the session's `view`. Blocking."""
    with factory() as session:
        done = session.execute(
            update(UploadSession)
            .where(UploadSession.id == view.id, UploadSession.received == view.offset)
            .values(received=view.offset + written, touched_at=utcnow())
        )
        session.commit()
        row = session.get(UploadSession, view.id)
        if row is None:  # removed meanwhile: not a chunk's conflict
            raise SessionNotFound()
        if getattr(done, "rowcount", 1) != 1:
            raise OffsetConflict(view.offset, "another chunk was taken at this offset meanwhile; ask again")
        return _view(row, expiry)


def _hash_file(path: Path) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    head = b""
    with path.open("rb") as fh:
        while block := fh.read(_READ_BYTES):
            if len(head) < SNIFF_BYTES:
                head += block[: SNIFF_BYTES - len(head)]
            digest.update(block)
    return digest.hexdigest(), head


def _second_name(path: Path) -> Path:
    """A second name for the session's bytes, which the filing moves into place or removes: a refusal
    leaves the session's own name, to finish again. Where the file system has no hard links, the
    bytes themselves (a refusal then loses them)."""
    link = path.with_name(".incoming-" + path.name.removeprefix(DATA_PREFIX))
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull("uploads") from exc
        log.warning("no hard link for %s (%s): a refused finish loses its bytes", path.name, exc)
        return path
    return link


def finish_session(
    factory: sessionmaker[Session],
    *,
    principal: Principal,
    session_id: str,
    extra: ReceivedForm,
    uploads_dir: Path,
    expiry: timedelta,
    camera_zone: CameraZone | None = None,
) -> UploadReceipt:
    """Check the received bytes against the declared size and SHA-256 and file them with `extra` (the
    finishing request's GPS track; its camera_id / start_time replace the session's) as POST
    /api/uploads files footage. Refused by the filing (a bad track, a 409 with an earlier upload), the
    session stays, to finish again; its bytes only go with a wrong size or hash. Blocking."""
    lock: BinaryIO | None = None
    try:
        try:
            with factory() as session:
                row = _owned(session, principal, session_id, uploads_dir=uploads_dir, expiry=expiry)
                path = data_path(uploads_dir, row.id)
                # held to the end, as a chunk holds it: no chunk or second finish meanwhile
                lock = _locked(path)
                if lock is None:
                    raise SessionBusy()
                session.refresh(row)  # a chunk counted before the lock was taken
                if row.received != row.size:
                    raise OffsetConflict(
                        row.received,
                        f"{row.received} of the {row.size} bytes declared are here; send the rest",
                    )
                sha256, head = _hash_file(path)
                if sha256 != row.sha256:
                    _discard(session, [row], uploads_dir)
                    raise UploadError(
                        "sha256",
                        f"the {row.size} bytes received hash to {sha256}, not the {row.sha256} declared; "
                        "they were discarded: start again",
                    )
                fields = {"camera_id": row.camera_id, "start_time": row.start_time, **extra.fields}
                filename, size = row.filename, row.size
            footage = ReceivedFile("file", filename, _second_name(path), size, sha256, head)
            form = ReceivedForm(
                files={"file": footage, **extra.files},
                fields={k: v for k, v in fields.items() if v is not None},
            )
            receipt = file_upload(
                factory, form=form, uploads_dir=uploads_dir, principal=principal, camera_zone=camera_zone
            )
        except BaseException:
            extra.cleanup()
            raise
        with factory() as session:
            session.execute(delete(UploadSession).where(UploadSession.id == session_id))
            session.commit()
        path.unlink(missing_ok=True)
    finally:
        if lock is not None:
            lock.close()
    return receipt
