"""POST /api/uploads (footage streamed to disk), the same in chunks that resume after a dropped
connection (/api/upload-sessions, api.jobs.resumable), GET /api/jobs/{job_id}, and the uploads' GPS
tracks for the grid map (GET /api/uploads, GET /api/uploads/{upload_id}/track)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.http import schemas
from api.http.deps import MAX_ID, Feeder, ReadSessionDep, ServicesDep, Staff
from api.jobs import resumable
from api.jobs.queue import JobView, find_job
from api.jobs.track_shape import UploadSummary, UploadTrack, recent_uploads, upload_track
from api.jobs.uploads import (
    MAX_TRACK_BYTES,
    ReceivedForm,
    UploadError,
    UploadReceipt,
    file_upload,
    receive_multipart,
)
from api.jobs.worker import config_camera_zone
from api.services import Services

router = APIRouter(prefix="/api", tags=["uploads"], responses=schemas.CALLER_ERRORS)

# what POST /api/uploads takes with the footage, and a resumable upload's finishing request with its chunks
WITH_FOOTAGE: dict[str, object] = {
    "track": {
        "type": "string",
        "format": "binary",
        "description": "GPS track: GPX, NMEA or CSV",
    },
    "camera_id": {"type": "string", "maxLength": 64},
    "start_time": {
        "type": "string",
        "format": "date-time",
        "description": "the footage's first frame; without a UTC offset, the "
        "camera's local time (its time zone in the site config), as CSV track "
        "times without one",
    },
}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "patrol footage (video)",
                        },
                        **WITH_FOOTAGE,
                    },
                }
            }
        },
    }
}


@router.post(
    "/uploads",
    status_code=201,
    response_model=schemas.UploadReceipt,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"model": schemas.UploadReceipt, "description": "already uploaded"},
        **schemas.error_responses(
            400,
            409,
            413,
            415,
            described={
                409: "this footage was uploaded before with another GPS track and its job has not failed, "
                "or is being uploaded now",
                415: "not multipart/form-data, not a video container, or not a GPS track",
            },
        ),
        **schemas.WRITE_FAULTS,
    },
)
async def post_upload(
    request: Request, response: Response, principal: Feeder, services: ServicesDep
) -> UploadReceipt:
    """Upload footage (and optionally its GPS track); creates a detection job. Idempotent on SHA-256."""
    settings = services.settings
    declared = request.headers.get("content-length")
    if (
        declared
        and declared.isdigit()
        and int(declared) > settings.max_upload_bytes + MAX_TRACK_BYTES + 65536
    ):
        raise UploadError("file", f"larger than the limit of {settings.max_upload_bytes} bytes", 413)
    form = await receive_multipart(
        request.headers.get("content-type"),
        request.stream(),
        incoming_dir=settings.uploads_dir,
        max_file_bytes=settings.max_upload_bytes,
    )
    receipt = await run_in_threadpool(
        file_upload,
        services.factory,
        form=form,
        uploads_dir=settings.uploads_dir,
        principal=principal,
        camera_zone=config_camera_zone(settings, getattr(request.app.state, "config_loader", None)),
    )
    if not receipt.created:
        response.status_code = 200
    _wake_worker(request)
    return receipt


def _wake_worker(request: Request) -> None:
    for thread in getattr(request.app.state, "background", ()):  # an in-process worker starts now
        wake = getattr(thread, "wake", None)
        if wake is not None:
            wake()


@router.get(
    "/jobs/{job_id}",
    response_model=schemas.Job,
    responses=schemas.error_responses(404, described={404: "no job of that id visible to the caller"}),
)
def get_job(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], principal: Feeder, session: ReadSessionDep
) -> JobView:
    """A job's status (queued, running, done, failed), progress 0..1 and error."""
    return find_job(session, principal=principal, job_id=job_id)


