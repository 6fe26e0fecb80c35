"""The upload jobs' queue as a runner sees it (runner device keys only): claim a job, download its
footage and GPS track, heartbeat its lease with progress, post its incidents, finish it.

It is the in-process worker's queue (api.jobs.queue): the same claim with a lease, the same attempts
and the same retry of a job whose lease lapsed, whoever claims it next, in-process worker or runner.
Each claim makes a lease token, `runner:<runner name>:<random>`, stored as the job's lease owner and
sent back by the runner as X-Job-Lease on every call for the job; a call on a job whose lease the
token no longer holds (it lapsed and another worker took the job, or the job finished) answers 409
and the runner stops that attempt.

A job's incidents are ingested as the in-process worker ingests them (api.jobs.worker.Worker._ingest):
the upload's camera, the upload's device, the job's id on each sighting, and idempotent on the
incident id, so an attempt retried after a runner died adds no case twice (the ids are deterministic:
the same footage under the same source id, api.jobs.queue.upload_source_id, gives the same ids).
"""

from __future__ import annotations

import uuid
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import Principal
from api.cases.chalking import ChalkPolicy, ChalkResult
from api.cases.incident import IncidentInputError, IncidentPayload
from api.cases.ingest import IncidentIn, IngestResult, file_committed, match_evidence
from api.errors import NotFound
from api.http import schemas
from api.http.deps import MAX_ID, Runner, ServicesDep
from api.http.incident_form import receive_incident_form
from api.http.routes.incidents import outcome_body
from api.jobs import queue
from api.jobs.superseding import supersede_earlier_runs
from api.jobs.worker import default_config, job_track_fit, job_warning, masked, write_job_track_shape
from api.services import Services
from api.storage.evidence_store import StoredFile
from api.storage.models import Job, Upload

router = APIRouter(prefix="/api/runner/jobs", tags=["runner jobs"], responses=schemas.CALLER_ERRORS)

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="the job's id")]
Lease = Annotated[
    str,
    Header(
        alias="X-Job-Lease",
        min_length=1,
        max_length=96,
        description="the lease token the claim gave (RunnerJob.lease)",
    ),
]
LEASE_LOST = schemas.error_responses(
    409,
    described={409: "the lease is no longer held: it lapsed and another worker took the job, or it finished"},
)
NO_JOB = schemas.error_responses(404, described={404: "no such job, or not held under this lease"})
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
INCIDENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["incident"],
                    "properties": {
                        "incident": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "description": "detect.values.Incident.to_json() as JSON text (sent first)",
                        },
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the evidence files it lists",
                        },
                    },
                }
            }
        },
    }
}


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    progress: float | None = Field(None, ge=0.0, le=1.0, description="share of the footage done")


class FinishIn(BaseModel):
    """How an attempt ended: done (no error) with its incident count, or failed with the error the
    job's sender sees (a corrupt upload's reason; never a traceback)."""

    model_config = ConfigDict(extra="forbid")
    error: str | None = Field(None, min_length=1, max_length=2000)
    incidents: int = Field(0, ge=0, le=2**31 - 1, description="incidents posted by this attempt")
    warning: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="a done attempt's caveat on the footage: a file that could be analysed only in part",
    )


# --- the service functions (blocking: run in the thread pool) ---------------------------------------


def _lease_of(principal: Principal, job_id: int, lease: str) -> str:
    """The lease, when it is one of this runner's (a token of another runner is refused like a lapsed one)."""
    if not lease.startswith(f"runner:{principal.name}:"):
        raise queue.LeaseNotHeld(job_id)
    return lease


def claim_for_runner(services: Services, *, principal: Principal) -> dict[str, Any] | None:
    """Claim the next job under a new lease of this runner's (RunnerJob's fields); None when none is
    waiting. A job whose upload or footage file is gone fails at once, as the in-process worker fails
    it, and the next job is claimed."""
    settings = services.settings
    lease = f"runner:{principal.name}:{uuid.uuid4().hex[:16]}"
    while True:
        with services.factory() as session:
            claim = queue.claim_next(
                session, owner=lease, lease_s=settings.job_lease_s, max_attempts=settings.job_max_attempts
            )
            if claim is None:
                return None
            job = session.get(Job, claim.job_id)
            upload = session.get(Upload, claim.upload_id)
            assert job is not None
            missing = None
            if upload is None:
                missing = "the upload is gone"
            elif not FilePath(upload.path).is_file():
                missing = f"footage file {FilePath(upload.path).name} is missing from the uploads folder"
            if missing is not None:
                queue.finish(session, job_id=claim.job_id, owner=lease, error=missing, incidents=0)
                continue
            assert upload is not None
            return {
                "id": job.id,
                "attempt": claim.attempt,
                "lease": lease,
                "lease_s": settings.job_lease_s,
                "lease_expires_at": job.lease_expires_at,
                "revision": job.revision,
                "upload": {
                    "id": upload.id,
                    "sha256": upload.sha256,
                    "size": upload.size,
                    "media_type": upload.media_type,
                    "filename": upload.filename,
                    "suffix": FilePath(upload.path).suffix,
                    "camera_id": upload.camera_id,
                    "start_time": upload.start_time,
                    "source_id": queue.upload_source_id(upload.sha256),
                    "id_salt": queue.upload_id_salt(upload.revision),
                    "revision": upload.revision,
                    "has_track": upload.track_path is not None,
                    "track_sha256": upload.track_sha256,
                    "track_suffix": FilePath(upload.track_path).suffix if upload.track_path else None,
                    "track_filename": queue.track_name(upload) if upload.track_path else None,
                },
            }


