"""Footage uploads: streamed to disk in chunks, never whole in memory.

`receive_multipart` reads a multipart/form-data body chunk by chunk (python-multipart's push
parser), writing each file part to a temporary file in the uploads folder while hashing it, and
stops as soon as a part passes its size limit. Footage must look like a video container by its
first bytes; a GPS track must look like GPX, NMEA or CSV text. `register_upload` then files the
upload under its SHA-256 (idempotent: the same footage again returns the first upload and job).
A full disk while receiving is `StorageFull("uploads")` (507), and nothing received stays behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import Principal
from api.cases.wall_time import OUT_OF_RANGE, in_range, parse_wall_time
from api.errors import InputError, StorageFull, is_disk_full
from api.http.multipart import FormPart, form_boundary, read_parts
from api.jobs.queue import JobStatus, JobView, job_fields
from api.storage.db import as_utc, utcnow
from api.storage.disk import replace_durably
from api.storage.models import Job, Upload, UploadCoverage

log = logging.getLogger(__name__)

FILE_FIELDS = ("file", "track")
TEXT_FIELDS = ("camera_id", "start_time")
MAX_TRACK_BYTES = 64 * 1024**2
MAX_TEXT_BYTES = 1024
SNIFF_BYTES = 512
TRACK_EXTENSIONS = {"application/gpx+xml": ".gpx", "text/x-nmea": ".nmea", "text/csv": ".csv"}
MAX_SHOWN_FILENAME = 100  # characters of a sent file name kept to show (display_filename)


class UploadError(InputError):
    """A bad upload; `field` is the form field, `status` the HTTP status (413 too large, 415 not
    footage or not a track, 409 a conflict with an earlier upload, 422 otherwise)."""

    def __init__(self, field: str, reason: str, status: int = 422) -> None:
        super().__init__(field, reason, status=status)


def sniff_video(head: bytes) -> str | None:
    """A video media type from a file's first bytes, or None when it is no container we read."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"FLV"):
        return "video/x-flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "video/mpeg"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video/mp2t"
    # M2TS / BDAV (a camcorder's .MTS, .m2ts): 192-byte packets, a 4-byte arrival time before each sync byte
    if len(head) > 196 and head[4] == 0x47 and head[196] == 0x47:
        return "video/mp2t"
    return None


_NMEA_SENTENCE = re.compile(r"\$[A-Z][A-Z0-9]{4},")  # as streams.gps reads it
# the time, latitude and longitude columns streams.gps reads in a CSV track: a "CSV" with none of them
# is some other file (a dashcam's event log), refused here naming it rather than failing its job. Matched
# as streams.gps matches them: a unit in parentheses or brackets after the name set apart (`lat (°)`),
# runs of spaces and underscores made one underscore (`date time`).
_TRACK_COLUMNS = frozenset(
    (
        "time",
        "timestamp",
        "datetime",
        "utc",
        "date_time",
        "time_utc",
        "时间",
        "定位时间",
        "日期时间",
        "时间戳",
    )
    + ("lat", "latitude", "纬度")
    + ("lon", "lng", "long", "longitude", "经度")
)
_COLUMN_UNIT = re.compile(r"\s*[(\[（【][^)\]）】]*[)\]）】]$")
# streams.gps.FORMATS_READ, for the 415 that refuses a file that is none of them
TRACK_FORMATS_READ = (
    "GPX with timed points, NMEA 0183 RMC/GGA sentences (.nmea/.log/.txt, a BlackVue .gps), "
    "or CSV with a time,lat,lon (or 时间,纬度,经度) header, or date,time,lat,lon with the day in its "
    "own column"
)


