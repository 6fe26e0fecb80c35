"""POST /api/uploads (footage streamed to disk), GET /api/jobs/{job_id}, and the uploads' GPS tracks
for the grid map (GET /api/uploads, GET /api/uploads/{upload_id}/track)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.http import schemas
from api.http.deps import MAX_ID, Feeder, ReadSessionDep, ServicesDep, Staff
from api.jobs.queue import JobView, find_job
from api.jobs.track_shape import UploadSummary, UploadTrack, recent_uploads, upload_track
from api.jobs.uploads import MAX_TRACK_BYTES, UploadError, UploadReceipt, file_upload, receive_multipart
from api.jobs.worker import config_camera_zone

router = APIRouter(prefix="/api", tags=["uploads"], responses=schemas.CALLER_ERRORS)

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
    for thread in getattr(request.app.state, "background", ()):  # an in-process worker starts now
        wake = getattr(thread, "wake", None)
        if wake is not None:
            wake()
    return receipt


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
