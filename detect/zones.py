"""Zone geometry: which configured zone an object stands in, and whether the zone is active.

Zones are polygons in normalised image coordinates: x = pixel_x / image_width, y = pixel_y /
image_height, origin top-left, both in [0, 1]. An object is in a zone by its bottom-centre point
(where a vehicle or a stall meets the ground); a point exactly on the boundary counts as inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry import Point, Polygon

from detect.config import Zone


@dataclass(frozen=True)
class ZoneGeometry:
    zone: Zone
    polygon: Polygon
    spans: tuple[tuple[time, time], ...]

    @classmethod
    def of(cls, zone: Zone) -> ZoneGeometry:
        polygon = Polygon(zone.points_norm)
        shapely.prepare(polygon)
        return cls(zone=zone, polygon=polygon, spans=tuple(zone.hour_spans()))

    def contains_norm(self, x_norm: float, y_norm: float) -> bool:
        """True when the normalised point lies inside the polygon or on its edge."""
        return bool(self.polygon.covers(Point(x_norm, y_norm)))

    def active_at(self, local: time | None) -> bool:
        """Whether the zone is enforced at a local time of day; always when it has no hours
        or when the time is unknown (footage without a known start)."""
        if not self.spans or local is None:
            return True
        return any(in_span(local, start, end) for start, end in self.spans)


def in_span(t: time, start: time, end: time) -> bool:
    """start <= t < end, where a span whose end is before its start wraps past midnight."""
    if start <= end:
        return start <= t < end
    return t >= start or t < end


class ZoneMap:
    """The zones of one camera, looked up by pixel point."""

    def __init__(self, zones: list[Zone], timezone: str = "Asia/Shanghai") -> None:
        self.zones = [ZoneGeometry.of(z) for z in zones]
        self.tz = ZoneInfo(timezone)

    def local_time(self, wall_time: datetime | None) -> time | None:
        if wall_time is None:
            return None
        if wall_time.tzinfo is None:  # naive wall times are taken as the camera's local time
            return wall_time.time()
        return wall_time.astimezone(self.tz).time()

    def zones_at(
        self,
        point_px: tuple[float, float],
        image_size: tuple[int, int],
        *,
        wall_time: datetime | None = None,
        kind: str | None = None,
    ) -> list[Zone]:
        """Active zones (optionally of one kind) holding a pixel point of an image (width, height)."""
        width, height = image_size
        x_norm, y_norm = point_px[0] / width, point_px[1] / height
        local = self.local_time(wall_time)
        return [
            g.zone
            for g in self.zones
            if (kind is None or g.zone.kind == kind)
            and g.active_at(local)
            and g.contains_norm(x_norm, y_norm)
        ]
