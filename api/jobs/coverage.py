"""Which grid cells a patrol passed and when (issue 12's coverage, for the daily-patrol reports).

From an upload's GPS track, when its job is done: each run of consecutive fixes in one grid cell is a
pass (entered at the first fix in the cell, left at the first fix outside it, or the track's last fix
in it); the metres of a step between two fixes count for the cell each end is in, half each when they
differ. A gap between fixes longer than `max_gap_s` (a tunnel, a logger pause) ends the pass: nobody
knows where the vehicle drove meanwhile. Fixes outside every cell belong to no pass. The passes of an
upload are written anew each time its job is done (a retried job writes the same rows), and read back
by time window for GET /api/coverage.

streams (to read tracks and measure distances) is imported inside functions only: this module stays
light for the API, which reads coverage without reading tracks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Float, cast, delete, func, select
from sqlalchemy.orm import Session, aliased

from api.cases.grids import Assignment, GridIndex
from api.storage.db import as_utc
from api.storage.models import UNASSIGNED, GridCell, UploadCoverage

log = logging.getLogger(__name__)

MAX_GAP_S = 30.0  # streams.gps.DEFAULT_MAX_GAP_S: beyond it the track does not say where the car was

Fix = tuple[datetime, float, float]  # time (aware), lat, lon


@dataclass
class CellPass:
    cell_id: str
    team: str | None
    entered_at: datetime
    left_at: datetime
    metres: float = 0.0


def _naive_utc(when: datetime) -> datetime:
    """How the database keeps times: naive UTC (a naive time is UTC already)."""
    utc = as_utc(when)
    assert utc is not None
    return utc


def _metres(a: Fix, b: Fix) -> float:
    """The distance between two fixes (streams.gps.distance_m)."""
    from streams.frame import GeoPoint
    from streams.gps import distance_m

    return distance_m(GeoPoint(a[1], a[2]), GeoPoint(b[1], b[2]))


def cell_passes(
    fixes: Sequence[Fix], lookup: Callable[[float, float], Assignment | None], *, max_gap_s: float = MAX_GAP_S
) -> list[CellPass]:
    """The passes through grid cells of a track's fixes (in time order); see the module docstring."""
    passes: list[CellPass] = []
    current: CellPass | None = None
    previous: Fix | None = None
    for fix in fixes:
        cell = lookup(fix[1], fix[2])
        gap = previous is None or (fix[0] - previous[0]).total_seconds() > max_gap_s
        step = 0.0 if gap or previous is None else _metres(previous, fix)
        if current is not None:
            if gap:  # left at its last fix: where it drove after is not known
                passes.append(current)
                current = None
            elif cell is None or cell.cell_id != current.cell_id:  # left here: half the step was in it
                current.metres += step / 2
                current.left_at = fix[0]
                passes.append(current)
                current = None
            else:
                current.metres += step
                current.left_at = fix[0]
        if current is None and cell is not None:
            current = CellPass(cell.cell_id, cell.team, fix[0], fix[0], step / 2)
        previous = fix
    if current is not None:
        passes.append(current)
    return passes


def _in_cell(grid: GridIndex, lat: float, lon: float) -> Assignment | None:
    """The grid cell at a position; None outside every cell."""
    found = grid.lookup(lat, lon)
    return found if found.cell_id != UNASSIGNED else None


