"""Image folders and single images: frames timed by a fixed rate or by date-times in the file names."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.source import FrameSource, RateSampler, SourceError, SourceInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_IMAGE_FPS = 1.0

# 20261129_081502_123, 20261129081502, 2026-11-29T08-15-02, 2026-11-29 08.15.02.250, IMG_20261129_081502 ...
_DATETIME_IN_NAME = re.compile(
    r"(?<!\d)(?P<y>\d{4})-?(?P<mo>\d{2})-?(?P<d>\d{2})[T _-]?"
    r"(?P<h>\d{2})[-_:.]?(?P<mi>\d{2})[-_:.]?(?P<s>\d{2})(?:[._-]?(?P<ms>\d{3}))?(?!\d)"
)
_DATETIME_GROUPS = ("y", "mo", "d", "h", "mi", "s", "ms")
# A whole name of 12-13 digits: Unix time in milliseconds (2001-09-09 .. 2286), as many cameras write it.
_EPOCH_MS_NAME = re.compile(r"\d{12,13}")


def natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: img2 before img10."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def datetime_from_name(name: str) -> datetime | None:
    """The date-time a file name holds, or None.

    Date-time patterns give naive datetimes (the camera's local time, as written); a bare number of
    milliseconds is read as Unix time and gives an aware UTC datetime.
    """
    stem = Path(name).stem
    if _EPOCH_MS_NAME.fullmatch(stem):
        return datetime.fromtimestamp(int(stem) / 1000.0, tz=UTC)
    match = _DATETIME_IN_NAME.search(stem)
    if match is None:
        return None
    year, month, day, hour, minute, second, ms = (int(match[key] or 0) for key in _DATETIME_GROUPS)
    try:
        return datetime(year, month, day, hour, minute, second, ms * 1000)
    except ValueError:
        return None


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image as BGR uint8 of shape (height, width, 3); None when it cannot be decoded.

    Reads the bytes in Python so that non-ASCII paths work (cv2.imread fails on them on some platforms).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


@dataclass(frozen=True, slots=True)
class _Timed:
    path: Path
    ts: float
    wall_time: datetime | None


def _timeline(
    paths: Sequence[Path], image_fps: float | None, start_time: datetime | None, name: str
) -> tuple[list[_Timed], float | None]:
    """Place each image in time; returns the images in time order and the fixed rate used (None for names)."""
    if image_fps is not None and not image_fps > 0:
        raise ValueError(f"image_fps must be positive, got {image_fps}")
    if image_fps is None and len(paths) > 1:
        stamped = [(stamp, path) for path in paths if (stamp := datetime_from_name(path.name)) is not None]
        if len(stamped) == len(paths):
            stamped.sort(key=lambda pair: pair[0])
            first = stamped[0][0]
            timed = []
            for stamp, path in stamped:
                ts = (stamp - first).total_seconds()
                timed.append(_Timed(path, ts, wall_time_at(start_time, ts) if start_time else stamp))
            log.info("%s: timing %d images by the date-times in their names", name, len(timed))
            return timed, None
        log.warning(
            "%s: no frame rate given and not every file name holds a date-time; assuming %.0f fps",
            name,
            DEFAULT_IMAGE_FPS,
        )
    fps = image_fps or DEFAULT_IMAGE_FPS
    return [_Timed(path, i / fps, wall_time_at(start_time, i / fps)) for i, path in enumerate(paths)], fps


class ImageSource(FrameSource):
    """Frames from an image folder (natural name order) or from one image file.

    An image that cannot be decoded is skipped with a warning; Frame.index is the image's place in the
    timeline, counting skipped and unsampled images.
    """

    def __init__(
        self,
        path: Path,
        *,
        source_id: str | None = None,
        analysis_fps: float | None = None,
        start_time: datetime | None = None,
        position: GeoPoint | None = None,
        image_fps: float | None = None,
    ) -> None:
        self._sampler = RateSampler(analysis_fps)
        name = str(path)
        if path.is_dir():
            paths = sorted(
                (
                    p
                    for p in path.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                ),
                key=natural_key,
            )
            if not paths:
                suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
                raise SourceError(f"{name}: folder holds no images ({suffixes})")
        else:
            paths = [path]
        self._timeline, fps = _timeline(paths, image_fps, start_time, name)
        first_image = self._first_readable()
        if first_image is None:
            what = (
                "no image in the folder can be decoded" if path.is_dir() else "cannot be decoded as an image"
            )
            raise SourceError(f"{name}: {what}")
        last_ts = self._timeline[-1].ts
        super().__init__(
            SourceInfo(
                kind="images",
                name=name,
                fps=fps,
                frame_count=len(self._timeline),
                duration_s=last_ts + (1.0 / fps if fps else 0.0),
                width=int(first_image.shape[1]),
                height=int(first_image.shape[0]),
            )
        )
        self._source_id = source_id or path.stem
        self._position = position

    def _first_readable(self) -> np.ndarray | None:
        for timed in self._timeline:
            image = read_image(timed.path)
            if image is not None:
                return image
        return None

    def _frames(self) -> Iterator[Frame]:
        for index, timed in enumerate(self._timeline):
            if not self._sampler.due(timed.ts):
                continue
            image = read_image(timed.path)
            if image is None:
                # Not taken: the next readable image fills this sampling instant.
                log.warning("%s: skipping %s: cannot be decoded as an image", self.info.name, timed.path.name)
                continue
            self._sampler.take(timed.ts)
            yield Frame(
                image=image,
                ts=timed.ts,
                source_id=self._source_id,
                index=index,
                wall_time=timed.wall_time,
                position=self._position,
            )
