"""Counts of cases by category x status x grid cell x day (or by any of these), and open-case counts
per grid cell.

Days are local days (settings.timezone_offset_h from UTC; China keeps one offset all year) of the
case's first sighting. A case the service itself rejected as superseded by a corrected resend
(api.jobs.superseding) counts nowhere, as in the periodic report (reading.not_superseded). The full
cube grows with cells x days (at 100,000 cases over 90 days, some 50,000 rows, 5 MB of JSON); a reader
that needs sums asks for them (`by`), and the database sums.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import workflow
from api.cases.reading import not_superseded, visible
from api.errors import InputError
from api.storage.db import as_utc, without_jit
from api.storage.models import UNASSIGNED, Case, GridCell


def _local_day(session: Session, offset_h: float):  # type: ignore[no-untyped-def]
    """The local day of a case's first sighting. SQLite's date() rounds a time to the millisecond (the
    last 0.5 ms of a day into the next), so it is given the stored text cut to whole seconds
    ('YYYY-MM-DD HH:MM:SS'), which never crosses a day's bound at a whole minute's offset. Its
    arguments are written into the SQL, not bound: SQLite then knows the GROUP BY's expression for the
    ORDER BY's, and sorts once (counts)."""
    minutes = int(round(offset_h * 60))
    if session.get_bind().dialect.name == "sqlite":
        seconds = func.substr(Case.first_seen, literal_column("1"), literal_column("19"))
        return func.date(seconds, literal_column(f"'{minutes:+d} minutes'"))
    return func.date(Case.first_seen + literal_column(f"interval '{minutes} minutes'"))


DIMENSIONS = ("category", "status", "grid_cell", "day")
ORDER = ("day", "category", "status", "grid_cell")  # the rows' order


def parse_dimensions(text: str | None) -> tuple[str, ...]:
    """`by` as a request sends it ("category,day"; None: all four; "" or "total": none), checked."""
    if text is None:
        return DIMENSIONS
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["total"]:
        return ()
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise InputError(
            "by",
            f"not a dimension: {', '.join(repr(n) for n in unknown)}; use any of {', '.join(DIMENSIONS)}",
        )
    return tuple(name for name in DIMENSIONS if name in names)


@dataclass(frozen=True, slots=True)
class CountRow:
    """One group's count; a dimension not grouped by is None."""

    category: str | None
    status: str | None
    grid_cell: str | None
    day: str | None  # YYYY-MM-DD, local
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
    by: Sequence[str] = DIMENSIONS,
) -> CaseCounts:
    """Case counts grouped by the dimensions in `by` (of DIMENSIONS; all four by default: category x
    status x grid cell x local day of first sighting), and their sum. An empty `by` gives the total."""
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"not a dimension: {', '.join(unknown)}")  # the route checks; a bug here
    columns = {
        "category": Case.category,
        "status": Case.status,
        "grid_cell": Case.grid_cell_id,
        "day": _local_day(session, offset_h),
    }
    chosen = [name for name in DIMENSIONS if name in by]
    grouped = [columns[name].label(name) for name in chosen]
    stmt = select(*grouped, func.count().label("n")).select_from(Case).where(not_superseded())
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
    stmt = visible(stmt, principal)
    if grouped:
        # grouped in the order the rows are sorted in, so that one sort serves both: grouped by
        # category first, SQLite walked the cases through a category index (a row lookup per case)
        # and then sorted twice; by the day first it reads the table straight through (3x faster
        # over a year at 100,000 cases: benchmarks/dashboard_stats.py)
        order = [columns[name] for name in sorted(chosen, key=ORDER.index)]
        stmt = stmt.group_by(*order).order_by(*order)
    # not_superseded(), priced per case, costs the query some 860,000 at 100,000 cases (jit_above_cost
    # 100,000, inlining and optimising from 500,000): JIT compiled for 0.1-0.4 s a query that ran in
    # 0.05-0.1 s (benchmarks/dashboard_stats.py)
    without_jit(session)
    rows = []
    for r in session.execute(stmt):
        if not r.n:
            continue  # an empty selection without groups still counts one row of 0
        values = {name: getattr(r, name) for name in chosen}
        if "day" in values:
            values["day"] = str(values["day"])
        rows.append(CountRow(**{name: values.get(name) for name in DIMENSIONS}, count=r.n))
    return CaseCounts(rows=rows, total=sum(r.count for r in rows))


def grid_geojson(session: Session, *, principal: Principal) -> dict[str, Any]:
    """The grid as a GeoJSON FeatureCollection with open-case counts per cell, those outside every cell
    (`unassigned`) and those in cells a later grid import removed (`removed`: such cases keep their
    cell, which no feature draws), so that the map's open cases add up to every open case."""
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
    drawn = {feature["id"] for feature in features} | {UNASSIGNED}
    removed = {cell_id: n for cell_id, n in open_counts.items() if cell_id not in drawn}
    return {
        "type": "FeatureCollection",
        "features": features,
        "unassigned": {"id": UNASSIGNED, "open_cases": int(open_counts.get(UNASSIGNED, 0))},
        "removed": {"open_cases": int(sum(removed.values())), "cells": sorted(removed)},
    }