def off_grid_warning(fixes: Sequence[Fix], grid: GridIndex, track_name: str) -> str | None:
    """What to tell of a track none of whose fixes falls in a grid cell (another city's file, latitude
    and longitude swapped): how far its nearest fix is from the grid's bounds (great-circle km from the
    fix to the nearest point of the box around every cell), and whether the fixes with latitude and
    longitude swapped fall in cells, and that the footage may be sent again with the right track (its job
    is then track_off_grid, api.jobs.uploads). None when a fix falls in a cell, or there is no grid or no
    fix."""
    bounds = grid.bounds
    if bounds is None or not fixes or any(_in_cell(grid, lat, lon) for _, lat, lon in fixes):
        return None
    from streams.frame import GeoPoint
    from streams.gps import distance_m

    west, south, east, north = bounds

    def to_bounds_m(lat: float, lon: float) -> float:
        inside = GeoPoint(min(max(lat, south), north), min(max(lon, west), east))
        return distance_m(GeoPoint(lat, lon), inside)

    metres, lat, lon = min((to_bounds_m(lat, lon), lat, lon) for _, lat, lon in fixes)
    where = (
        f"its nearest fix ({lat:.5f}, {lon:.5f}) is {metres / 1000:.1f} km from the grid's bounds "
        f"(lat {south:.4f}..{north:.4f}, lon {west:.4f}..{east:.4f})"
        if metres >= 1.0
        else f"its nearest fix ({lat:.5f}, {lon:.5f}) is within the grid's bounds but between its cells"
    )
    swapped = sum(1 for _, lat, lon in fixes if abs(lon) <= 90.0 and _in_cell(grid, lon, lat))
    turned = (
        f"; with latitude and longitude swapped, {swapped} of its {len(fixes)} fixes fall in grid cells: "
        "the file has them the wrong way round"
        if swapped
        else "; it may be another place's track"
    )
    return (
        f"GPS track '{track_name}' passes through no grid cell, so the incidents it placed are filed "
        f"without one (unassigned): {where}{turned}; if the track is wrong, the footage may be sent again "
        "with the right one"
    )


@dataclass(frozen=True, slots=True)
class RecordedCoverage:
    """What record_coverage wrote: the number of passes, and the off-grid warning (off_grid_warning)."""

    passes: int
    off_grid: str | None


def record_coverage(
    session: Session,
    *,
    upload_id: int,
    track: Path,
    tz: tzinfo,
    grid: GridIndex,
    track_name: str | None = None,
) -> RecordedCoverage:
    """Read the upload's track (CSV times without an offset in `tz`) and write its passes in place of
    any written before; the number of passes, and when the grid has cells but none of the track's fixes
    falls in one, a warning naming the track (`track_name`, default the file's name; off_grid_warning).
    The caller commits. A track that cannot be read raises streams.TrackError (the job has failed
    already then)."""
    from streams.gps import load_track

    gps = load_track(track, tz=tz).without_jumps()
    fixes = [(f.time, f.lat, f.lon) for f in gps]

    def lookup(lat: float, lon: float) -> Assignment | None:
        return _in_cell(grid, lat, lon)

    passes = cell_passes(fixes, lookup)
    session.execute(delete(UploadCoverage).where(UploadCoverage.upload_id == upload_id))
    session.add_all(
        UploadCoverage(
            upload_id=upload_id,
            cell_id=p.cell_id,
            team=p.team,
            entered_at=_naive_utc(p.entered_at),
            left_at=_naive_utc(p.left_at),
            metres=round(p.metres, 1),
        )
        for p in passes
    )
    log.info(
        "upload %d: its track passed %d grid cell(s), %d pass(es)",
        upload_id,
        len({p.cell_id for p in passes}),
        len(passes),
    )
    off_grid = None if passes else off_grid_warning(fixes, grid, track_name or track.name)
    return RecordedCoverage(len(passes), off_grid)


def _seconds_between(session: Session, start: Any, end: Any) -> Any:
    """`end - start` in seconds, in SQL, for two time columns. SQLite keeps a time as text
    ('YYYY-MM-DD HH:MM:SS.ffffff', naive UTC): whole seconds by strftime('%s') (julianday would round
    to the millisecond) plus the fraction; NULL where a value is no time SQLite reads."""
    if session.get_bind().dialect.name == "sqlite":

        def whole(column: Any) -> Any:
            return func.strftime("%s", func.substr(column, 1, 19))

        def fraction(column: Any) -> Any:
            return cast(func.substr(column, 20), Float)

        return (whole(end) - whole(start)) + (fraction(end) - fraction(start))
    return func.extract("epoch", end - start)


PASSES_PER_CELL = 20  # the latest passes a cell lists by default (GET /api/coverage's passes_per_cell)
MAX_PASSES_PER_CELL = 200  # ... and at most: a busy cell's answer stays bounded