def held_upload(services: Services, *, principal: Principal, job_id: int, lease: str) -> Upload:
    """The upload of a job this lease holds (detached); LeaseNotHeld (409) otherwise."""
    with services.factory() as session:
        _, upload = queue.held_job(session, job_id=job_id, owner=_lease_of(principal, job_id, lease))
        session.expunge(upload)
        return upload


def ingest_job_incident(
    services: Services,
    *,
    upload: Upload,
    job_id: int,
    lease: str,
    payload: IncidentPayload,
    files: list[tuple[str | None, StoredFile]],
) -> IngestResult | ChalkResult:
    """A job's incident, its evidence already stored, filed as the in-process worker files it:
    attributed to the upload's camera and device, the job's id on the sighting (or chalk mark: a
    suspected incident is chalked, api.cases.chalking); idempotent on the id."""
    evidence = match_evidence(payload, files)
    actor = Principal(kind="worker", name=lease, role="system", device_id=upload.device_id)
    inc = IncidentIn.from_payload(payload, evidence=evidence, camera_id=upload.camera_id)
    return file_committed(
        services.factory,
        inc,
        grid_cache=services.grid_cache,
        policy=services.policy,
        chalk_policy=ChalkPolicy.of(services.settings),
        actor=actor,
        job_id=job_id,
    )


def finish_for_runner(
    services: Services, *, principal: Principal, job_id: int, lease: str, body: FinishIn
) -> queue.JobView:
    """Finish the attempt (done, or failed with its error, credentials masked); the track's shape is
    written for the grid map as the in-process worker writes it. LeaseNotHeld when not ours."""
    owner = _lease_of(principal, job_id, lease)
    error = masked(body.error) if body.error else None
    config: Any = None
    fit = None
    off_grid = None
    if error is None:  # how much of the footage the track placed, shown on the job as the worker's are
        with services.factory() as session:
            _, held = queue.held_job(session, job_id=job_id, owner=owner)
            session.expunge(held)
        if held.track_path:
            try:
                config = default_config(services.settings)
            except Exception:  # noqa: BLE001  (the camera's time zone is then the default)
                config = None
            fit = job_track_fit(held, config, job_id=job_id)
            # its shape and grid cells, before the finish: a track that passed no cell says so on the job
            off_grid = write_job_track_shape(
                FilePath(held.track_path),
                job_id=job_id,
                upload=held,
                factory=services.factory,
                grid_cache=services.grid_cache,
                config=config,
            )
    superseded = None
    if error is None:  # the cases of the upload's earlier runs a corrected resend superseded
        actor = Principal(kind="worker", name=lease, role="system", device_id=held.device_id)
        with services.factory() as session:
            superseded = supersede_earlier_runs(session, job_id=job_id, actor=actor).warning
    with services.factory() as session:
        if not queue.finish(
            session,
            job_id=job_id,
            owner=owner,
            error=error,
            incidents=body.incidents,
            warning=job_warning(fit, superseded, None if error else body.warning, off_grid),
            track_covered=fit.share if fit else None,
            track_off_grid=off_grid is not None,
        ):
            raise queue.LeaseNotHeld(job_id)
        job = session.get(Job, job_id)
        assert job is not None
        upload = session.get(Upload, job.upload_id)
        return queue.job_view(job, upload)


# --- the routes ---------------------------------------------------------------------------------------


@router.post("/claim", response_model=schemas.RunnerClaim, responses=schemas.WRITE_FAULTS)
def post_claim(principal: Runner, services: ServicesDep) -> dict[str, Any]:
    """Claim the oldest waiting job (or one whose lease lapsed) under a new lease; `job` is null when
    none is waiting."""
    return {"job": claim_for_runner(services, principal=principal)}