@router.get("/uploads", response_model=schemas.UploadList)
def get_uploads(
    principal: Staff,
    session: ReadSessionDep,
    has_track: Annotated[
        bool | None, Query(description="only uploads with (true) or without (false) a GPS track")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, list[UploadSummary]]:
    """The newest uploads, with whether their GPS track is ready to draw."""
    return {"items": recent_uploads(session, has_track=has_track, limit=limit)}


@router.get(
    "/uploads/{upload_id}/track",
    response_model=schemas.UploadTrack,
    responses=schemas.error_responses(
        404, described={404: "no such upload, no GPS track with it, or its job has not finished"}
    ),
)
def get_upload_track(
    upload_id: Annotated[int, Path(ge=1, le=MAX_ID)], principal: Staff, session: ReadSessionDep
) -> UploadTrack:
    """An upload's GPS track, thinned to at most 500 [lon, lat] points (written when its job finishes)."""
    return upload_track(session, upload_id=upload_id)


# --- resumable uploads: the same footage in chunks ---------------------------------------------

SessionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the id the session was opened with")]
SESSION_404 = {404: "no upload session of that id of the caller's, or it expired"}
OFFSET_409 = {"model": schemas.OffsetConflictBody}


def _expiry(services: Services) -> timedelta:
    return timedelta(hours=services.settings.upload_session_expiry_h)


@router.post(
    "/upload-sessions",
    status_code=201,
    response_model=schemas.UploadSession,
    responses={
        200: {
            "model": schemas.UploadSession,
            "description": "the caller's unfinished session of that SHA-256",
        },
        **schemas.BODY_ERRORS,
        **schemas.error_responses(
            409,
            413,
            described={
                409: f"the caller has {resumable.MAX_OPEN_SESSIONS} unfinished sessions, or one of this "
                "SHA-256 with another size",
                413: "size over the footage size limit",
            },
        ),
        **schemas.WRITE_FAULTS,
    },
)
async def open_upload_session(
    body: schemas.UploadSessionOpen,
    request: Request,
    response: Response,
    principal: Feeder,
    services: ServicesDep,
) -> resumable.SessionView:
    """Start sending footage in chunks (resumable after a dropped connection). The caller's unfinished
    session of the same SHA-256 is answered instead (200), with the offset to go on from."""
    settings = services.settings
    view, created = await run_in_threadpool(
        resumable.open_session,
        services.factory,
        principal=principal,
        sha256=body.sha256,
        size=body.size,
        filename=body.filename,
        camera_id=body.camera_id,
        start_time=body.start_time,
        uploads_dir=settings.uploads_dir,
        max_bytes=settings.max_upload_bytes,
        expiry=_expiry(services),
        camera_zone=config_camera_zone(settings, getattr(request.app.state, "config_loader", None)),
    )
    if not created:
        response.status_code = 200
    return view


@router.get(
    "/upload-sessions/{session_id}",
    response_model=schemas.UploadSession,
    responses=schemas.error_responses(404, described=SESSION_404),
)
async def get_upload_session(
    session_id: SessionId, principal: Feeder, services: ServicesDep
) -> resumable.SessionView:
    """How many bytes the server has (`offset`): after a dropped connection, send from there."""
    return await run_in_threadpool(
        resumable.find_session,
        services.factory,
        principal=principal,
        session_id=session_id,
        uploads_dir=services.settings.uploads_dir,
        expiry=_expiry(services),
    )


CHUNK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": f"the footage's next bytes, at most {resumable.CHUNK_MAX_BYTES}",
                }
            }
        },
    }
}


