"""Evidence files, statistics and the grid map."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import FileResponse, Response, StreamingResponse

from api.accounts.accounts import Role
from api.admin_log import admin_action
from api.cases import period_report, stats
from api.cases.grids import import_cells, parse_geojson
from api.cases.reading import evidence_file
from api.errors import InputError
from api.http import schemas
from api.http.deps import Admin, Reader, ReadSessionDep, ServicesDep, SessionDep, check_range
from api.http.report_csv import report_csv
from api.jobs import coverage

router = APIRouter(prefix="/api", tags=["reports"], responses=schemas.CALLER_ERRORS)

_FILE = {"schema": {"type": "string", "format": "binary"}}
_DIMENSION = "(?:" + "|".join(stats.DIMENSIONS) + ")"
BY = rf"^(?:total|{_DIMENSION}(?:,{_DIMENSION})*)?$"  # stats.parse_dimensions' grammar, without spaces
EVIDENCE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf")


@router.get(
    "/evidence/{sha256}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file, with its media type",
            "content": {media_type: _FILE for media_type in EVIDENCE_MEDIA_TYPES},
        },
        **schemas.error_responses(404, described={404: "no such evidence visible to the caller"}),
    },
)
def get_evidence(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256")],
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
) -> Response:
    """An evidence file by its SHA-256, with its content type. From an S3 bucket it is streamed
    through the service (no redirect to the bucket: the caller's rights are checked here, and
    clients need no route to the bucket)."""
    found = evidence_file(session, principal=principal, sha256=sha256, store=services.store)
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{sha256}"'}
    content = found.content
    if content.path is not None:
        return FileResponse(content.path, media_type=found.media_type, headers=headers)
    assert content.chunks is not None
    headers["Content-Length"] = str(content.size)
    return StreamingResponse(content.chunks, media_type=found.media_type, headers=headers)


@router.get("/stats", response_model=schemas.CaseCounts)
def get_stats(
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
    since: Annotated[schemas.QueryTime | None, Query(description="first seen at or after")] = None,
    until: Annotated[schemas.QueryTime | None, Query(description="first seen at or before")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    grid_cell: Annotated[str | None, Query(max_length=64)] = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
    by: Annotated[
        str | None,
        Query(
            max_length=64,
            json_schema_extra={"pattern": BY},  # documented; stats.parse_dimensions says what is wrong
            description="the dimensions to group by, comma-separated, of category, status, grid_cell, "
            "day (default: all four; `total`: none). A dimension not grouped by is null in the rows.",
            examples=["category,day"],
        ),
    ] = None,
) -> stats.CaseCounts:
    """Case counts by category × status × grid cell × local day of first sighting, or by the
    dimensions named in `by`."""
    check_range(since, until)
    return stats.counts(
        session,
        principal=principal,
        offset_h=services.settings.timezone_offset_h,
        since=since,
        until=until,
        category=category,
        grid_cell=grid_cell,
        team=team,
        by=stats.parse_dimensions(by),
    )


PeriodSince = Annotated[schemas.QueryTime, Query(description="the period's start (included)")]
PeriodUntil = Annotated[
    schemas.QueryTime,
    Query(
        description=f"the period's end (not included), at most {period_report.MAX_PERIOD_DAYS} days after "
        "since (a longer period is a 422 naming until)"
    ),
]


@router.get("/reports/period", response_model=schemas.PeriodReport)
def get_period_report(
    principal: Reader, session: ReadSessionDep, since: PeriodSince, until: PeriodUntil
) -> period_report.PeriodReport:
    """The periodic report of [since, until): cases found, reviewed (confirmed, rejected by reason) and
    closed in it, open and awaiting review at its end (read from the cases' history, so a past period's
    report stays the same), median and 90th-percentile times, and patrol coverage; in total, per
    category, per grid cell and per cell x category. Enforcement users get their team's part: the
    cells the grid gives the team now, with their cases whatever team they were filed with, and the
    team's cases in no cell of the grid, so that the teams' reports add up to the office's."""
    check_range(since, until, longest_days=period_report.MAX_PERIOD_DAYS)
    return period_report.period_report(session, since=since, until=until, principal=principal)