def _file(path: str | None, what: str) -> FileResponse:
    if path is None:  # sent without one (a runner asks only when the claim says has_track)
        raise NotFound("job_id", f"no {what} came with the job's footage")
    if not FilePath(path).is_file():
        raise NotFound("job_id", f"the job's {what} file is missing")
    return FileResponse(path, media_type="application/octet-stream")


@router.get(
    "/{job_id}/footage",
    response_class=FileResponse,
    responses={200: {"content": BINARY, "description": "the footage, as uploaded"}, **NO_JOB, **LEASE_LOST},
)
def get_footage(job_id: JobId, lease: Lease, principal: Runner, services: ServicesDep) -> FileResponse:
    """The job's footage (streamed), for the runner holding its lease."""
    upload = held_upload(services, principal=principal, job_id=job_id, lease=lease)
    return _file(upload.path, "footage")


@router.get(
    "/{job_id}/track",
    response_class=FileResponse,
    responses={
        200: {"content": BINARY, "description": "the GPS track, as uploaded"},
        **schemas.error_responses(404, described={404: "no such job, or no GPS track came with it"}),
        **LEASE_LOST,
    },
)
def get_track(job_id: JobId, lease: Lease, principal: Runner, services: ServicesDep) -> FileResponse:
    """The GPS track that came with the job's footage (streamed), for the runner holding its lease."""
    upload = held_upload(services, principal=principal, job_id=job_id, lease=lease)
    return _file(upload.track_path, "GPS track")


@router.post(
    "/{job_id}/heartbeat",
    response_model=schemas.RunnerJobLease,
    responses={**schemas.BODY_ERRORS, **NO_JOB, **LEASE_LOST, **schemas.WRITE_FAULTS},
)
def post_heartbeat(
    job_id: JobId, lease: Lease, body: HeartbeatIn, principal: Runner, services: ServicesDep
) -> schemas.RunnerJobLease:
    """Renew the lease (another lease_s from now) and record the job's progress; 409: stop the attempt."""
    owner = _lease_of(principal, job_id, lease)
    with services.factory() as session:
        if not queue.heartbeat(
            session, job_id=job_id, owner=owner, lease_s=services.settings.job_lease_s, progress=body.progress
        ):
            raise queue.LeaseNotHeld(job_id)
        job = session.get(Job, job_id)
        assert job is not None and job.lease_expires_at is not None
        return schemas.RunnerJobLease(lease_expires_at=job.lease_expires_at, progress=job.progress)


@router.post(
    "/{job_id}/incidents",
    status_code=201,
    response_model=schemas.IngestOutcome,
    openapi_extra=INCIDENT_BODY,
    responses={
        200: {"model": schemas.IngestOutcome, "description": "incident already received (duplicate)"},
        **schemas.error_responses(400, 415),
        **NO_JOB,
        409: {
            "model": schemas.ErrorBody,
            "description": f"{LEASE_LOST[409]['description']}; or {schemas.INCIDENT_CONFLICT}",
        },
        **schemas.WRITE_FAULTS,
    },
)
async def post_job_incident(
    job_id: JobId,
    lease: Lease,
    request: Request,
    response: Response,
    principal: Runner,
    services: ServicesDep,
) -> dict[str, Any]:
    """One of the job's incidents with its evidence files (multipart, as POST /api/incidents takes
    them): a new case or a sighting, or for a suspected one a chalk mark (or the confirmed incident's
    case), as the in-process worker files it. Idempotent on the incident id (the same id with other
    content: 409 naming what differs, field incident.id)."""
    upload = await run_in_threadpool(held_upload, services, principal=principal, job_id=job_id, lease=lease)
    form = await receive_incident_form(
        request.headers.get("content-type"),
        request.stream(),
        store=services.store,
        max_file_bytes=services.settings.max_evidence_bytes,
    )
    if form.incident is None:
        raise IncidentInputError("incident", "Field required")
    result = await run_in_threadpool(
        ingest_job_incident,
        services,
        upload=upload,
        job_id=job_id,
        lease=lease,
        payload=form.incident,
        files=form.files,
    )
    body = outcome_body(result)
    if body["duplicate"]:
        response.status_code = 200
    return body


@router.post(
    "/{job_id}/finish",
    response_model=schemas.Job,
    responses={**schemas.BODY_ERRORS, **NO_JOB, **LEASE_LOST, **schemas.WRITE_FAULTS},
)
def post_finish(
    job_id: JobId, lease: Lease, body: FinishIn, principal: Runner, services: ServicesDep
) -> queue.JobView:
    """End the attempt: done with its incident count, or failed with a reason the job's sender reads."""
    return finish_for_runner(services, principal=principal, job_id=job_id, lease=lease, body=body)
