"""Where frames come from: video files, image folders and live cameras, as `Frame` values."""

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.opener import open_source
from streams.prefetch import prefetch
from streams.rtsp import ReconnectPolicy, mask_credentials
from streams.source import FrameSource, SourceError, SourceInfo

__all__ = [
    "Frame",
    "FrameSource",
    "GeoPoint",
    "ReconnectPolicy",
    "SourceError",
    "SourceInfo",
    "mask_credentials",
    "open_source",
    "prefetch",
    "wall_time_at",
]