def sniff_track(head: bytes) -> str | None:
    """The media type of a GPS track by its first bytes, telling the formats apart as
    streams.gps.sniff_format does (which this package may not import): XML (GPX, maybe after a comment),
    NMEA sentences in its first 20 lines (a logger's header line may come first, a BlackVue `[ms]`
    before each), else CSV with a comma-, semicolon- or tab-separated header; UTF-8, UTF-16 with its
    byte-order mark, or GBK (a CSV from Excel on a Chinese Windows, a GPX that declares it). None: not
    a track (binary, JSON, XML whose root is not <gpx> (KML), or no separated header with a time,
    latitude or longitude column)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
    else:
        decoded = _decode_head(head)
        if decoded is None:
            return None
        text = decoded
    text = text.lstrip("\ufeff \t\r\n")
    if "\x00" in text:
        return None
    if text.startswith("<"):
        root = _XML_ROOT.search(text)
        if root is not None and root[1].rsplit(":", 1)[-1].lower() != "gpx":
            return None
        return "application/gpx+xml"
    # before the JSON check: BlackVue's .gps starts each line with "[ms]", as a JSON array starts
    if any(_NMEA_SENTENCE.search(line) for line in text.splitlines()[:20]):
        return "text/x-nmea"
    if text.startswith(("{", "[")):
        return None
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    header = {
        re.sub(r"[\s_]+", "_", _COLUMN_UNIT.sub("", cell.strip().strip('"').lower()).strip())
        for cell in first_line.split(delimiter)
    }
    if delimiter in first_line and header & _TRACK_COLUMNS:
        return "text/csv"
    return None


# the first element's name in XML text (after its declaration, comments and a DOCTYPE)
_XML_ROOT = re.compile(r"<([A-Za-z_][\w.:-]*)")


def _decode_head(head: bytes) -> str | None:
    """A file's first bytes as UTF-8, else GB18030 (GBK), as streams.gps reads a track; a multi-byte
    character cut at the sniff boundary is fine. None: neither."""
    for codec in ("utf-8", "gb18030"):
        for cut in range(4):  # a character of up to 4 bytes cut at the end
            try:
                return head[: len(head) - cut].decode(codec)
            except UnicodeDecodeError:
                continue
    return None


def display_filename(sent: str | None) -> str | None:
    """A file name as its sender gave it, fit to show in a message or a page: its last path part only (a
    browser on Windows may send C:\\fakepath\\drive.gpx), without control or format characters (a
    newline that would forge a log line, a right-to-left override that would show 'xpg.exe' as
    'exe.gpx'), trimmed, and at most MAX_SHOWN_FILENAME characters (cut before its extension, with an
    ellipsis). None when nothing is left."""
    if not sent:
        return None
    last = re.split(r"[\\/]", sent)[-1]
    shown = "".join(c for c in last if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")).strip()
    if len(shown) > MAX_SHOWN_FILENAME:
        stem, dot, ext = shown.rpartition(".")
        suffix = dot + ext if stem and len(ext) <= 10 else ""
        shown = shown[: MAX_SHOWN_FILENAME - len(suffix) - 1].rstrip() + "\u2026" + suffix
    return shown or None


@dataclass
class ReceivedFile:
    field: str
    filename: str | None
    path: Path
    size: int
    sha256: str
    head: bytes


@dataclass
class ReceivedForm:
    files: dict[str, ReceivedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def cleanup(self) -> None:
        for received in self.files.values():
            if received.path.exists():
                received.path.unlink()


@contextlib.contextmanager
def disk_full_named() -> Iterator[None]:
    """An OSError saying the disk is full becomes StorageFull("uploads") (507)."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull("uploads") from exc
        raise


