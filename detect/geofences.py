"""Geofences for moving cameras (issue 12): zones on the map, in WGS84, where a patrol vehicle's
camera finds its objects by their ground position (detect.ground) instead of by pixel zones.

A GeoJSON FeatureCollection (the site config's `geofences:` file, like the grid), each feature a
Polygon or MultiPolygon with properties:
  - `id`: unique, 1-64 characters;
  - `kind`: `no_parking`, `no_vending`, `no_dumping` (violations there, like a fixed camera's zone
    kinds), or `parking_allowed`, `vending_allowed` (a parking bay, a permitted market: the matching
    prohibition does not apply inside, while they are active);
  - `active_hours` (optional): local times "HH:MM-HH:MM" (a span may wrap midnight); always when absent.

`Geofences.kinds_at(point, local_time)` gives the prohibition kinds in force at a point: those of the
active prohibiting fences that contain it, less those an active allowing fence there lifts. A fixed
camera keeps its image zones; only a moving camera's objects are placed by geofence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any, Literal, cast, get_args

from shapely import STRtree
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from detect.config import HOURS_PATTERN, ConfigError, hour_spans
from detect.zones import in_span
from streams.frame import GeoPoint

FenceKind = Literal["no_parking", "no_vending", "no_dumping", "parking_allowed", "vending_allowed"]
LIFTS = {"parking_allowed": "no_parking", "vending_allowed": "no_vending"}
MAX_FENCE_BYTES = 64 * 1024**2
_HOURS = re.compile(HOURS_PATTERN)


@dataclass(frozen=True)
class Geofence:
    id: str
    kind: FenceKind
    area: BaseGeometry
    hours: tuple[tuple[time, time], ...]  # empty: always

    def active(self, local: time | None) -> bool:
        """Whether the fence holds at a local time of day; always when it has no hours or the time is
        unknown (as a camera's zones)."""
        return not self.hours or local is None or any(in_span(local, start, end) for start, end in self.hours)


class Geofences:
    """The site's geofences, looked up by WGS84 point and local time."""

    def __init__(self, fences: list[Geofence]) -> None:
        self.fences = fences
        self._tree = STRtree([f.area for f in fences]) if fences else None

    def __len__(self) -> int:
        return len(self.fences)

    def at(self, point: GeoPoint, local: time | None) -> list[Geofence]:
        """The active fences containing the point (on the border counts as inside)."""
        if self._tree is None:
            return []
        hits = self._tree.query(Point(point.lon, point.lat), predicate="intersects")
        return [self.fences[int(i)] for i in sorted(hits) if self.fences[int(i)].active(local)]

    def kinds_at(self, point: GeoPoint, local: time | None) -> set[str]:
        """The prohibition kinds in force at the point and time (see the module docstring)."""
        here = self.at(point, local)
        lifted = {LIFTS[f.kind] for f in here if f.kind in LIFTS}
        return {f.kind for f in here if f.kind not in LIFTS and f.kind not in lifted}

    def fence_for(self, point: GeoPoint, local: time | None, kind: str) -> Geofence | None:
        """The fence that makes `kind` a prohibition at the point and time (the first by file order),
        or None where none does or an allowing fence lifts it."""
        here = self.at(point, local)
        if any(LIFTS.get(f.kind) == kind for f in here):
            return None
        return next((f for f in here if f.kind == kind), None)


def parse_geofences(data: Any, *, origin: str = "geofences") -> Geofences:
    """Geofences from a GeoJSON FeatureCollection; a ConfigError naming the feature and what is wrong."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ConfigError(f"{origin}: not a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list):
        raise ConfigError(f"{origin}: `features` must be a list")
    kinds = get_args(FenceKind)
    fences: list[Geofence] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, dict) else None
        props = props if isinstance(props, dict) else {}
        fence_id = props.get("id")
        label = f"feature {n}" + (f" ({fence_id})" if isinstance(fence_id, str) and fence_id else "")
        if not isinstance(fence_id, str) or not 1 <= len(fence_id) <= 64:
            problems.append(f"{label}: properties.id must be 1-64 characters")
            continue
        if fence_id in seen:
            problems.append(f"{label}: the id is used twice")
            continue
        seen.add(fence_id)
        kind = props.get("kind")
        if kind not in kinds:
            problems.append(f"{label}: properties.kind {kind!r} is not one of {', '.join(kinds)}")
            continue
        hours = props.get("active_hours")
        if hours is not None and (
            not isinstance(hours, list)
            or not all(isinstance(h, str) and re.match(HOURS_PATTERN, h) for h in hours)
        ):
            problems.append(f"{label}: properties.active_hours must be a list of 'HH:MM-HH:MM'")
            continue
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            problems.append(f"{label}: the geometry must be a Polygon or MultiPolygon")
            continue
        try:
            area = shape(geometry)
        except Exception as exc:  # noqa: BLE001  (shapely's errors vary by what is malformed)
            problems.append(f"{label}: the geometry cannot be read ({type(exc).__name__})")
            continue
        bounds = area.bounds
        if area.is_empty or not area.is_valid or area.area == 0:
            problems.append(f"{label}: the polygon is empty, has no area or crosses itself")
            continue
        if not (-180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90):
            problems.append(f"{label}: coordinates must be [lon, lat] in WGS84 degrees")
            continue
        fences.append(Geofence(fence_id, cast(FenceKind, kind), area, tuple(hour_spans(hours))))
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return Geofences(fences)


def load_geofences(path: str | Path) -> Geofences:
    """Read a GeoJSON file of geofences; a ConfigError naming the file (and the feature)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FENCE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FENCE_BYTES // 1024**2} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such geofence file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable GeoJSON ({type(exc).__name__}: {exc})") from None
    return parse_geofences(data, origin=str(path))
