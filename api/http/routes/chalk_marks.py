"""Chalk marks: the suspected sightings of parked vehicles (api.cases.chalking), for operators to see,
with their evidence files (linked to no case until a mark is confirmed: served here).

Marks have no grid cell or team, so the roles that see every case read them (admin, operator,
viewer); an enforcement user, who sees only the team's cases, does not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, Response, StreamingResponse

from api.accounts.accounts import Principal, Role
from api.cases.chalking import ChalkPolicy, MarkFilter, MarkPage, mark_evidence_file, mark_page
from api.http import schemas
from api.http.deps import MAX_ID, ReadSessionDep, ServicesDep, check_range, require
from api.http.routes.reports import EVIDENCE_MEDIA_TYPES

router = APIRouter(prefix="/api", tags=["chalk marks"], responses=schemas.CALLER_ERRORS)

MarkReader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]


@router.get("/chalk-marks", response_model=schemas.ChalkMarkPage)
def get_chalk_marks(
    principal: MarkReader,
    session: ReadSessionDep,
    services: ServicesDep,
    since: Annotated[schemas.QueryTime | None, Query(description="last seen at or after (ISO 8601)")] = None,
    until: Annotated[
        schemas.QueryTime | None, Query(description="first seen at or before (ISO 8601)")
    ] = None,
    status: Annotated[
        Literal["open", "confirmed", "rejected", "expired", "superseded"] | None,
        Query(
            description="confirmed: its case stands; rejected: confirmed, its case rejected since (neither "
            "is the other); expired: open, and seen longer ago than GRIDPATROL_CHALK_MAX_HOURS; superseded: "
            "open, of an upload's earlier run that a corrected resend superseded (neither open nor expired)"
        ),
    ] = None,
    plate: Annotated[str | None, Query(max_length=32)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MarkPage:
    """Suspected sightings (one pass of a parked vehicle each; no case until a second pass confirms
    one), latest seen first, a page at a time, each with its evidence files."""
    check_range(since, until)
    return mark_page(
        session,
        filters=MarkFilter(since=since, until=until, status=status, plate=plate),
        chalk_policy=ChalkPolicy.of(services.settings),
        page=page,
        per_page=per_page,
        sealed_too=principal.role == Role.ADMIN,
    )


@router.get(
    "/chalk-marks/{mark_id}/evidence/{sha256}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file, with its media type",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in EVIDENCE_MEDIA_TYPES},
        },
        **schemas.error_responses(404, described={404: "no such evidence of that chalk mark"}),
    },
)
def get_chalk_mark_evidence(
    mark_id: Annotated[int, Path(ge=1, le=MAX_ID, description="the chalk mark's id")],
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256")],
    principal: MarkReader,
    session: ReadSessionDep,
    services: ServicesDep,
) -> Response:
    """An evidence file of a chalk mark (as GET /api/evidence/{sha256} serves a case's; a sealed
    original is not served)."""
    found = mark_evidence_file(session, mark_id=mark_id, sha256=sha256, store=services.store)
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{sha256}"'}
    content = found.content
    if content.path is not None:
        return FileResponse(content.path, media_type=found.media_type, headers=headers)
    assert content.chunks is not None
    headers["Content-Length"] = str(content.size)
    return StreamingResponse(content.chunks, media_type=found.media_type, headers=headers)
