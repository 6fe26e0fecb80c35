"""What every frame source shares: its description, its errors, iterate-once, and rate sampling."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from streams.frame import Frame

log = logging.getLogger(__name__)

SourceKind = Literal["video", "images", "live"]

# Container timestamps are stored in integer ticks (ms in Matroska), so the 6th frame of 30 fps footage
# may read 199.99 or 200 ms; a frame this close before a sampling instant counts as reaching it.
SAMPLING_TOLERANCE_S = 1e-3


class InputError(Exception):
    """Input a user gave that cannot be read (footage, a camera URL, a GPS track); the message names it.

    Not a ValueError: whoever shows these to a user catches them by name, and a bug's ValueError is
    never mistaken for bad input.
    """


class SourceError(InputError):
    """A source that cannot be read; the message names the input (credentials masked)."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about a source before reading it.

    kind: "video" (a file, local or on a web server), "images", or "live" (a camera or stream URL).
    name: what to show a user (a path, or a URL with its secrets masked: streams.urls.mask_credentials).
    fps: the native frame rate, when the container or configuration states one.
    frame_count: an estimate of the frames in the source (None for live cameras).
    duration_s: the footage's length in seconds, when known.
    width, height: the image size in pixels.
    """

    kind: SourceKind
    name: str
    fps: float | None
    frame_count: int | None
    duration_s: float | None
    width: int
    height: int


class FrameSource(ABC):
    """A source of frames, read once, front to back, in flat memory.

    Iterate it once; afterwards `stopped_early` is None when the source ended normally, or says why and
    where it stopped before its end. `close()` releases the decoder; leaving the iteration (or a `with`
    block) closes it.
    """

    info: SourceInfo
    stopped_early: str | None
    _source_id: str

    @property
    def source_id(self) -> str:
        """The id every frame of this source carries (never holds credentials)."""
        return self._source_id

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self.stopped_early = None
        self._iterated = False

    def __iter__(self) -> Iterator[Frame]:
        if self._iterated:
            raise RuntimeError(f"{self.info.name} was already iterated; open it again to read it again")
        self._iterated = True
        return self._guarded()

    def _guarded(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self.close()

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """Yield the source's frames; set `stopped_early` before returning early."""

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing
        """Release what the source holds; safe to call more than once."""

    def _stop_early(self, reason: str) -> None:
        self.stopped_early = reason
        log.warning("%s: stopped early: %s", self.info.name, reason)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RateSampler:
    """Chooses frames for analysis by their timestamps, not by counting them.

    A frame is kept when its ts (seconds) reaches the next sampling instant k / rate_fps; the instant
    after it is the first one later than that frame. With rate_fps None every frame is kept.
    """

    def __init__(self, rate_fps: float | None) -> None:
        if rate_fps is not None and not rate_fps > 0:
            raise ValueError(f"analysis_fps must be positive, got {rate_fps}")
        self.rate_fps = rate_fps
        self._next_s = -math.inf

    def due(self, ts: float) -> bool:
        """Whether a frame at `ts` seconds reaches the next sampling instant."""
        return self.rate_fps is None or ts + SAMPLING_TOLERANCE_S >= self._next_s

    def take(self, ts: float) -> None:
        """Record that the frame at `ts` was kept; the next instant is the first one after it."""
        if self.rate_fps is not None:
            self._next_s = (math.floor((ts + SAMPLING_TOLERANCE_S) * self.rate_fps) + 1) / self.rate_fps

    def keep(self, ts: float) -> bool:
        """`due` and `take` in one step."""
        if not self.due(ts):
            return False
        self.take(ts)
        return True