@router.get(
    "/reports/period.csv",
    response_class=Response,
    responses={
        200: {
            "description": "the report as CSV (UTF-8 with a BOM): one row per cell x category, then the "
            "totals per category, per cell and overall (`*` for all); with flavour=excel its text columns "
            'as `="..."` cells, which Excel keeps as text',
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def get_period_report_csv(
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
    since: PeriodSince,
    until: PeriodUntil,
    flavour: Annotated[
        period_report.CsvFlavour,
        Query(
            description="plain (the default): the values as they are, for scripts; excel: the text "
            'columns (cell_id, cell_name, team, category) as `="..."` cells, so that Excel keeps a cell '
            "code of digits (leading zeros, more than 15 digits) as text rather than a number"
        ),
    ] = "plain",
    lang: Annotated[
        Literal["zh-CN", "en"] | None,
        Query(
            description="with flavour=excel only: the headings and the categories named in this language "
            "(the /reports page's link asks for the page's), for a person reading it in Excel; without it "
            "the column ids and category ids, as in the plain CSV"
        ),
    ] = None,
) -> Response:
    """The numbers of GET /api/reports/period as a CSV download, named by the period's bounds in the
    service's local time (gridpatrol-report-20261123-20261129.csv: its first and last local days;
    ...-excel.csv in the excel flavour)."""
    check_range(since, until, longest_days=period_report.MAX_PERIOD_DAYS)
    if lang is not None and flavour != "excel":
        raise InputError("lang", "names the columns of flavour=excel only: the plain CSV keeps its ids")
    report = period_report.period_report(session, since=since, until=until, principal=principal)
    offset_h = services.settings.timezone_offset_h
    first = period_report.file_day(report.since, offset_h)
    last = period_report.file_day(report.until, offset_h, end=True)
    suffix = "-excel" if flavour == "excel" else ""
    name = f"gridpatrol-report-{first}-{last}{suffix}.csv"
    return Response(
        report_csv(report, flavour=flavour, lang=lang).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename={name}"},
    )


@router.get("/grids", response_model=schemas.GridMap)
def get_grids(principal: Reader, session: ReadSessionDep) -> dict[str, Any]:
    """The grid cells as GeoJSON, each with its number of open cases."""
    return stats.grid_geojson(session, principal=principal)


@router.put(
    "/grids",
    response_model=schemas.GridImport,
    responses={
        **schemas.BODY_ERRORS,
        **schemas.WRITE_FAULTS,
        **schemas.error_responses(
            409, described={409: "removed or re-teamed cells hold open cases (force=true imports anyway)"}
        ),
    },
)
def put_grids(
    principal: Admin,
    session: SessionDep,
    services: ServicesDep,
    geojson: Annotated[dict[str, Any], Body(description="a FeatureCollection of Polygon/MultiPolygon cells")],
    force: Annotated[
        bool,
        Query(
            description="import although a removed or re-teamed cell holds open cases (they keep their "
            "cell and team); without it such an import is a 409 naming each cell"
        ),
    ] = False,
) -> schemas.GridImport:
    """Replace the grid cells (admin). A file that cannot be imported is a 422 naming each bad
    feature; one that would strand open cases (their cell removed or given to another team) is a 409
    naming each such cell, unless `force`."""
    cells = parse_geojson(geojson)
    replacement = import_cells(session, cells=cells, force=force)
    session.commit()
    admin_action(principal, "grid.import", "grid", cells=len(cells), forced=force or None)
    services.grid_cache.invalidate()
    return schemas.GridImport(imported=len(cells), warnings=replacement.warnings())


@router.get("/coverage", response_model=schemas.Coverage)
def get_coverage(
    principal: Reader,
    session: ReadSessionDep,
    since: Annotated[schemas.QueryTime | None, Query(description="entered at or after")] = None,
    until: Annotated[schemas.QueryTime | None, Query(description="entered before")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500, description="cells a page")] = 50,
    passes_per_cell: Annotated[
        int,
        Query(ge=1, le=coverage.MAX_PASSES_PER_CELL, description="the latest passes each cell lists"),
    ] = coverage.PASSES_PER_CELL,
) -> dict[str, Any]:
    """Which grid cells the patrols passed in the window, and when: each cell's latest passes (from
    the GPS tracks of uploads whose jobs are done), how many it has in all, the metres driven and the
    time spent in it; a page of cells (by id) at a time, as /api/cases pages its cases, `total` the
    cells passed in the window. Enforcement users get their team's cells only (those the grid gives
    the team now), as in their periodic report."""
    check_range(since, until)
    found = coverage.coverage(
        session,
        since=since,
        until=until,
        page=page,
        per_page=per_page,
        passes_per_cell=passes_per_cell,
        team=principal.team if principal.role == Role.ENFORCEMENT else None,
    )
    return {
        "total": found.total,
        "page": found.page,
        "per_page": found.per_page,
        "passes_per_cell": found.passes_per_cell,
        "cells": [
            {
                "cell_id": cell.cell_id,
                "team": cell.team,
                "metres": round(cell.metres, 1),
                "seconds": round(cell.seconds, 1),
                "passes_total": cell.passes_total,
                "passes": [
                    {
                        "upload_id": row.upload_id,
                        "entered_at": row.entered_at,
                        "left_at": row.left_at,
                        "metres": row.metres,
                    }
                    for row in cell.passes
                ],
            }
            for cell in found.cells
        ],
    }