@router.patch(
    "/upload-sessions/{session_id}",
    response_model=schemas.UploadSession,
    openapi_extra=CHUNK_BODY,
    responses={
        **schemas.BODY_ERRORS,
        **schemas.error_responses(
            404,
            413,
            415,
            described={
                **SESSION_404,
                413: f"a chunk over {resumable.CHUNK_MAX_BYTES} bytes, or past the declared size",
                415: "not application/octet-stream",
            },
        ),
        409: {
            **OFFSET_409,
            "description": "`offset` is not where the received bytes end (`offset` in the "
            "answer is), or another chunk of the session is being received",
        },
        **schemas.WRITE_FAULTS,
    },
)
async def put_upload_chunk(
    session_id: SessionId,
    offset: Annotated[int, Query(ge=0, le=2**53, description="where in the footage this chunk starts")],
    request: Request,
    principal: Feeder,
    services: ServicesDep,
) -> resumable.SessionView:
    """Append a chunk of the footage at `offset`. A chunk cut off by a dropped connection is not kept:
    ask GET for the offset and send from there."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/octet-stream":
        raise UploadError("body", "must be application/octet-stream", 415)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > resumable.CHUNK_MAX_BYTES:
        raise UploadError("chunk", f"larger than the limit of {resumable.CHUNK_MAX_BYTES} bytes", 413)
    expiry = _expiry(services)
    view = await run_in_threadpool(
        resumable.find_session,
        services.factory,
        principal=principal,
        session_id=session_id,
        uploads_dir=services.settings.uploads_dir,
        expiry=expiry,
    )
    return await resumable.receive_chunk(
        services.factory,
        view,
        offset=offset,
        chunks=request.stream(),
        uploads_dir=services.settings.uploads_dir,
        expiry=expiry,
    )


FINISH_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": WITH_FOOTAGE,
                    "description": "the GPS track; a camera_id or start_time here replaces the session's",
                }
            }
        },
    }
}


@router.post(
    "/upload-sessions/{session_id}/finish",
    status_code=201,
    response_model=schemas.UploadReceipt,
    openapi_extra=FINISH_BODY,
    responses={
        200: {"model": schemas.UploadReceipt, "description": "already uploaded"},
        **schemas.BODY_ERRORS,
        **schemas.error_responses(
            404,
            413,
            415,
            described={
                **SESSION_404,
                413: "a GPS track over its limit",
                415: "not multipart/form-data, not a video container, or not a GPS track",
            },
        ),
        409: {
            **OFFSET_409,
            "description": "not all the bytes declared have come (`offset`: send from "
            "there); or as POST /api/uploads: the footage uploaded before with another GPS track",
        },
        **schemas.WRITE_FAULTS,
    },
)
async def finish_upload_session(
    session_id: SessionId, request: Request, response: Response, principal: Feeder, services: ServicesDep
) -> UploadReceipt:
    """Check the footage's size and SHA-256 (a mismatch is a 422 naming `sha256`, and the bytes are
    discarded) and file it as POST /api/uploads does: the same upload and job, idempotent on SHA-256.
    Refused otherwise (a bad track or start_time), the session stays, to finish again."""
    settings = services.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_TRACK_BYTES + 65536:
        raise UploadError("track", f"larger than the limit of {MAX_TRACK_BYTES} bytes", 413)
    form = ReceivedForm()
    if request.headers.get("content-type"):
        form = await receive_multipart(
            request.headers.get("content-type"),
            request.stream(),
            incoming_dir=settings.uploads_dir,
            max_file_bytes=0,
        )
        if "file" in form.files:
            form.cleanup()
            raise UploadError("file", "the footage comes in chunks (PATCH); finishing takes only its track")
    receipt = await run_in_threadpool(
        resumable.finish_session,
        services.factory,
        principal=principal,
        session_id=session_id,
        extra=form,
        uploads_dir=settings.uploads_dir,
        expiry=_expiry(services),
        camera_zone=config_camera_zone(settings, getattr(request.app.state, "config_loader", None)),
    )
    if not receipt.created:
        response.status_code = 200
    _wake_worker(request)
    return receipt


@router.delete(
    "/upload-sessions/{session_id}",
    response_model=schemas.UploadSession,
    responses={
        **schemas.error_responses(
            404,
            409,
            described={**SESSION_404, 409: "a chunk or the finish of the session is under way; retry"},
        ),
        **schemas.WRITE_FAULTS,
    },
)
async def delete_upload_session(
    session_id: SessionId, principal: Feeder, services: ServicesDep
) -> resumable.SessionView:
    """Give up sending this footage: the session and its bytes are removed; the session as it was.
    While a chunk or the finish of the session is under way, 409 (retry)."""
    return await run_in_threadpool(
        resumable.delete_session,
        services.factory,
        principal=principal,
        session_id=session_id,
        uploads_dir=services.settings.uploads_dir,
        expiry=_expiry(services),
    )
