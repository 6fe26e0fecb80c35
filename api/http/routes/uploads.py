"""POST /api/uploads (footage streamed to disk) and GET /api/jobs/{job_id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from api.http.deps import Feeder, ReadSessionDep, ServicesDep, not_found
from api.jobs.queue import job_view
from api.jobs.uploads import MAX_TRACK_BYTES, UploadError, receive_multipart, register_upload
from api.storage.models import Job, Upload

router = APIRouter(prefix="/api", tags=["uploads"])

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
                        "start_time": {"type": "string", "format": "date-time"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/uploads",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"description": "already uploaded"}},
)
async def post_upload(request: Request, principal: Feeder, services: ServicesDep) -> Any:
    """Upload footage (and optionally its GPS track); creates a detection job. Idempotent on SHA-256."""
    from starlette.concurrency import run_in_threadpool

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

    def file_it() -> dict[str, Any]:
        with services.factory() as session:
            try:
                result = register_upload(session, form, uploads_dir=settings.uploads_dir, principal=principal)
                session.commit()
            except BaseException:
                session.rollback()
                form.cleanup()
                raise
            body = job_view(result.job, result.upload)
            body["created"] = result.created
            return body

    body = await run_in_threadpool(file_it)
    return JSONResponse(body, status_code=201 if body["created"] else 200)


@router.get("/jobs/{job_id}")
def get_job(
    job_id: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: Feeder, session: ReadSessionDep
) -> dict[str, Any]:
    """A job's status (queued, running, done, failed), progress 0..1 and error."""
    job = session.get(Job, job_id)
    upload = session.get(Upload, job.upload_id) if job else None
    if job is None or (
        principal.role == "device" and (upload is None or upload.device_id != principal.device_id)
    ):
        raise not_found("job_id", f"no job {job_id}")
    return job_view(job, upload)
