"""Grid cells (网格): import from GeoJSON, and position -> cell lookup with shapely's STRtree.

Geometry is WGS84 with GeoJSON's axis order (lon, lat). A position outside every cell, or no
position at all, belongs to the "unassigned" bucket. On a shared border the cell with the smallest
id wins, so a lookup is deterministic.
"""

from __future__ import annotations

import json
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import Point, shape
from shapely.strtree import STRtree
from shapely.validation import explain_validity
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.cases.workflow import OPEN_STATUSES
from api.errors import InputError
from api.storage.db import utcnow
from api.storage.models import TEAM_MAX, UNASSIGNED, Case, GridCell

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
            value = props.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                text = str(value)
                return f"feature {index} (id '{text if len(text) <= 40 else text[:37] + '...'}')"
    return f"feature {index}"


CELL_ID_MAX = 64  # characters: grid_cells.id, cases.grid_cell_id
TEXT_MAX = 200  # characters of a cell's name, street and community (their columns)
# where a geometry's [lon, lat] positions lie: a Polygon's coordinates are rings of positions, a
# MultiPolygon's polygons of rings of positions
POSITION_DEPTH = {"Polygon": 2, "MultiPolygon": 3}


def _check_coords(geometry: dict[str, Any]) -> str | None:
    """What is wrong with the coordinates of a Polygon or MultiPolygon, or None. Nesting deeper than
    the geometry's type allows is refused as such (never walked: a file nested 100,000 deep)."""
    depth_of_positions = POSITION_DEPTH[geometry["type"]]

    def walk(node: Any, depth: int) -> str | None:
        if isinstance(node, list) and node and isinstance(node[0], (int, float)):
            if depth != depth_of_positions:
                return (
                    f"a position at nesting depth {depth}: a {geometry['type']}'s are at {depth_of_positions}"
                )
            if len(node) < 2:
                return "a position has fewer than 2 numbers"
            if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in node):
                return f"position {node[:3]!r} is not all numbers"
            lon, lat = node[0], node[1]
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                return f"position {node[:2]} is not WGS84 lon/lat degrees"
            return None
        if isinstance(node, list):
            if depth >= depth_of_positions:
                return (
                    f"coordinates nested deeper than a {geometry['type']}'s ({depth_of_positions} lists "
                    "around each [lon, lat] position)"
                )
            for child in node:
                problem = walk(child, depth + 1)
                if problem:
                    return problem
            return None
        return f"unexpected coordinate value {_short(node)}"

    return walk(geometry.get("coordinates"), 0)


def _short(value: Any) -> str:
    """A value for a message, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _cell_id(props: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the cell id, None) or (None, what is wrong with it): text or a whole number, 1-64 characters."""
    value = next((props[k] for k in CELL_ID_KEYS if props.get(k) not in (None, "")), None)
    if value is None:
        return None, "properties lack a cell id ('id')"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None, f"cell id must be a string (or a whole number), not {_json_type(value)}"
    if value == UNASSIGNED or len(value) > CELL_ID_MAX or _has_control(value):
        return None, (
            f"cell id must be 1-{CELL_ID_MAX} characters, no control characters, and not '{UNASSIGNED}' "
            f"(got {len(value)} characters)"
        )
    return value, None


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _text_problems(props: dict[str, Any]) -> list[str]:
    """What is wrong with a cell's name, team, street and community (each named)."""
    problems = []
    missing = [k for k in ("name", "team") if props.get(k) in (None, "")]
    if missing:
        problems.append(f"properties lack {', '.join(missing)}")
    limits = {"name": TEXT_MAX, "team": TEAM_MAX, "street": TEXT_MAX, "community": TEXT_MAX}
    for key, limit in limits.items():
        value = props.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            problems.append(f"{key} must be a string, not {_json_type(value)}")
        elif len(value) > limit:
            problems.append(f"{key} has {len(value)} characters; at most {limit}")
        elif _has_control(value):
            problems.append(f"{key} has control characters")
        elif key == "team" and value != value.strip():
            # a user's team is stored without spaces around it, so such a team would match no user
            problems.append(f"team {value!r} has spaces around it")
    return problems


def parse_geojson(data: Any) -> list[CellInfo]:
    """Validate a FeatureCollection of grid cells; raise GridImportError listing every problem.

    Each feature's properties: `id` (or cell_id, grid_id; text or a whole number, at most 64
    characters), `name` and `team` (text; at most 200 and TEAM_MAX characters: a team is matched
    against users' teams), optional `street` and `community` (text, at most 200)."""
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
        cell_id, id_problem = _cell_id(props)
        if cell_id is None:
            problems.append(f"{label}: {id_problem}")
            continue
        if cell_id in seen:
            problems.append(f"{label}: duplicate cell id (also feature {seen[cell_id]})")
            continue
        seen[cell_id] = index
        text_problems = _text_problems(props)
        if text_problems:
            problems.append(f"{label}: {'; '.join(text_problems)}")
            continue
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") not in POSITION_DEPTH:
            kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
            kind = kind[:40] if isinstance(kind, str) else _short(kind)
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
        cells.append(
            CellInfo(
                id=cell_id,
                name=props["name"],
                street=props.get("street") or None,
                community=props.get("community") or None,
                team=props["team"],
                geometry=geometry,
            )
        )
    if problems:
        raise GridImportError(problems)
    return cells


