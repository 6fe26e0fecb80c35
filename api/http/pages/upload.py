"""The upload page (admins and operators): footage and its optional GPS track sent to POST /api/uploads
with upload progress, then the job's progress from GET /api/jobs/{id} until it is done or failed,
then the cases it produced.

The start time is typed as the camera's clock shows it (a dashcam's burnt-in time), whatever the
browser's own time zone: the page is given each site-config camera's time zone (the zone the API reads
a start_time without an offset in), the default camera's, and the site's offset for a camera the config
does not know, and sends the time with that offset.

upload.js does the sending and the polling against the API, as any client would. The cases a job
produced are the ones with a sighting filed by that job (Sighting.job_id); GET /api/cases has no
filter for that, so this page renders them as a fragment (GET /upload/jobs/{job_id}/cases), read the
way the API reads cases (api.cases.reading.visible).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import Principal, Role
from api.cases.reading import visible
from api.http.pages.render import environment, render, script_json, translator
from api.http.pages.session import ServicesDep, person_with
from api.http.pages.views import camera_offset, evidence_url, incident_of, show_time
from api.jobs.uploads import MAX_TRACK_BYTES
from api.jobs.worker import config_camera_zones
from api.services import Services
from api.storage.models import MAX_ID, Case, Sighting

router = APIRouter(include_in_schema=False)

Uploader = Annotated[Principal, Depends(person_with(Role.ADMIN, Role.OPERATOR))]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAX_LISTED = 200
VIDEO_TYPES = "video/*,.mp4,.m4v,.mov,.3gp,.mkv,.webm,.avi,.flv,.mpg,.mpeg,.ts,.mts,.m2ts"
# a dashcam writes NMEA as .nmea, .log or .txt (Novatek), or .gps (BlackVue, each sentence after a [ms] time)
TRACK_TYPES = ".gpx,.nmea,.gps,.log,.txt,.csv,application/gpx+xml,text/csv"


def _minutes_now(zone: str) -> int | None:
    """A zone's UTC offset now, in minutes (the page's fallback where its browser has no such zone)."""
    try:
        offset = datetime.now(ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return int((offset or timedelta(0)).total_seconds() // 60)


def camera_clocks(request: Request, services: Services) -> dict[str, Any]:
    """What the start time field is read at: each camera's zone (with its offset now), the default
    camera's (no camera typed), and the site's offset in minutes (a camera the config does not know)."""
    zones, default = config_camera_zones(services.settings, getattr(request.app.state, "config_loader", None))
    return {
        "cameras": {camera: {"zone": zone, "minutes": _minutes_now(zone)} for camera, zone in zones.items()},
        "default": {"zone": default, "minutes": _minutes_now(default)} if default else None,
        "site_minutes": round(services.settings.timezone_offset_h * 60),
    }


@router.get("/upload", response_class=HTMLResponse)
async def upload_page(request: Request, principal: Uploader, services: ServicesDep) -> Response:
    t = translator(request)
    clocks = await run_in_threadpool(camera_clocks, request, services)
    i18n = {**t.subset("upload."), **t.subset("error."), **t.subset("common.")}
    return render(
        request,
        "upload/page.html",
        principal=principal,
        max_file_bytes=services.settings.max_upload_bytes,
        max_track_bytes=MAX_TRACK_BYTES,
        video_types=VIDEO_TYPES,
        track_types=TRACK_TYPES,
        cameras=sorted(clocks["cameras"]),
        clocks_json=script_json(clocks),
        i18n_json=script_json(i18n),
    )


def _job_cases(session: Session, principal: Principal, job_id: int) -> list[dict[str, object]]:
    """The cases with a sighting filed by this job (newest first), each with that sighting's crop."""
    by_job = select(Sighting.case_id).where(Sighting.job_id == job_id)
    stmt = visible(select(Case).where(Case.id.in_(by_job)), principal)
    stmt = stmt.options(selectinload(Case.sightings).selectinload(Sighting.evidence))
    cases = session.scalars(stmt.order_by(Case.last_seen.desc(), Case.id.desc()).limit(MAX_LISTED)).all()
    listed = []
    for case in cases:
        sighting = next((s for s in reversed(case.sightings) if s.job_id == job_id), case.sightings[-1])
        crop = next((link.sha256 for link in sighting.evidence if link.role == "crop"), None)
        listed.append(
            {
                "id": case.id,
                "number": case.number,
                "category": case.category,
                "status": case.status,
                "grid_cell": case.grid_cell_id,
                "team": case.team,
                "crop": evidence_url(crop) if crop else None,
                "seen": show_time(sighting.seen_at, camera_offset(incident_of(sighting))),
            }
        )
    return listed


@router.get("/upload/jobs/{job_id}/cases", response_class=HTMLResponse)
async def job_cases(request: Request, job_id: JobId, principal: Uploader, services: ServicesDep) -> Response:
    """The cases a job produced, as a fragment of the upload page."""

    def read() -> list[dict[str, object]]:
        with services.read_factory() as session:
            return _job_cases(session, principal, job_id)

    items = await run_in_threadpool(read)
    html = environment().get_template("upload/cases.html").render(t=translator(request), items=items)
    return HTMLResponse(html)
