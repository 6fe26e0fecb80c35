"""Grid cells (网格): import from GeoJSON, and position -> cell lookup with shapely's STRtree.

Geometry is WGS84 with GeoJSON's axis order (lon, lat). A position outside every cell, or no
position at all, belongs to the "unassigned" bucket. On a shared border the cell with the smallest
id wins, so a lookup is deterministic.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import Point, shape
from shapely.strtree import STRtree
from shapely.validation import explain_validity
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.errors import InputError
from api.storage.db import utcnow
from api.storage.models import UNASSIGNED, GridCell

CELL_ID_KEYS = ("id", "cell_id", "grid_id")


class GridImportError(InputError):
    """A GeoJSON file that cannot be imported; `problems` names each bad feature and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("features", "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CellInfo:
    id: str
    name: str
    street: str | None
    community: str | None
    team: str
    geometry: dict[str, Any]


def _feature_label(index: int, feature: Any) -> str:
    props = feature.get("properties") if isinstance(feature, dict) else None
    if isinstance(props, dict):
        for key in CELL_ID_KEYS:
            if props.get(key) not in (None, ""):
                return f"feature {index} (id '{props[key]}')"
    return f"feature {index}"


def _check_coords(geometry: dict[str, Any]) -> str | None:
    def walk(node: Any) -> str | None:
        if isinstance(node, list) and node and isinstance(node[0], (int, float)):
            if len(node) < 2:
                return "a position has fewer than 2 numbers"
            lon, lat = node[0], node[1]
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                return f"position {node[:2]} is not WGS84 lon/lat degrees"
            return None
        if isinstance(node, list):
            for child in node:
                problem = walk(child)
                if problem:
                    return problem
            return None
        return f"unexpected coordinate value {node!r}"

    return walk(geometry.get("coordinates"))


def parse_geojson(data: Any) -> list[CellInfo]:
    """Validate a FeatureCollection of grid cells; raise GridImportError listing every problem."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise GridImportError(["the top level must be a GeoJSON FeatureCollection"])
    features = data.get("features")
    if not isinstance(features, list) or not features:
        raise GridImportError(["'features' must be a non-empty list"])
    problems: list[str] = []
    cells: list[CellInfo] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        label = _feature_label(index, feature)
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(f"{label}: not a GeoJSON Feature")
            continue
        props = feature.get("properties")
        if not isinstance(props, dict):
            problems.append(f"{label}: has no properties (needs id, name, team)")
            continue
        cell_id = next((props[k] for k in CELL_ID_KEYS if props.get(k) not in (None, "")), None)
        if cell_id is None:
            problems.append(f"{label}: properties lack a cell id ('id')")
            continue
        cell_id = str(cell_id)
        if cell_id == UNASSIGNED or len(cell_id) > 64:
            problems.append(f"{label}: cell id must be 1-64 characters and not '{UNASSIGNED}'")
            continue
        if cell_id in seen:
            problems.append(f"{label}: duplicate cell id (also feature {seen[cell_id]})")
            continue
        seen[cell_id] = index
        missing = [k for k in ("name", "team") if not isinstance(props.get(k), str) or not props.get(k)]
        if missing:
            problems.append(f"{label}: properties lack {', '.join(missing)}")
            continue
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
            problems.append(f"{label}: geometry must be a Polygon or MultiPolygon, got {kind}")
            continue
        coord_problem = _check_coords(geometry)
        if coord_problem:
            problems.append(f"{label}: {coord_problem}")
            continue
        try:
            geom = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException) as exc:
            problems.append(f"{label}: geometry cannot be read ({exc})")
            continue
        if not geom.is_valid:
            problems.append(f"{label}: geometry is not valid ({explain_validity(geom)})")
            continue
        if geom.is_empty or geom.area <= 0:
            problems.append(f"{label}: geometry has no area")
            continue
        street = props.get("street")
        community = props.get("community")
        cells.append(
            CellInfo(
                id=cell_id,
                name=str(props["name"]),
                street=str(street) if street else None,
                community=str(community) if community else None,
                team=str(props["team"]),
                geometry=geometry,
            )
        )
    if problems:
        raise GridImportError(problems)
    return cells


def import_cells(session: Session, *, cells: list[CellInfo]) -> int:
    """Replace all grid cells with these (cases keep the cell they were filed in)."""
    session.execute(delete(GridCell))
    now = utcnow()
    for cell in cells:
        session.add(
            GridCell(
                id=cell.id,
                name=cell.name,
                street=cell.street,
                community=cell.community,
                team=cell.team,
                geometry=json.dumps(cell.geometry, separators=(",", ":")),
                imported_at=now,
            )
        )
    session.flush()
    return len(cells)


@dataclass(frozen=True, slots=True)
class Assignment:
    cell_id: str
    team: str | None


class GridIndex:
    """Position -> cell over a fixed set of cells (built once, queried many times)."""

    def __init__(self, cells: list[tuple[str, str, Any]]) -> None:
        # (cell_id, team, shapely geometry), sorted by id for deterministic border ties
        self._cells = sorted(cells, key=lambda c: c[0])
        self._tree = STRtree([g for _, _, g in self._cells]) if self._cells else None

    def __len__(self) -> int:
        return len(self._cells)

    def lookup(self, lat: float | None, lon: float | None) -> Assignment:
        if lat is None or lon is None or self._tree is None:
            return Assignment(UNASSIGNED, None)
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return Assignment(UNASSIGNED, None)
        cell_id, team, _ = self._cells[int(min(hits))]
        return Assignment(cell_id, team)


class GridCache:
    """The GridIndex of the current cells, rebuilt when the cells change.

    Whether they changed is checked at most every `check_s` seconds (an import by another process
    shows within that time); `invalidate()` makes the next `get` check at once.
    """

    def __init__(self, check_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._index = GridIndex([])
        self._check_s = check_s
        self._checked_at = float("-inf")

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    def get(self, session: Session) -> GridIndex:
        now = time.monotonic()
        if now - self._checked_at < self._check_s:
            return self._index
        key = tuple(session.execute(select(func.count(GridCell.id), func.max(GridCell.imported_at))).one())
        self._checked_at = now
        with self._lock:
            if key != self._key:
                rows = session.execute(select(GridCell.id, GridCell.team, GridCell.geometry)).all()
                self._index = GridIndex([(r.id, r.team, shape(json.loads(r.geometry))) for r in rows])
                self._key = key
            return self._index


def load_geojson_file(path: str) -> list[CellInfo]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise GridImportError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GridImportError([f"{path}: not readable JSON ({exc})"]) from None
    return parse_geojson(data)
