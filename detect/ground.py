"""Where on the ground an object seen by a vehicle's camera stands (issue 12): a flat-ground projection
of the bottom-centre of its box, from the camera's mounting and the vehicle's position and heading.

The camera is a pinhole (square pixels, the principal point at the image centre, no lens distortion)
mounted `height_m` above the road, tilted down by `pitch_deg` and turned `yaw_deg` clockwise from the
vehicle's heading, with `hfov_deg` horizontal field of view. A pixel's ray is followed until it meets
the plane of the road; the point is then placed in WGS84 from the vehicle's position and the bearing
heading + yaw, on a local flat approximation of the earth (an error under 1 cm at 100 m).

What this is worth (stated, and bounded in tests/detect/test_ground.py): on flat ground with the
mounting exactly known, the projection is exact (a point 10 m ahead and 3 m right comes back within
millimetres). Its errors come from what it assumes:
  - pitch: the distance to a point depends on the ray's depression angle; at 1.5 m height a point 10
    m ahead is seen 8.5 deg below the horizon, and 1 deg of pitch error (a braking car nods more than
    that) moves it ~1.2 m (~4.5 m at 20 m); the lateral offset scales with it;
  - a road that is not flat (a camber, a slope changing within the range) acts as a pitch error;
  - the box's bottom edge must be where the object touches the ground: an occluded wheel line puts
    the object farther away;
  - GPS: the vehicle's own position (a few metres with a consumer receiver) and heading (from the
    track when the receiver gives none: noisy below walking speed).
So ground positions are good to a few metres within ~20 m and get worse beyond: `max_range_m` (40 m)
leaves farther points without a position, and rays at or above the horizon have none.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from streams.frame import GeoPoint
from streams.gps import EARTH_RADIUS_M, bearing_deg, distance_m

__all__ = [
    "GroundOffset",
    "GroundTrack",
    "Mounting",
    "bearing_deg",
    "distance_m",
    "ground_offset",
    "ground_position",
    "offset_position",
]


@dataclass(frozen=True, slots=True)
class Mounting:
    """How a camera sits on its vehicle. height_m: the lens above the road; pitch_deg: tilted down
    from the horizontal (positive = down); hfov_deg: horizontal field of view; yaw_deg: turned
    clockwise from the vehicle's heading (0 = looking ahead, 90 = out of the right-hand side)."""

    height_m: float
    pitch_deg: float
    hfov_deg: float
    yaw_deg: float = 0.0
    max_range_m: float = 40.0

    def __post_init__(self) -> None:
        if not 0 < self.height_m < 20:
            raise ValueError(f"height_m {self.height_m}: a camera 0-20 m above the road")
        if not -30 <= self.pitch_deg <= 89:
            raise ValueError(f"pitch_deg {self.pitch_deg}: between -30 and 89 degrees")
        if not 10 <= self.hfov_deg <= 170:
            raise ValueError(f"hfov_deg {self.hfov_deg}: between 10 and 170 degrees")
        if self.max_range_m <= 0:
            raise ValueError("max_range_m must be positive")


@dataclass(frozen=True, slots=True)
class GroundOffset:
    """A point on the road relative to the vehicle: metres ahead along its heading and to its right."""

    ahead_m: float
    right_m: float

    @property
    def distance_m(self) -> float:
        return math.hypot(self.ahead_m, self.right_m)


def ground_offset(u: float, v: float, width: int, height: int, mounting: Mounting) -> GroundOffset | None:
    """The road point seen at pixel (u, v) of a width x height image, relative to the vehicle; None
    when the ray does not meet the road (at or above the horizon) or meets it beyond max_range_m."""
    focal = (width / 2.0) / math.tan(math.radians(mounting.hfov_deg) / 2.0)
    x = (u - width / 2.0) / focal  # right, in the camera's frame (forward = 1)
    y = (v - height / 2.0) / focal  # down
    pitch = math.radians(mounting.pitch_deg)
    forward = math.cos(pitch) - y * math.sin(pitch)  # the ray in the level frame of the camera
    down = math.sin(pitch) + y * math.cos(pitch)
    if down <= 1e-9:
        return None
    t = mounting.height_m / down
    ahead_cam, right_cam = t * forward, t * x  # on the road, in the camera's level frame
    yaw = math.radians(mounting.yaw_deg)
    ahead = ahead_cam * math.cos(yaw) - right_cam * math.sin(yaw)
    right = ahead_cam * math.sin(yaw) + right_cam * math.cos(yaw)
    offset = GroundOffset(ahead, right)
    return offset if offset.distance_m <= mounting.max_range_m else None


def offset_position(origin: GeoPoint, heading_deg: float, offset: GroundOffset) -> GeoPoint:
    """The WGS84 position `offset` away from `origin` for a vehicle heading `heading_deg` (clockwise
    from true north)."""
    bearing = math.radians(heading_deg)
    east = offset.ahead_m * math.sin(bearing) + offset.right_m * math.cos(bearing)
    north = offset.ahead_m * math.cos(bearing) - offset.right_m * math.sin(bearing)
    lat = origin.lat + math.degrees(north / EARTH_RADIUS_M)
    lon = origin.lon + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(origin.lat))))
    return GeoPoint(lat, (lon + 180.0) % 360.0 - 180.0)


def ground_position(
    box: tuple[float, float, float, float],
    image_size: tuple[int, int],
    mounting: Mounting,
    vehicle: GeoPoint,
    heading_deg: float,
) -> GeoPoint | None:
    """Where the object in `box` (x1, y1, x2, y2 pixels) stands: its bottom-centre projected on the
    road (see the module docstring for what that is worth). image_size: (width, height)."""
    x1, _, x2, y2 = box
    width, height = image_size
    offset = ground_offset((x1 + x2) / 2.0, y2, width, height, mounting)
    return None if offset is None else offset_position(vehicle, heading_deg, offset)


@dataclass
class GroundTrack:
    """Where one tracked object stood on the ground frame by frame, and where the vehicle carrying
    the camera was: the evidence for "stationary in the world" seen from a moving car (issue 12).

    Parked, an object's ground positions stay within a few metres (projection and GPS noise) while
    the vehicle drives past; moving traffic's spread by its own speed. Seen from a vehicle that has
    hardly moved, the ground positions say nothing a still camera would not: no verdict then."""

    ts: list[float] = field(default_factory=list)
    vehicle: list[GeoPoint] = field(default_factory=list)
    ground: list[GeoPoint] = field(default_factory=list)

    def add(self, ts: float, vehicle: GeoPoint, ground: GeoPoint) -> None:
        self.ts.append(ts)
        self.vehicle.append(vehicle)
        self.ground.append(ground)

    def centre(self) -> GeoPoint:
        """The median of the ground positions (robust to a nodding frame or two)."""
        return GeoPoint(
            statistics.median(p.lat for p in self.ground), statistics.median(p.lon for p in self.ground)
        )

    def stationary(
        self, *, radius_m: float = 4.0, min_vehicle_move_m: float = 10.0, min_points: int = 3
    ) -> bool | None:
        """True when 80% of the ground positions lie within radius_m of their median while the
        vehicle moved at least min_vehicle_move_m between the first and the last of them; False when
        they spread wider; None with fewer than min_points or a vehicle that moved less."""
        if len(self.ground) < min_points:
            return None
        if distance_m(self.vehicle[0], self.vehicle[-1]) < min_vehicle_move_m:
            return None
        centre = self.centre()
        spread = sorted(distance_m(centre, p) for p in self.ground)
        return spread[max(0, math.ceil(0.8 * len(spread)) - 1)] <= radius_m
