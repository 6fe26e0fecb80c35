"""Evidence files, statistics and the grid map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import FileResponse

from api.cases import stats
from api.cases.grids import import_cells, parse_geojson
from api.cases.reading import may_see_evidence
from api.http.deps import Admin, Reader, ReadSessionDep, ServicesDep, SessionDep, not_found
from api.storage.models import EvidenceBlob

router = APIRouter(prefix="/api", tags=["reports"])


@router.get(
    "/evidence/{sha256}", response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}}}}
)
def get_evidence(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256")],
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
) -> FileResponse:
    """An evidence file by its SHA-256, with its content type."""
    blob = session.get(EvidenceBlob, sha256)
    if blob is None or not may_see_evidence(session, principal, sha256):
        raise not_found("sha256", f"no evidence {sha256}")
    path = services.store.path_for(sha256)
    if not path.is_file():
        raise not_found(
            "sha256", f"evidence {sha256} is missing from the store (run gridpatrol evidence verify)"
        )
    return FileResponse(
        path,
        media_type=blob.media_type,
        headers={"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{sha256}"'},
    )


@router.get("/stats")
def get_stats(
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
    since: Annotated[datetime | None, Query(description="first seen at or after")] = None,
    until: Annotated[datetime | None, Query(description="first seen at or before")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    grid_cell: Annotated[str | None, Query(max_length=64)] = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Case counts by category × status × grid cell × local day of first sighting."""
    rows = stats.counts(
        session,
        principal,
        offset_h=services.settings.timezone_offset_h,
        since=since,
        until=until,
        category=category,
        grid_cell=grid_cell,
        team=team,
    )
    return {"rows": rows, "total": sum(r["count"] for r in rows)}


@router.get("/grids")
def get_grids(principal: Reader, session: ReadSessionDep) -> dict[str, Any]:
    """The grid cells as GeoJSON, each with its number of open cases."""
    return stats.grid_geojson(session, principal)


@router.put("/grids")
def put_grids(
    principal: Admin,
    session: SessionDep,
    services: ServicesDep,
    geojson: Annotated[dict[str, Any], Body(description="a FeatureCollection of Polygon/MultiPolygon cells")],
) -> dict[str, int]:
    """Replace the grid cells (admin)."""
    cells = parse_geojson(geojson)
    count = import_cells(session, cells)
    session.commit()
    services.grid_cache.invalidate()
    return {"imported": count}
