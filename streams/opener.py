"""Which source reads a given input: a video file (local or on a web server), an image or image folder, or a
live camera or stream (RTSP, RTMP, HTTP MJPEG / HLS / FLV, SRT, UDP, ...)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from streams.frame import GeoPoint
from streams.images import IMAGE_SUFFIXES, ImageSource, looks_like_image
from streams.rtsp import LiveSource, ReconnectPolicy
from streams.source import FrameSource, SourceError
from streams.urls import footage_url_problem, is_live_url, is_remote_file, url_error, url_scheme
from streams.video import VideoSource


def open_source(
    uri: str | os.PathLike[str],
    *,
    source_id: str | None = None,
    analysis_fps: float | None = None,
    start_time: datetime | None = None,
    position: GeoPoint | None = None,
    image_fps: float | None = None,
    reconnect: ReconnectPolicy | None = None,
) -> FrameSource:
    """Open footage for reading; a SourceError naming the input when it cannot be read.

    uri: a video file or an image file (told apart by their content, not their names), a folder of
        images (by their names: .jpg, .png, ...), a live URL (streams.urls.is_live_url: rtsp://,
        rtmp://, http(s):// MJPEG, HLS or FLV, srt://, udp://, ...), or the http(s) URL of a video file
        (streams.urls.is_remote_file: read once like a local file). A URL is checked before it is opened
        (streams.urls.footage_url_problem).
    analysis_fps: frames per second to analyse, chosen by timestamps (None: every frame).
    start_time: the footage's absolute start, for Frame.wall_time (live cameras use the receive time instead).
    position: the fixed camera's position, passed to every frame.
    image_fps: the frame rate of an image folder (default: the images' EXIF DateTimeOriginal, else times in
        their names, else a SourceError asking for it: a rate is never assumed).
    reconnect: timeouts and backoff for live cameras (its read timeout also bounds a remote file's reads).
    """
    text = os.fspath(uri)
    policy = reconnect or ReconnectPolicy()
    if url_scheme(text) is not None:
        problem = footage_url_problem(text)
        if problem is not None:
            raise SourceError(url_error(text, problem))
    if is_live_url(text):
        return LiveSource(
            text, source_id=source_id, analysis_fps=analysis_fps, position=position, policy=policy
        )
    if is_remote_file(text):
        return VideoSource(
            text,
            source_id=source_id,
            analysis_fps=analysis_fps,
            start_time=start_time,
            position=position,
            timeout_s=policy.read_timeout_s,
        )
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if not path.is_dir():
        if not path.is_file():
            raise SourceError(f"{path}: not a regular file")
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: file is empty")
    # a file is an image or a video by its content, not its name (a photo saved as .mp4, a clip as .jpg)
    if path.is_dir() or looks_like_image(path):
        return ImageSource(
            path,
            source_id=source_id,
            analysis_fps=analysis_fps,
            start_time=start_time,
            position=position,
            image_fps=image_fps,
        )
    try:
        return VideoSource(
            path, source_id=source_id, analysis_fps=analysis_fps, start_time=start_time, position=position
        )
    except SourceError as exc:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise
        # named as an image, but neither one nor a readable video: say both
        reason = str(exc).removeprefix(f"{path}: ")
        raise SourceError(
            f"{path}: cannot be decoded as an image (its content is no JPEG, PNG, BMP or WebP), "
            f"nor read as a video: {reason}"
        ) from None