class GridReplaceRefused(InputError):
    """An import that would leave open cases behind (their cell removed, or given to another team),
    refused unless forced; the reason names each such cell and its open cases."""

    status = 409


@dataclass(frozen=True, slots=True)
class GridReplacement:
    """What replacing the grid with new cells does to what is there.

    `removed`: (cell id, its team, open cases in it) for each cell the new grid lacks;
    `reteamed`: (cell id, old team, new team, open cases in it not of the new team) for each cell
    that changes team; `overlaps`: pairs of new cells whose areas overlap (a position in both goes
    to the smaller id), smaller id first."""

    removed: list[tuple[str, str, int]]
    reteamed: list[tuple[str, str, str, int]]
    overlaps: list[tuple[str, str]]

    def stranded(self) -> list[str]:
        """One line per removed or re-teamed cell holding open cases: how many, what becomes of them."""
        lines = [
            f"cell {cell} (team {team}) is removed with {n} open case(s): they keep cell {cell} and "
            f"team {team} (the map no longer shows them; new sightings there go to the cell their position "
            "is in now)"
            for cell, team, n in self.removed
            if n
        ]
        lines += [
            f"cell {cell} moves from team {old} to team {new} with {n} open case(s): they stay with team "
            f"{old} until dispatched to another (new cases go to {new})"
            for cell, old, new, n in self.reteamed
            if n
        ]
        return lines

    def warnings(self) -> list[str]:
        """The stranded cells' lines, then one line per overlapping pair."""
        return self.stranded() + [
            f"cells {a} and {b} overlap: a position in both goes to {a} (the smaller id)"
            for a, b in self.overlaps
        ]


def overlapping(cells: list[CellInfo]) -> list[tuple[str, str]]:
    """Pairs of cells whose areas overlap (a shared border is no overlap), sorted, smaller id first."""
    ordered = sorted(cells, key=lambda c: c.id)
    shapes = [shape(c.geometry) for c in ordered]
    tree = STRtree(shapes)
    pairs = []
    for i, geom in enumerate(shapes):
        for j in tree.query(geom, predicate="intersects"):
            j = int(j)
            if j > i and geom.intersection(shapes[j]).area > 0:
                pairs.append((ordered[i].id, ordered[j].id))
    return sorted(pairs)


def plan_replacement(session: Session, *, cells: list[CellInfo]) -> GridReplacement:
    """What importing `cells` (replacing every cell) would do; changes nothing."""
    new = {cell.id: cell.team for cell in cells}
    old: dict[str, str] = {
        cell_id: team for cell_id, team in session.execute(select(GridCell.id, GridCell.team))
    }
    open_cases: dict[str, dict[str | None, int]] = {}
    rows = session.execute(
        select(Case.grid_cell_id, Case.team, func.count())
        .where(Case.status.in_(OPEN_STATUSES), Case.grid_cell_id.in_(list(old)))
        .group_by(Case.grid_cell_id, Case.team)
    )
    for cell_id, team, count in rows:
        open_cases.setdefault(cell_id, {})[team] = count
    removed = [
        (cell_id, team, sum(open_cases.get(cell_id, {}).values()))
        for cell_id, team in sorted(old.items())
        if cell_id not in new
    ]
    reteamed = [
        (
            cell_id,
            team,
            new[cell_id],
            sum(n for t, n in open_cases.get(cell_id, {}).items() if t != new[cell_id]),
        )
        for cell_id, team in sorted(old.items())
        if cell_id in new and new[cell_id] != team
    ]
    return GridReplacement(removed=removed, reteamed=reteamed, overlaps=overlapping(cells))


def import_cells(session: Session, *, cells: list[CellInfo], force: bool = False) -> GridReplacement:
    """Replace all grid cells with these (cases keep the cell and team they were filed with).

    Refused (GridReplaceRefused) when a removed or re-teamed cell holds open cases, unless `force`:
    those cases would keep a cell the grid no longer has, or a team the cell no longer has, and an
    administrator should decide that knowingly. Returns what the import did (its warnings)."""
    replacement = plan_replacement(session, cells=cells)
    stranded = replacement.stranded()
    if stranded and not force:
        raise GridReplaceRefused(
            "force",
            "the import would leave open cases behind: "
            + "; ".join(stranded)
            + ". Close or dispatch them first, or import anyway (force)",
            extra={"stranded": stranded},
        )
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
    return replacement


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

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """The box around every cell, WGS84 degrees (west, south, east, north) as shapely gives it;
        None without cells."""
        if not self._cells:
            return None
        boxes = [g.bounds for _, _, g in self._cells]
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )

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
    """The cells of a GeoJSON file, read as the admin page reads an upload (geojson_cells);
    GridImportError's problems do not repeat the path (the caller names the file once)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise GridImportError(["no such file"]) from None
    except IsADirectoryError:
        raise GridImportError(["a folder, not a file"]) from None
    except OSError as exc:
        raise GridImportError([f"cannot be read ({exc.strerror or exc})"]) from None
    return geojson_cells(raw)


def geojson_cells(raw: bytes) -> list[CellInfo]:
    """The cells of a GeoJSON file's bytes: UTF-8 (with or without the byte-order mark Windows editors
    write) or UTF-16/32 with theirs, as JSON allows (json.loads detects which)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise GridImportError(["not readable JSON (nested too deeply)"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GridImportError([f"not readable JSON ({exc})"]) from None
    return parse_geojson(data)
