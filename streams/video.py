"""Video files (mp4, avi, mov, mkv, ...), local or on a web server, decoded with OpenCV's FFmpeg backend."""

from __future__ import annotations

import logging
import re
import struct
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePath, PurePosixPath
from urllib.parse import urlsplit

import cv2

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.source import FrameSource, RateSampler, SourceError, SourceInfo
from streams.urls import shown_url

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".ts", ".flv", ".wmv", ".mpg"})
# Used only when a container gives neither timestamps nor a frame rate.
FALLBACK_FPS = 30.0
# A container's frame count is estimated from its duration for some formats; allow this many frames of slack
# before calling a shorter read "stopped early".
FRAME_COUNT_SLACK = 2
# An mp4 written by a camera usually keeps its index (the moov atom) at the end of the file.
_MP4_HINT = "; an mp4/mov cut short loses its index (moov atom) and cannot be read at all"
# Matroska and WebM (EBML) state their Duration on the segment's clock: from its zero, not the first frame.
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SUFFIXES = frozenset({".mkv", ".webm"})
# The boxes an ISO media file (MP4, MOV, 3GP) may open with; its index (moov) is read whole up to this size.
_ISO_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"})
_MAX_ISO_INDEX_BYTES = 64 * 1024**2
# A track's kind: the handler type of its hdlr box (MP4: version+flags, pre_defined, type; QuickTime:
# version+flags, component type, subtype), e.g. b"vide", b"soun".
_ISO_HANDLER = re.compile(rb"hdlr.{8}(.{4})", re.DOTALL)


def container_ts(reported_s: float, previous_s: float | None, period_s: float) -> tuple[float, bool]:
    """A decoded frame's seconds from the footage start, strictly after the previous frame's.

    OpenCV reports 0 for a frame whose packet carries no timestamp; such a frame (any but the first) is
    placed one frame period after the previous one, which is index / fps when the container never gives
    timestamps. Returns the time and whether it was estimated.
    """
    if previous_s is None:
        return max(reported_s, 0.0), False
    if reported_s > previous_s:
        return reported_s, False
    return previous_s + period_s, True


def _iso_track_handlers(path: Path) -> tuple[bool, list[bytes] | None]:
    """Whether `path` is an ISO media file (MP4, MOV, 3GP: known by its first box, whatever its name), and
    the kinds of its tracks (b"vide", b"soun", ...) from its index, the moov box; None when it has no index
    (a recording cut before it, since cameras write it last) or is no ISO media file. Tells a phone's
    audio-only recording from a damaged video, which FFmpeg refuses alike."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            at = 0
            while at + 8 <= size:
                file.seek(at)
                header = file.read(16)
                box_size, kind = struct.unpack(">I4s", header[:8])
                body = 8
                if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
                    box_size, body = struct.unpack(">Q", header[8:16])[0], 16
                elif box_size == 0:  # the box runs to the end of the file
                    box_size = size - at
                if (at == 0 and kind not in _ISO_FIRST_BOXES) or box_size < body:
                    return at > 0, None
                if kind == b"moov":
                    if box_size > _MAX_ISO_INDEX_BYTES or at + box_size > size:
                        return True, None
                    file.seek(at + body)
                    return True, _track_handlers(file.read(box_size - body))
                at += box_size
    except OSError:
        return False, None
    return size >= 8, None


def _iso_cut_after_index(path: Path) -> bool:
    """Whether `path` is an ISO media file whose index (moov) is whole but whose frames (mdat) are cut off:
    a faststart file (index first, as phones and `ffmpeg -movflags +faststart` write it) cut short just
    after its index, whose frames FFmpeg then cannot decode at all. Told by its top-level boxes: one runs
    past the end of the file, or there is no mdat."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            at, index, frames = 0, False, False
            while at < size:
                file.seek(at)
                header = file.read(16)
                if len(header) < 8:
                    return index  # a box header cut in two
                box_size, kind = struct.unpack(">I4s", header[:8])
                if box_size == 1 and len(header) == 16:
                    box_size = struct.unpack(">Q", header[8:16])[0]
                elif box_size == 0:
                    box_size = size - at
                if (at == 0 and kind not in _ISO_FIRST_BOXES) or box_size < 8:
                    return False
                if at + box_size > size:
                    return index  # cut inside a box after a whole index
                index, frames = index or kind == b"moov", frames or kind == b"mdat"
                at += box_size
    except OSError:
        return False
    return index and not frames


def _track_handlers(moov: bytes) -> list[bytes]:
    """The handler type of each track (trak box) among a moov box's children; other boxes (free space, which
    may hold a removed track's bytes, user data) are skipped."""
    handlers = []
    at = 0
    while at + 8 <= len(moov):
        size = int.from_bytes(moov[at : at + 4], "big")
        if size < 8:
            break
        if moov[at + 4 : at + 8] == b"trak":
            handler = _ISO_HANDLER.search(moov, at + 8, at + size)
            if handler is not None:
                handlers.append(handler[1])
        at += size
    return handlers


def _length_counts_lead_in(path: Path | str, file_path: PurePath) -> bool:
    """Whether the container states its length from its clock's zero rather than from its first frame, as
    Matroska and WebM do: OpenCV estimates their frame count from that Duration, so a recording whose first
    frame is at 10 s on its clock (a recorder that kept the camera's clock, ffmpeg -copyts, a segment of a
    longer recording) would count 10 s of frames that never come, and a whole file would read as cut short.
    A local file is told by its first bytes (its name may be wrong), a URL by its name."""
    if isinstance(path, str):
        return file_path.suffix.lower() in _MATROSKA_SUFFIXES
    try:
        with path.open("rb") as file:
            return file.read(len(_EBML_MAGIC)) == _EBML_MAGIC
    except OSError:
        return False


