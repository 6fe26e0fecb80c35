"""Where frames come from: video files, image folders and live cameras and streams, as `Frame` values; GPS
tracks that give a moving camera's frames their positions."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.frame import Frame, GeoPoint, wall_time_at
    from streams.gps import GpsTrack, TrackError, load_track, with_track_positions
    from streams.opener import open_source
    from streams.prefetch import prefetch
    from streams.rtsp import ReconnectPolicy
    from streams.source import FrameSource, InputError, SourceError, SourceInfo
    from streams.urls import is_live_url, mask_credentials

# Each name is imported from its module when first used, so that a light module (streams.urls: the
# stream URL rules the case service checks cameras with) loads without OpenCV and NumPy.
_HOME = {
    "Frame": "streams.frame",
    "GeoPoint": "streams.frame",
    "wall_time_at": "streams.frame",
    "GpsTrack": "streams.gps",
    "TrackError": "streams.gps",
    "load_track": "streams.gps",
    "with_track_positions": "streams.gps",
    "open_source": "streams.opener",
    "prefetch": "streams.prefetch",
    "ReconnectPolicy": "streams.rtsp",
    "FrameSource": "streams.source",
    "InputError": "streams.source",
    "SourceError": "streams.source",
    "SourceInfo": "streams.source",
    "is_live_url": "streams.urls",
    "mask_credentials": "streams.urls",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "Frame",
    "FrameSource",
    "GeoPoint",
    "GpsTrack",
    "InputError",
    "ReconnectPolicy",
    "SourceError",
    "SourceInfo",
    "TrackError",
    "is_live_url",
    "load_track",
    "mask_credentials",
    "open_source",
    "prefetch",
    "wall_time_at",
    "with_track_positions",
]