class _UploadParts:
    """The upload form's parts: files streamed to temporary files (hashed, size-limited, the first
    bytes kept for sniffing), the known text fields kept; any other field is an error."""

    def __init__(self, incoming_dir: Path, max_file_bytes: int) -> None:
        self.form = ReceivedForm()
        self._incoming_dir = incoming_dir
        self._max_file_bytes = max_file_bytes
        self._part: FormPart | None = None
        self._fh: BinaryIO | None = None
        self._path: Path | None = None
        self._digest = hashlib.sha256()
        self._size = 0
        self._head = b""
        self._text = bytearray()

    def _limit(self, name: str | None) -> int:
        return self._max_file_bytes if name == "file" else MAX_TRACK_BYTES

    def begin(self, part: FormPart) -> None:
        self._part = part
        self._digest = hashlib.sha256()
        self._size = 0
        self._head = b""
        self._text = bytearray()
        if part.name in FILE_FIELDS:
            if part.name in self.form.files:
                raise UploadError(part.name, "sent more than once")
            with disk_full_named():
                fd, name = tempfile.mkstemp(dir=self._incoming_dir, prefix=".incoming-")
            self._fh = os.fdopen(fd, "wb")
            self._path = Path(name)
        elif part.name in self.form.fields:
            # two camera_ids (or start_times) in one form: which one was meant is not ours to guess
            raise UploadError(part.name, "sent more than once")
        elif part.name not in TEXT_FIELDS:
            raise UploadError(
                part.name or "(unnamed part)", f"unknown form field; expected {FILE_FIELDS + TEXT_FIELDS}"
            )

    def data(self, chunk: bytes) -> None:
        name = self._part.name if self._part else None
        if self._fh is not None:
            self._size += len(chunk)
            if self._size > self._limit(name):
                raise UploadError(name or "file", f"larger than the limit of {self._limit(name)} bytes", 413)
            if len(self._head) < SNIFF_BYTES:
                self._head += chunk[: SNIFF_BYTES - len(self._head)]
            self._digest.update(chunk)
            with disk_full_named():
                self._fh.write(chunk)
        else:
            self._text += chunk
            if len(self._text) > MAX_TEXT_BYTES:
                raise UploadError(name or "field", f"longer than {MAX_TEXT_BYTES} bytes")

    def end(self) -> None:
        part, self._part = self._part, None
        if part is None or part.name is None:
            return
        if self._fh is not None and self._path is not None:
            fh, self._fh = self._fh, None
            with disk_full_named():
                fh.close()  # flushes the last bytes: the disk may fill here too
            self.form.files[part.name] = ReceivedFile(
                part.name, part.filename, self._path, self._size, self._digest.hexdigest(), self._head
            )
            self._path = None
        else:
            try:
                self.form.fields[part.name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(part.name, "not UTF-8 text") from None

    def abort(self) -> None:
        """Remove every file received so far, the half-written one too."""
        if self._fh is not None:
            with contextlib.suppress(OSError):  # its last bytes may not fit on a full disk
                self._fh.close()
            self._fh = None
        if self._path is not None and self._path.exists():
            self._path.unlink()
        self.form.cleanup()


async def receive_multipart(
    content_type: str | None, chunks: AsyncIterator[bytes], *, incoming_dir: Path, max_file_bytes: int
) -> ReceivedForm:
    """Parse a multipart body from `chunks`, streaming file parts to temporary files."""
    boundary = form_boundary(content_type)
    if boundary is None:
        raise UploadError("body", "must be multipart/form-data with a boundary", status=415)
    with disk_full_named():
        incoming_dir.mkdir(parents=True, exist_ok=True)
    parts = _UploadParts(incoming_dir, max_file_bytes)
    try:
        await read_parts(boundary, chunks, parts)
    except BaseException:  # a malformed body, a bad field, a file over its limit, a client gone:
        # nothing stays behind
        parts.abort()
        raise
    return parts.form


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The upload and its job; `superseded`: files a replaced track left, removed once committed."""

    upload: Upload
    job: Job
    created: bool
    superseded: list[Path] = field(default_factory=list)


def _file_track(
    track: ReceivedFile, track_type: str | None, *, footage_sha256: str, uploads_dir: Path, replacing: bool
) -> Path:
    """Move a received track into the uploads folder: `<footage sha256>.track.<ext>`, or for one that
    replaces another, `<footage sha256>.track-<its sha256[:12]>.<ext>`, so that it never overwrites the
    file the database names until the replacement commits."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    track_ext = TRACK_EXTENSIONS[track_type or ""]
    name = f"track-{track.sha256[:12]}" if replacing else "track"
    final = uploads_dir / f"{footage_sha256}.{name}{track_ext}"
    with disk_full_named():
        replace_durably(track.path, final)
    return final


def _replace_track(
    session: Session, upload: Upload, track: ReceivedFile, track_type: str | None, *, uploads_dir: Path
) -> list[Path]:
    """A resend with another track after a failed job (or a done one whose track placed no frame or
    passed no grid cell): the new one becomes the upload's (its shape and grid coverage from the old one
    are dropped); the old files, to remove after the commit."""
    old = upload.track_path
    final = _file_track(
        track, track_type, footage_sha256=upload.sha256, uploads_dir=uploads_dir, replacing=True
    )
    upload.track_path = str(final)
    upload.track_sha256 = track.sha256
    upload.track_filename = display_filename(track.filename)
    session.execute(delete(UploadCoverage).where(UploadCoverage.upload_id == upload.id))
    log.info("upload %s sent again with a new GPS track", upload.sha256[:12])
    if old is None or Path(old) == final:
        return []
    # and its shape, api.jobs.track_shape.shape_path (not imported: it reaches streams)
    return [Path(old), Path(old + ".points.json")]


CameraZone = Callable[[str | None], tzinfo]
"""A camera's time zone by its id (None: the site's default camera), as the worker reads the site config
(api.jobs.worker.config_camera_zone); a LookupError with the reason when it is not known."""


def parse_start_time(
    text: str | None, camera_id: str | None, camera_zone: CameraZone | None
) -> datetime | None:
    """The start time as naive UTC. One without a UTC offset is the camera's local time, as the CSV
    track times without one are (detect.pipeline.detect_footage); with no zone known, a 422."""
    if not text:
        return None
    value = parse_wall_time(text, "start_time")
    if value.tzinfo is None:
        camera = f"camera '{camera_id}'" if camera_id else "the default camera"
        try:
            if camera_zone is None:
                raise LookupError("no site config is loaded here")
            zone = camera_zone(camera_id)
        except LookupError as exc:
            raise UploadError(
                "start_time",
                f"'{text[:40]}' has no UTC offset, and the time zone of {camera} is not known: {exc}; "
                "send it with its offset (e.g. 2026-11-20T08:00:00+08:00)",
            ) from None
        value = value.replace(tzinfo=zone)
        if not in_range(value):
            raise UploadError("start_time", OUT_OF_RANGE)
    return as_utc(value)


def register_upload(
    session: Session,
    form: ReceivedForm,
    *,
    uploads_dir: Path,
    principal: Principal,
    camera_zone: CameraZone | None = None,
) -> UploadResult:
    """Check the received form and file it (moving the files into place); idempotent on the hash.

    A start_time without a UTC offset is read in the camera's time zone (`camera_zone`; without one,
    such a start_time is refused). A resend may correct the camera, the start time and the GPS track
    of an upload whose job failed, or whose track placed none of the footage's frames or passed no grid
    cell, and give the start time of footage first sent without one; such a correction raises the
    upload's `revision` (its new job's incidents get ids of their own)."""
    footage = form.files.get("file")
    if footage is None:
        raise UploadError("file", "the footage file is required")
    if footage.size == 0:
        raise UploadError("file", "empty file")
    media_type = sniff_video(footage.head)
    if media_type is None:
        named = display_filename(footage.filename) or "the file"
        raise UploadError(
            "file",
            f"{named}: not a video container we can read (MP4, MOV, MKV/WebM, AVI, FLV, MPEG-PS/TS/M2TS)",
            415,
        )
    track = form.files.get("track")
    track_type = None
    if track is not None:
        track_type = sniff_track(track.head)
        if track.size == 0 or track_type is None:
            named = display_filename(track.filename) or "the file"
            raise UploadError("track", f"{named}: not a GPS track; tracks read: {TRACK_FORMATS_READ}", 415)
    # a device's own camera wins over the camera_id it sends, as with its incidents
    # (api.cases.ingest): a device key cannot file footage as another camera
    camera_id = (principal.camera_id or form.fields.get("camera_id") or "").strip() or None
    if camera_id is not None and len(camera_id) > 64:
        raise UploadError("camera_id", "at most 64 characters")
    start_time = parse_start_time(form.fields.get("start_time"), camera_id, camera_zone)

    existing = session.scalar(select(Upload).where(Upload.sha256 == footage.sha256))
    if existing is not None:
        job = session.scalar(select(Job).where(Job.upload_id == existing.id).order_by(Job.id.desc()))
        failed = job is None or job.status == JobStatus.FAILED
        # a done job whose track placed no frame (api.jobs.track_fit), or passed no grid cell
        # (api.jobs.coverage.off_grid_warning: another day's or city's track, latitude and longitude
        # swapped): its start time or track was wrong, and may be corrected as a failed job's
        misplaced = (
            job is not None
            and job.status == JobStatus.DONE
            and (job.track_covered == 0 or bool(job.track_off_grid))
        )
        new_track = track is not None and track.sha256 != existing.track_sha256
        if new_track and not (failed or misplaced):
            form.cleanup()
            # its job ran (or will run) with the track it came with; quietly keeping the old one
            # would leave the sender believing the new positions were used
            before = "with a different GPS track" if existing.track_sha256 else "without a GPS track"
            raise UploadError(
                "track",
                f"this footage was uploaded before {before} (upload {existing.sha256[:12]}, job "
                f"{job.id if job else '-'}, {job.status if job else '-'}); a track cannot be added to or "
                "changed on footage already received unless its job failed (or its track placed no frame or "
                "passed no grid cell)",
                409,
            )
        superseded: list[Path] = []
        if new_track and track is not None:  # a correction: the new track replaces the stored one
            superseded = _replace_track(session, existing, track, track_type, uploads_dir=uploads_dir)
        form.cleanup()
        changed = {
            name: value
            for name, value, before in (
                ("camera_id", camera_id, existing.camera_id),
                ("start_time", start_time, existing.start_time),
            )
            if value is not None and value != before
        }
        if "camera_id" in changed and job is not None and not (failed or misplaced):
            # (another start_time is a retry's: a sender may work it out again each time it sends)
            name = "camera_id"
            raise UploadError(
                name,
                f"this footage was uploaded before with another {name} (upload {existing.sha256[:12]}, "
                f"job {job.id}, {job.status}); it can be changed by "
                "sending the footage again only after its job failed (or its track placed no frame or passed "
                "no grid cell)",
                409,
            )
        # a done job of footage sent without a start time: its frames were placed at its track's first
        # fix (api.jobs.track_fit), or dated when received, a guess that the start time sent now corrects
        undated = job is not None and job.status == JobStatus.DONE and existing.start_time is None
        corrected = (misplaced and (new_track or bool(changed))) or (undated and "start_time" in changed)
        if failed or corrected:  # a resend after a failed job corrects what it was sent with
            for name, value in changed.items():
                setattr(existing, name, value)
                log.info("upload %s sent again with a new %s", existing.sha256[:12], name)
            if new_track or changed:
                # the job runs with other inputs: its incidents get ids of their own, and the earlier
                # runs' cases still under review are superseded when it is done (api.jobs.superseding);
                # a plain retry keeps the revision, so what a failed run filed is not filed twice
                existing.revision = (existing.revision or 0) + 1
                log.info("upload %s corrected: revision %d", existing.sha256[:12], existing.revision)
        if job is None or failed or corrected:
            # the same footage sent again after its job failed: try once more (incident ids are
            # deterministic, so whatever the failed run already filed is not filed twice)
            job = Job(
                upload_id=existing.id,
                status=JobStatus.QUEUED,
                progress=0.0,
                attempts=0,
                revision=existing.revision or 0,
                created_at=utcnow(),
            )
            session.add(job)
            session.flush()
            log.info("upload %s sent again after a failed job; queued job %s", existing.sha256[:12], job.id)
        return UploadResult(existing, job, False, superseded)

    uploads_dir.mkdir(parents=True, exist_ok=True)
    ext = {
        "video/mp4": ".mp4",
        "video/quicktime": ".mov",
        "video/webm": ".webm",
        "video/x-matroska": ".mkv",
        "video/x-msvideo": ".avi",
        "video/x-flv": ".flv",
        "video/mpeg": ".mpg",
        "video/mp2t": ".ts",
    }[media_type]
    final = uploads_dir / f"{footage.sha256}{ext}"
    # on disk before the commit that answers 201: the sender may delete its copy then
    with disk_full_named():
        replace_durably(footage.path, final)
    track_final = None
    if track is not None:
        track_final = _file_track(
            track, track_type, footage_sha256=footage.sha256, uploads_dir=uploads_dir, replacing=False
        )
    upload = Upload(
        sha256=footage.sha256,
        size=footage.size,
        media_type=media_type,
        filename=display_filename(footage.filename),
        path=str(final),
        track_path=str(track_final) if track_final else None,
        track_sha256=track.sha256 if track else None,
        track_filename=display_filename(track.filename) if track else None,
        camera_id=camera_id,
        start_time=start_time,
        device_id=principal.device_id,
        uploaded_by=principal.label,
        created_at=utcnow(),
    )
    session.add(upload)
    try:
        session.flush()
    except IntegrityError:
        raise UploadError("file", "the same footage is being uploaded right now; retry", 409) from None
    job = Job(
        upload_id=upload.id,
        status=JobStatus.QUEUED,
        progress=0.0,
        attempts=0,
        revision=0,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    log.info("upload %s (%d bytes) filed as job %s", upload.sha256[:12], upload.size, job.id)
    return UploadResult(upload, job, True)


@dataclass(frozen=True, slots=True)
class UploadReceipt(JobView):
    """The job of an upload as its sender sees it, and whether this upload created it."""

    created: bool


def file_upload(
    factory: sessionmaker[Session],
    *,
    form: ReceivedForm,
    uploads_dir: Path,
    principal: Principal,
    camera_zone: CameraZone | None = None,
) -> UploadReceipt:
    """register_upload in a transaction of its own (blocking: run it in a thread); whatever fails,
    the received files are removed."""
    with factory() as session:
        try:
            result = register_upload(
                session, form, uploads_dir=uploads_dir, principal=principal, camera_zone=camera_zone
            )
            session.commit()
        except BaseException:
            session.rollback()
            form.cleanup()
            raise
        for path in result.superseded:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a stale file left behind; the upload is filed
                log.warning("the replaced track file %s was not removed: %s", path.name, exc)
        return UploadReceipt(**job_fields(result.job, result.upload), created=result.created)
