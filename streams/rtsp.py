"""Live cameras and streams (RTSP, RTMP, HTTP MJPEG / HLS / FLV, SRT, UDP, ...; see streams.urls): bounded
waits, reconnection with backoff, and secrets kept out of every message."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import cv2
import numpy as np

from streams.frame import Frame, GeoPoint
from streams.rtsp_probe import rtsp_refusal
from streams.source import FrameSource, RateSampler, SourceError, SourceInfo
from streams.urls import default_source_id, shown_url

log = logging.getLogger(__name__)

# A camera that reports a frame rate outside this range is reporting its RTP clock or nothing useful.
_PLAUSIBLE_FPS = (0.5, 240.0)
PROBE_S = 2.0  # a stream that could not be opened: the most its camera is asked why (streams.rtsp_probe)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How long to wait for a camera, and how to retry when its stream drops.

    Retries wait backoff_initial_s, doubling up to backoff_max_s, between attempts. An outage ends the source
    (with `stopped_early` set) after max_attempts failed reconnects or max_outage_s seconds, whichever comes
    first; None disables that limit. open_timeout_s and read_timeout_s bound every connect and every read.
    A stream that drops again within stable_s of a reconnect goes on with the backoff where it was, so
    that a camera which answers and drops at once is tried at most every backoff_max_s, not every second.
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    max_attempts: int | None = 10
    max_outage_s: float | None = 300.0
    stable_s: float = 60.0

    def delays(self, first_s: float | None = None) -> Iterator[float]:
        """Seconds to wait before each reconnect attempt: 1, 2, 4, ... capped at backoff_max_s (from
        first_s when given)."""
        delay = min(first_s, self.backoff_max_s) if first_s is not None else self.backoff_initial_s
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay
            attempt += 1
            delay = min(delay * 2.0, self.backoff_max_s)


class Capture(Protocol):
    """The part of cv2.VideoCapture a live source uses (so tests can script a camera)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


def open_capture(url: str, policy: ReconnectPolicy) -> Capture:
    """Connect with OpenCV's FFmpeg backend, bounding the connect and every read by the policy's timeouts."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(policy.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(policy.read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class LiveSource(FrameSource):
    """Frames of a live camera or stream, at any URL streams.urls.is_live_url accepts.

    Frame.ts is seconds on a monotonic clock since the first frame (outages included); Frame.wall_time is
    the UTC time the frame was received; Frame.index counts every frame received. Every frame has the
    size of the first (a picture the camera re-sized is scaled back: see _sized). The first connection
    is made when the source is created, so an unreachable camera is a SourceError there; later drops
    are retried per policy.
    close() may be called from another thread: it waits at most one read timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        source_id: str | None = None,
        analysis_fps: float | None = None,
        position: GeoPoint | None = None,
        policy: ReconnectPolicy | None = None,
        connect: Callable[[str, ReconnectPolicy], Capture] = open_capture,
    ) -> None:
        self._sampler = RateSampler(analysis_fps)
        self._url = url
        self._policy = policy or ReconnectPolicy()
        self._connect = connect
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._reconnected_at: float | None = None  # monotonic
        self._last_delay_s: float | None = None  # the wait before that reconnect
        self._size: tuple[int, int] | None = None  # (width, height) of the first frame: every frame's
        self._told_size: tuple[int, int] | None = None  # another size, last logged
        name = shown_url(url)
        started = time.monotonic()
        capture = connect(url, self._policy)
        if not capture.isOpened():
            capture.release()
            # the camera's own word (rtsp://), when it answered: one that waited out the timeout says none
            answered = time.monotonic() - started < 0.9 * self._policy.open_timeout_s
            reason = rtsp_refusal(url, PROBE_S) if answered else None
            raise SourceError(
                f"{name}: cannot connect: {reason}"
                if reason
                else f"{name}: cannot connect (refused, unreachable, no answer within "
                f"{self._policy.open_timeout_s:g} s, wrong credentials or path, or not a video stream)"
            )
        fps = capture.get(cv2.CAP_PROP_FPS)
        super().__init__(
            SourceInfo(
                kind="live",
                name=name,
                fps=fps if _PLAUSIBLE_FPS[0] <= fps <= _PLAUSIBLE_FPS[1] else None,
                frame_count=None,
                duration_s=None,
                width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
        )
        self._capture: Capture | None = capture
        self._source_id = source_id or default_source_id(url)
        self._position = position
        log.info("%s: connected (%dx%d)", name, self.info.width, self.info.height)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        first_s: float | None = None
        while not self._closed.is_set():
            with self._lock:
                capture = self._capture
                got = capture is not None and capture.grab()
                received_s = time.monotonic()
                image = None
                if got:
                    first_s = received_s if first_s is None else first_s
                    ts = received_s - first_s
                    if self._sampler.due(ts):
                        ok, image = capture.retrieve()  # type: ignore[union-attr]
                        if not ok:
                            image = None
            if not got:
                if not self._reconnect(index, received_s - (first_s or received_s)):
                    return
                continue
            if image is not None:
                self._sampler.take(ts)
                yield Frame(
                    image=self._sized(image),
                    ts=ts,
                    source_id=self._source_id,
                    index=index,
                    wall_time=datetime.now(UTC),
                    position=self._position,
                )
            index += 1

    def _sized(self, image: np.ndarray) -> np.ndarray:
        """The image at the size of the source's first frame: a camera re-configured in its vendor's app
        (another resolution, mid-stream or at a reconnect) keeps the pixels its tracks, boxes and dwell
        anchors are in, so that a car standing still stays one object at one place (zones, in fractions
        of the picture, stay where they were either way); said once per new size."""
        height, width = image.shape[:2]
        if self._size is None:
            self._size = (width, height)
        if (width, height) == self._size:
            return image
        if (width, height) != self._told_size:
            self._told_size = (width, height)
            log.warning(
                "%s: the stream's picture is now %dx%d, not %dx%d: its frames are scaled to %dx%d, "
                "the size this stream's analysis began at, until it is opened again",
                self.info.name,
                width,
                height,
                *self._size,
                *self._size,
            )
        return cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)

    def _reconnect(self, frames_so_far: int, ts: float) -> bool:
        """Replace a dropped capture; False when the policy gives up or the source is closed."""
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None
        log.warning(
            "%s: stream dropped after %d frames at %.2f s; reconnecting", self.info.name, frames_so_far, ts
        )
        policy = self._policy
        outage_start = time.monotonic()
        attempts = 0
        flapping = self._reconnected_at is not None and outage_start - self._reconnected_at < policy.stable_s
        first = 2.0 * self._last_delay_s if flapping and self._last_delay_s is not None else None
        for delay in policy.delays(first):
            waited = time.monotonic() - outage_start
            if policy.max_outage_s is not None and waited + delay > policy.max_outage_s:
                break
            if self._closed.wait(delay):
                return False
            attempts += 1
            capture = self._connect(self._url, policy)
            if capture.isOpened():
                with self._lock:
                    if self._closed.is_set():
                        capture.release()
                        return False
                    self._capture = capture
                self._reconnected_at, self._last_delay_s = time.monotonic(), delay
                log.info("%s: reconnected after %d attempts", self.info.name, attempts)
                return True
            capture.release()
            log.warning("%s: reconnect attempt %d failed", self.info.name, attempts)
        self._stop_early(
            f"stream lost after {frames_so_far} frames at {ts:.2f} s; {attempts} reconnect attempts over "
            f"{time.monotonic() - outage_start:.1f} s failed"
        )
        return False

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None


RtspSource = LiveSource  # its name from when RTSP was the only live source
