"""The value every source yields: one decoded image with where and when it was taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 position in degrees (EPSG:4326)."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0) or not (-180.0 <= self.lon <= 180.0):
            raise ValueError(f"position out of range: lat={self.lat}, lon={self.lon}")


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One analysed frame.

    image: BGR uint8 array of shape (height, width, 3), as OpenCV decodes it.
    ts: seconds from the start of the footage (container timestamps for video, file names or a
        fixed rate for image folders, a monotonic receive clock for live cameras).
    wall_time: absolute time of the frame when the footage's start is known, else None.
    source_id: the camera or upload the frame comes from.
    index: the frame's index in the source (decoded frames, counting skipped ones).
    position: where the camera stood when known (a fixed camera's configured position, or the
        position of a patrol vehicle's GPS track at the frame's time: streams.gps).
    heading: the vehicle's heading there, degrees clockwise from true north, when the track says
        (None for a fixed camera or a vehicle standing still).
    """

    image: np.ndarray = field(repr=False)
    ts: float
    source_id: str
    index: int
    wall_time: datetime | None = None
    position: GeoPoint | None = None
    heading: float | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def wall_time_at(start: datetime | None, ts: float) -> datetime | None:
    """The absolute time `ts` seconds after `start`, or None when the start is unknown."""
    return None if start is None else start + timedelta(seconds=ts)
