"""Where frames come from: video files, image folders and live cameras and streams, as `Frame` values; GPS
tracks that give a moving camera's frames their positions."""

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.gps import GpsTrack, TrackError, load_track, with_track_positions
from streams.opener import open_source
from streams.prefetch import prefetch
from streams.rtsp import ReconnectPolicy
from streams.source import FrameSource, InputError, SourceError, SourceInfo
from streams.urls import is_live_url, mask_credentials

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
