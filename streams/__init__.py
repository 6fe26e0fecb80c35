"""Where frames come from: video files, image folders and live cameras, as `Frame` values; GPS tracks
that give a moving camera's frames their positions."""

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.gps import GpsTrack, TrackError, load_track, with_track_positions
from streams.opener import open_source
from streams.prefetch import prefetch
from streams.rtsp import ReconnectPolicy, mask_credentials
from streams.source import FrameSource, InputError, SourceError, SourceInfo

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
    "load_track",
    "mask_credentials",
    "open_source",
    "prefetch",
    "wall_time_at",
    "with_track_positions",
]
