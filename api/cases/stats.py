"""Counts of cases by category x status x grid cell x day, and open-case counts per grid cell.

Days are local days (settings.timezone_offset_h from UTC; China keeps one offset all year) of the
case's first sighting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import workflow
from api.cases.reading import visible
from api.storage.db import as_utc
from api.storage.models import UNASSIGNED, Case, GridCell


def _local_day(session: Session, offset_h: float):  # type: ignore[no-untyped-def]
    minutes = int(round(offset_h * 60))
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Case.first_seen, f"{minutes:+d} minutes")
    return func.date(Case.first_seen + literal_column(f"interval '{minutes} minutes'"))


@dataclass(frozen=True, slots=True)
class CountRow:
    category: str
    status: str
    grid_cell: str
    day: str  # YYYY-MM-DD, local
    count: int


@dataclass(frozen=True, slots=True)
class CaseCounts:
    rows: list[CountRow]
    total: int


def counts(
    session: Session,
    *,
    principal: Principal,
    offset_h: float,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str | None = None,
    grid_cell: str | None = None,
    team: str | None = None,
) -> CaseCounts:
    """Case counts by category x status x grid cell x local day of first sighting, and their sum."""
    day = _local_day(session, offset_h).label("day")
    stmt = select(Case.category, Case.status, Case.grid_cell_id, day, func.count().label("n"))
    if since:
        stmt = stmt.where(Case.first_seen >= as_utc(since))
    if until:
        stmt = stmt.where(Case.first_seen <= as_utc(until))
    if category:
        stmt = stmt.where(Case.category == category)
    if grid_cell:
        stmt = stmt.where(Case.grid_cell_id == grid_cell)
    if team:
        stmt = stmt.where(Case.team == team)
    stmt = visible(stmt, principal).group_by(Case.category, Case.status, Case.grid_cell_id, day)
    stmt = stmt.order_by(day, Case.category, Case.status, Case.grid_cell_id)
    rows = [CountRow(r.category, r.status, r.grid_cell_id, str(r.day), r.n) for r in session.execute(stmt)]
    return CaseCounts(rows=rows, total=sum(r.count for r in rows))


def grid_geojson(session: Session, *, principal: Principal) -> dict[str, Any]:
    """The grid as a GeoJSON FeatureCollection with open-case counts per cell."""
    stmt = visible(
        select(Case.grid_cell_id, func.count()).where(Case.status.in_(workflow.OPEN_STATUSES)), principal
    ).group_by(Case.grid_cell_id)
    open_counts = {row[0]: row[1] for row in session.execute(stmt)}
    features = []
    for cell in session.scalars(select(GridCell).order_by(GridCell.id)):
        features.append(
            {
                "type": "Feature",
                "id": cell.id,
                "geometry": json.loads(cell.geometry),
                "properties": {
                    "id": cell.id,
                    "name": cell.name,
                    "street": cell.street,
                    "community": cell.community,
                    "team": cell.team,
                    "open_cases": int(open_counts.get(cell.id, 0)),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "unassigned": {"id": UNASSIGNED, "open_cases": int(open_counts.get(UNASSIGNED, 0))},
    }