class VideoSource(FrameSource):
    """Frames of a video file, timed by the container's timestamps (CAP_PROP_POS_MSEC).

    Frames between sampling instants are only grabbed (demuxed and decoded, not converted to BGR); kept frames
    are retrieved. Frame.index counts every decoded frame; Frame.ts is seconds from the footage start.

    path: a local file, or (a str) the http(s) URL of a video file on a web server
    (streams.urls.is_remote_file), shown with its secrets masked; timeout_s bounds its connect and every read.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        source_id: str | None = None,
        analysis_fps: float | None = None,
        start_time: datetime | None = None,
        position: GeoPoint | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._sampler = RateSampler(analysis_fps)
        file_path: PurePath
        if isinstance(path, str):  # a URL
            name = shown_url(path)
            file_path = PurePosixPath(urlsplit(path).path.split(";", 1)[0])
        else:
            name = str(path)
            file_path = path
        params = []
        if timeout_s is not None:
            timeout_ms = int(timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            hint = _MP4_HINT if file_path.suffix.lower() in {".mp4", ".mov", ".m4v"} else ""
            if not isinstance(path, str):
                iso, handlers = _iso_track_handlers(path)
                if handlers is not None and b"vide" not in handlers:
                    what = "only audio" if b"soun" in handlers else "no picture"
                    raise SourceError(f"{name}: holds no video track ({what}): there is nothing to analyse")
                if iso:  # the hint only where the index is missing, whatever the file's name
                    hint = _MP4_HINT if handlers is None else ""
            reason = "not a readable video (damaged, cut short, or another kind of file)"
            if isinstance(path, str):
                waited = f" within {timeout_s:g} s" if timeout_s is not None else ""
                reason = f"cannot be read (unreachable, refused, not found, no answer{waited}, or {reason})"
            raise SourceError(f"{name}: {reason}{hint}")
        # Decode the first frame now, so that a file that opens but holds no decodable video fails here.
        if not capture.grab():
            capture.release()
            if not isinstance(path, str) and _iso_cut_after_index(path):
                raise SourceError(
                    f"{name}: cut short just after its index (moov atom): the frames it lists are not "
                    "in the file (truncated)"
                )
            raise SourceError(f"{name}: holds no decodable video frames")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        native_fps = fps if fps > 0 else None
        frame_count = int(count) if count > 0 else None
        # The first frame's place on the container's clock, in frames (0 unless the recorder kept its clock).
        lead_in = round(capture.get(cv2.CAP_PROP_PTS))
        if frame_count and 0 < lead_in < frame_count and _length_counts_lead_in(path, file_path):
            frame_count -= lead_in
        duration_s = frame_count / native_fps if frame_count and native_fps else None
        super().__init__(
            SourceInfo(
                kind="video",
                name=name,
                fps=native_fps,
                frame_count=frame_count,
                duration_s=duration_s,
                width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
        )
        self._capture: cv2.VideoCapture | None = capture
        self._lock = threading.Lock()
        self._source_id = source_id or file_path.stem
        self._start_time = start_time
        self._position = position
        self._frame_period_s = 1.0 / (native_fps or FALLBACK_FPS)
        self._warned_no_timestamps = False

    def _frames(self) -> Iterator[Frame]:
        # The capture is used under the lock, so close() from another thread (a consumer of prefetch)
        # never releases it in the middle of a decode; a closed source ends quietly.
        index = 0
        with self._lock:
            if self._capture is None:
                return
            ts = self._timestamp(self._capture, index, previous=None)
        while True:
            if self._sampler.keep(ts):
                with self._lock:
                    if self._capture is None:
                        return
                    ok, image = self._capture.retrieve()
                if not ok or image is None:
                    self._stop_early(f"decode failed at frame {index} at {ts:.2f} s: damaged data")
                    return
                yield Frame(
                    image=image,
                    ts=ts,
                    source_id=self._source_id,
                    index=index,
                    wall_time=wall_time_at(self._start_time, ts),
                    position=self._position,
                )
            with self._lock:
                if self._capture is None:
                    return
                if not self._capture.grab():
                    self._check_complete(index, ts)
                    return
                index += 1
                ts = self._timestamp(self._capture, index, previous=ts)

    def _timestamp(self, capture: cv2.VideoCapture, index: int, previous: float | None) -> float:
        reported_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        ts, estimated = container_ts(reported_s, previous, self._frame_period_s)
        if estimated and not self._warned_no_timestamps:
            self._warned_no_timestamps = True
            log.warning(
                "%s: no container timestamp from frame %d on; timing frames by the frame rate (%.3f fps)",
                self.info.name,
                index,
                1.0 / self._frame_period_s,
            )
        return ts

    def _check_complete(self, last_index: int, last_ts: float) -> None:
        """Decide whether a read that ended at `last_index` reached the end the container states."""
        expected = self.info.frame_count
        if expected is not None and last_index + 1 < expected - FRAME_COUNT_SLACK:
            self._stop_early(
                f"decode failed after frame {last_index} at {last_ts:.2f} s of {expected} frames: "
                "truncated or damaged data"
            )
            return
        log.debug("%s: read %d frames to the end", self.info.name, last_index + 1)

    def close(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None
