"""Jobs: one per upload, claimed by workers through the database with a lease.

A worker claims a queued job (or a running one whose lease has lapsed: its worker died) with a
conditional UPDATE, so two workers never hold the same job. While it works it extends the lease
(heartbeat); a job retried after a crash creates no duplicate cases because incident ids are
deterministic and ingestion is idempotent on them. After `max_attempts` claims a job fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.errors import InputError, NotFound
from api.storage.db import utcnow
from api.storage.models import Job, Upload

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Claim:
    job_id: int
    upload_id: int
    attempt: int


def claim_next(session: Session, *, owner: str, lease_s: float, max_attempts: int) -> Claim | None:
    """Claim the oldest runnable job for `owner`; commits. None when there is nothing to do."""
    now = utcnow()
    runnable = or_(
        Job.status == JobStatus.QUEUED, (Job.status == JobStatus.RUNNING) & (Job.lease_expires_at < now)
    )
    candidates = session.execute(
        select(Job.id, Job.upload_id, Job.attempts, Job.status).where(runnable).order_by(Job.id).limit(5)
    ).all()
    for job_id, upload_id, attempts, status in candidates:
        if attempts >= max_attempts:
            session.execute(
                update(Job)
                .where(Job.id == job_id, runnable)
                .values(
                    status=JobStatus.FAILED,
                    error=f"gave up after {attempts} attempts (the worker stopped mid-job each time)",
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                )
            )
            session.commit()
            continue
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == attempts, runnable)
            .values(
                status=JobStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                attempts=attempts + 1,
                started_at=now,
                error=None,
                warning=None,
                track_covered=None,
                track_off_grid=False,
            )
        )
        session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            if status == JobStatus.RUNNING:
                log.warning(
                    "job %s: previous worker's lease lapsed; retrying (attempt %d)", job_id, attempts + 1
                )
            return Claim(job_id, upload_id, attempts + 1)
    return None


def heartbeat(session: Session, *, job_id: int, owner: str, lease_s: float, progress: float | None) -> bool:
    """Extend the lease (and store progress); False when the job is no longer ours."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_s)}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING)
        .values(**values)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(
    session: Session,
    *,
    job_id: int,
    owner: str,
    error: str | None,
    incidents: int,
    warning: str | None = None,
    track_covered: float | None = None,
    track_off_grid: bool = False,
) -> bool:
    """End the job, done or failed with `error`; a done one may carry a `warning`, the share of its
    frames its GPS track placed (`track_covered`) and whether that track passed no grid cell while the
    grid had some (`track_off_grid`). False when the job is no longer `owner`'s."""
    values: dict[str, Any] = {
        "status": JobStatus.FAILED if error else JobStatus.DONE,
        "error": error,
        "warning": None if error else warning,
        "track_covered": None if error else track_covered,
        "track_off_grid": not error and track_off_grid,
        "incidents": incidents,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": utcnow(),
    }
    if not error:
        values["progress"] = 1.0
    result = session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(**values))
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class UploadInfo:
    id: int
    sha256: str
    size: int
    media_type: str
    camera_id: str | None
    has_track: bool
    track_filename: str | None  # the GPS track's file name as sent (sanitised); None: not known
    revision: int  # the upload's current revision: over its job's, that job is a superseded run


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its sender sees it: status, progress in [0, 1] (4 decimals), error, warning (a done
    job's caveat), whether its GPS track passed no grid cell (`track_off_grid`: the footage may be sent
    again with the right track), the upload revision it runs for (lower than its upload's,
    `upload.revision`: an earlier run a corrected resend superseded), and its upload."""

    id: int
    status: str
    progress: float
    error: str | None
    warning: str | None
    track_off_grid: bool
    attempts: int
    revision: int
    incidents: int
    upload: UploadInfo | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def job_fields(job: Job, upload: Upload | None) -> dict[str, Any]:
    """The fields of a JobView (and of what extends it, api.jobs.uploads.UploadReceipt)."""
    return {
        "id": job.id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "error": job.error,
        "warning": job.warning,
        "track_off_grid": bool(job.track_off_grid),
        "attempts": job.attempts,
        "revision": job.revision,
        "incidents": job.incidents,
        "upload": None
        if upload is None
        else UploadInfo(
            id=upload.id,
            sha256=upload.sha256,
            size=upload.size,
            media_type=upload.media_type,
            camera_id=upload.camera_id,
            has_track=upload.track_path is not None,
            track_filename=upload.track_filename if upload.track_path is not None else None,
            revision=upload.revision,
        ),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def track_name(upload: Upload) -> str:
    """The name a job's messages give the upload's GPS track: the file name it was sent as (sanitised on
    receipt, api.jobs.uploads.display_filename), else the stored file's (a track sent without a name, or
    before that name was kept)."""
    return upload.track_filename or Path(upload.track_path or "").name or "track"


def job_view(job: Job, upload: Upload | None) -> JobView:
    return JobView(**job_fields(job, upload))


def find_job(session: Session, *, principal: Principal, job_id: int) -> JobView:
    """A job the caller may see (a device sees only the jobs of its own uploads); NotFound otherwise."""
    job = session.get(Job, job_id)
    upload = session.get(Upload, job.upload_id) if job else None
    if job is None or (
        principal.kind == "device" and (upload is None or upload.device_id != principal.device_id)
    ):
        raise NotFound("job_id", f"no job {job_id}")
    return job_view(job, upload)


def upload_source_id(sha256: str) -> str:
    """The source id an upload's footage is analysed under (detect_footage's `source_id`): incident
    ids derive from it, so every worker, in-process or a runner's, must use this one."""
    return f"upload-{sha256[:16]}"


def upload_id_salt(revision: int) -> str:
    """The salt of an upload's incident ids at this revision (detect_footage's `id_salt`): none at
    revision 0, so the ids of footage sent once stay what they always were; a revision a resend's
    correction made (api.jobs.uploads.register_upload) gets ids of its own, the same at every run of it."""
    return f"revision-{revision}" if revision > 0 else ""


class LeaseNotHeld(InputError):
    """A runner's call on a job whose lease it no longer holds (409): the lease lapsed and another
    worker claimed the job, or the job finished. The runner stops that attempt."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            "X-Job-Lease",
            f"job {job_id} is not held under this lease (it lapsed and the job went to another worker, "
            "or the job has finished); stop this attempt",
            status=409,
        )


def held_job(session: Session, *, job_id: int, owner: str) -> tuple[Job, Upload]:
    """The job and its upload while `owner` holds the job's lease (running, ours); LeaseNotHeld
    otherwise. A lapsed lease nobody has claimed since is still held: the heartbeat renews it."""
    job = session.get(Job, job_id)
    upload = session.get(Upload, job.upload_id) if job is not None else None
    if job is None or upload is None or job.status != JobStatus.RUNNING or job.lease_owner != owner:
        raise LeaseNotHeld(job_id)
    return job, upload