@dataclass
class CellCoverage:
    """A cell's passes in a time window: the latest ones listed (`passes`, in time order), the sums
    and `passes_total` over all of them."""

    cell_id: str
    team: str | None
    metres: float = 0.0
    seconds: float = 0.0
    passes_total: int = 0
    passes: list[UploadCoverage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CoveragePage:
    """One page of the cells passed in a window (by id), with how many cells were passed in all."""

    total: int
    page: int
    per_page: int
    passes_per_cell: int
    cells: list[CellCoverage]


def coverage(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    page: int = 1,
    per_page: int = 50,
    passes_per_cell: int = PASSES_PER_CELL,
    team: str | None = None,
) -> CoveragePage:
    """The cells passed in [since, until) (by the time a pass entered the cell; naive = UTC), a page of
    `per_page` cells by id at a time (page 1 first), each with its latest `passes_per_cell` passes in
    the window in time order, and the count (`passes_total`), metres and seconds of all its passes in
    the window; `total` counts the cells passed in the window. The database counts and sums; only the
    listed passes are read, however many a busy cell has. With `team`, only the cells the grid gives
    that team now (an enforcement user's, as its periodic report counts them: a cell a grid import gave
    to the team comes with its passes from before, a cell taken from it goes). Each cell is labelled with
    the team the grid gives it now; a cell no longer in the grid, with the team of its latest pass."""
    window: list[ColumnElement[bool]] = []
    if team is not None:
        window.append(UploadCoverage.cell_id.in_(select(GridCell.id).where(GridCell.team == team)))
    if since is not None:
        window.append(UploadCoverage.entered_at >= _naive_utc(since))
    if until is not None:
        window.append(UploadCoverage.entered_at < _naive_utc(until))
    passed = select(UploadCoverage.cell_id).where(*window).distinct()
    total = session.scalar(select(func.count()).select_from(passed.subquery())) or 0
    chosen = list(
        session.scalars(passed.order_by(UploadCoverage.cell_id).limit(per_page).offset((page - 1) * per_page))
    )
    cells: dict[str, CellCoverage] = {}
    if chosen:
        in_page = [*window, UploadCoverage.cell_id.in_(chosen)]
        seconds = _seconds_between(session, UploadCoverage.entered_at, UploadCoverage.left_at)
        sums = (
            select(
                UploadCoverage.cell_id,
                func.count(),
                func.coalesce(func.sum(UploadCoverage.metres), 0.0),
                func.coalesce(func.sum(seconds), 0.0),
                func.count() - func.count(seconds),
            )
            .where(*in_page)
            .group_by(UploadCoverage.cell_id)
        )
        unread = False
        for cell_id, passes_total, metres, seconds_total, unreadable in session.execute(sums):
            cells[cell_id] = CellCoverage(cell_id, None, float(metres), float(seconds_total), passes_total)
            unread = unread or unreadable > 0
        if unread:  # times SQLite's date functions cannot read (edited outside the service): read here,
            # where a time that is none is a DamagedRecord naming it, as reading every pass was
            for row in session.scalars(select(UploadCoverage).where(*in_page, seconds.is_(None))):
                cells[row.cell_id].seconds += (row.left_at - row.entered_at).total_seconds()
        nth_latest = (
            func.row_number()
            .over(
                partition_by=UploadCoverage.cell_id,
                order_by=(UploadCoverage.entered_at.desc(), UploadCoverage.id.desc()),
            )
            .label("nth_latest")
        )
        ranked = select(UploadCoverage, nth_latest).where(*in_page).subquery()
        listed = aliased(UploadCoverage, ranked)
        latest = (
            select(listed)
            .where(ranked.c.nth_latest <= max(passes_per_cell, 1))  # the latest pass gives the team
            .order_by(ranked.c.cell_id, ranked.c.nth_latest.desc())
        )
        for row in session.scalars(latest):
            cell = cells.get(row.cell_id)
            if cell is None:  # written between the two reads
                continue
            if passes_per_cell >= 1:
                cell.passes.append(row)
            cell.team = row.team  # the latest comes last
        # the grid's team for the cell now, as the periodic report counts it: a grid import that gave
        # the cell to another team relabels its passes from before; a cell no longer in the grid keeps
        # the team of its latest pass
        for cell_id, team_now in session.execute(
            select(GridCell.id, GridCell.team).where(GridCell.id.in_(chosen))
        ):
            if cell_id in cells:
                cells[cell_id].team = team_now
    return CoveragePage(total, page, per_page, passes_per_cell, [cells[cell_id] for cell_id in sorted(cells)])
