"""The shape of an upload's GPS track, for drawing it on the grid map.

The API may not read track files itself (that needs streams, which only the worker imports), so the
worker, when it finishes the job of an upload that came with a track, writes a thinned copy of the
track's positions next to the track file: `<track_path>.points.json`, a JSON list of
`[lon, lat]` pairs (WGS84 degrees, GeoJSON's order, 6 decimals: about 0.1 m) in time order, at most
MAX_POINTS of them. The API serves that file as it is (`upload_track`), and lists recent uploads with
whether their shape is there (`recent_uploads`).

streams is imported inside `write_track_shape` only, so this module stays light for the API.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.storage.models import Job, Upload

log = logging.getLogger(__name__)

MAX_POINTS = 500
SHAPE_SUFFIX = ".points.json"

LonLat = tuple[float, float]


def shape_path(track_path: str | os.PathLike[str]) -> Path:
    """Where the thinned shape of a track file is kept: beside it, `<track file>.points.json`."""
    path = Path(track_path)
    return path.with_name(path.name + SHAPE_SUFFIX)


def thin(points: Sequence[LonLat], max_points: int = MAX_POINTS) -> list[LonLat]:
    """At most `max_points` of `points`, evenly spaced by index, the first and the last always kept.

    Spacing is by index (the fixes' order in time), not by distance: a track logged at a steady rate
    keeps its shape, and a vehicle standing still keeps few points of where it stood.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    n = len(points)
    if n <= max_points:
        return list(points)
    step = (n - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def write_track_shape(track_path: Path, *, max_points: int = MAX_POINTS) -> Path:
    """Read a GPS track file (GPX, NMEA or CSV) and write its thinned shape beside it (atomically).

    Returns the shape's path. A track that cannot be read raises streams.TrackError (named, with the
    file and the line); the worker only calls this after the pipeline has read the same track. The
    fixes the jump check drops (GpsTrack.without_jumps: a stale first position, 0, 0) are not drawn,
    as the pipeline and the coverage leave them out.
    """
    from streams.gps import load_track

    track = load_track(track_path).without_jumps()
    points = thin([(round(fix.lon, 6), round(fix.lat, 6)) for fix in track], max_points)
    target = shape_path(track_path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".shape-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump([list(p) for p in points], fh, separators=(",", ":"))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("track %s: shape of %d of %d fixes written", track_path.name, len(points), len(track))
    return target


def read_track_shape(track_path: str | os.PathLike[str]) -> list[LonLat] | None:
    """The stored shape of a track file, or None when the worker has not written one (yet)."""
    try:
        text = shape_path(track_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return [(float(lon), float(lat)) for lon, lat in json.loads(text)]


@dataclass(frozen=True, slots=True)
class UploadTrack:
    """An upload's track as the map draws it: [lon, lat] pairs in time order."""

    upload_id: int
    camera_id: str | None
    points: list[LonLat]


def upload_track(session: Session, *, upload_id: int) -> UploadTrack:
    """The thinned track of an upload; NotFound when there is no such upload, it came without a track,
    or its job has not finished yet (the shape is written when it does)."""
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound("upload_id", f"no upload {upload_id}")
    if upload.track_path is None:
        raise NotFound("upload_id", f"upload {upload_id} came without a GPS track")
    points = read_track_shape(upload.track_path)
    if points is None:
        raise NotFound(
            "upload_id", f"the track of upload {upload_id} is not ready (its job has not finished)"
        )
    return UploadTrack(upload_id=upload.id, camera_id=upload.camera_id, points=points)


@dataclass(frozen=True, slots=True)
class UploadSummary:
    """An upload in a listing, with its latest job; `track_ready`: its track's shape is there
    (GET /api/uploads/{id}/track); `revision`: the upload's, over 0 once a resend corrected it."""

    id: int
    sha256: str
    filename: str | None
    camera_id: str | None
    start_time: datetime | None
    created_at: datetime
    has_track: bool
    track_filename: str | None  # the track's file name as sent (sanitised)
    track_ready: bool
    revision: int
    job_id: int | None
    job_status: str | None
    job_warning: str | None  # the latest job's caveat (a track that placed no frame ...), as GET /api/jobs
    job_error: str | None  # why the latest job failed


def recent_uploads(
    session: Session, *, has_track: bool | None = None, limit: int = 50
) -> list[UploadSummary]:
    """The newest uploads first; with or without a GPS track only when `has_track` says so."""
    stmt = select(Upload).order_by(Upload.created_at.desc(), Upload.id.desc()).limit(limit)
    if has_track is True:
        stmt = stmt.where(Upload.track_path.is_not(None))
    elif has_track is False:
        stmt = stmt.where(Upload.track_path.is_(None))
    uploads = list(session.scalars(stmt))
    latest = (
        select(func.max(Job.id)).where(Job.upload_id.in_([u.id for u in uploads])).group_by(Job.upload_id)
    )
    jobs = {job.upload_id: job for job in session.scalars(select(Job).where(Job.id.in_(latest)))}
    summaries = []
    for upload in uploads:
        job = jobs.get(upload.id)
        summaries.append(
            UploadSummary(
                id=upload.id,
                sha256=upload.sha256,
                filename=upload.filename,
                camera_id=upload.camera_id,
                start_time=upload.start_time,
                created_at=upload.created_at,
                has_track=upload.track_path is not None,
                track_filename=upload.track_filename if upload.track_path is not None else None,
                track_ready=upload.track_path is not None and shape_path(upload.track_path).is_file(),
                revision=upload.revision,
                job_id=job.id if job else None,
                job_status=job.status if job else None,
                job_warning=job.warning if job else None,
                job_error=job.error if job else None,
            )
        )
    return summaries
