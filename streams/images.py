"""Image folders and single images: frames timed by the images' own clocks (EXIF DateTimeOriginal, times in
the file names) or by a frame rate the user gives. A rate is never guessed."""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from streams.frame import Frame, GeoPoint, wall_time_at
from streams.source import FrameSource, RateSampler, SourceError, SourceInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})

# 20261129_081502_123, 20261129081502, 2026-11-29T08-15-02, 2026-11-29 08.15.02.250, IMG_20261129_081502 ...
_DATETIME_IN_NAME = re.compile(
    r"(?<!\d)(?P<y>\d{4})-?(?P<mo>\d{2})-?(?P<d>\d{2})[T _-]?"
    r"(?P<h>\d{2})[-_:.]?(?P<mi>\d{2})[-_:.]?(?P<s>\d{2})(?:[._-]?(?P<ms>\d{3}))?(?!\d)"
)
_DATETIME_GROUPS = ("y", "mo", "d", "h", "mi", "s", "ms")
# A whole name of 12-13 digits: Unix time in milliseconds (2001-09-09 .. 2286), as many cameras write it.
_EPOCH_MS_NAME = re.compile(r"\d{12,13}")
# A whole name of 10 digits, optionally with a fraction: Unix time in seconds (2001 .. 2286), 1733212502.250
_EPOCH_S_NAME = re.compile(r"[1-9]\d{9}(?:\.\d{1,6})?")
# A frame's offset from the start of the footage in milliseconds, ending the name: frame_000250ms, f-1250ms
_OFFSET_MS_NAME = re.compile(r"(?<!\d)(?P<ms>\d+)[_-]?ms$", re.IGNORECASE)

# EXIF tags (TIFF tag numbers) read for an image's capture time.
_EXIF_IFD_POINTER = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_SUBSEC_TIME_ORIGINAL = 0x9291
_EXIF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}


def natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: img2 before img10."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def datetime_from_name(name: str) -> datetime | None:
    """The date-time a file name holds, or None.

    Date-time patterns give naive datetimes (the camera's local time, as written); a bare number of
    milliseconds (12-13 digits) or of seconds (10 digits, with or without a fraction: 1733212502.250) is read
    as Unix time and gives an aware UTC datetime.
    """
    stem = Path(name).stem
    if _EPOCH_MS_NAME.fullmatch(stem):
        return datetime.fromtimestamp(int(stem) / 1000.0, tz=UTC)
    if _EPOCH_S_NAME.fullmatch(stem):
        whole, _, fraction = stem.partition(".")
        micros = int((fraction or "0").ljust(6, "0"))
        return datetime.fromtimestamp(int(whole), tz=UTC) + timedelta(microseconds=micros)
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


def looks_like_image(path: Path) -> bool:
    """Whether a file's first bytes are those of an image format read here (JPEG, PNG, BMP, WebP), whatever
    its name: a photo saved as .mp4 is still a photo. Only the first bytes are read, so that a video of
    gigabytes is not read into memory to find out it is none."""
    try:
        with path.open("rb") as file:
            head = file.read(12)
    except OSError:
        return False
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return webp or head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM"))  # JPEG, PNG, BMP


def offset_from_name(name: str) -> float | None:
    """Seconds from the start of the footage that a name ending in milliseconds states (frame_001250ms.jpg:
    1.25), or None."""
    match = _OFFSET_MS_NAME.search(Path(name).stem)
    return None if match is None else int(match["ms"]) / 1000.0


def _exif_block(path: Path) -> bytes | None:
    """The TIFF structure of a JPEG's EXIF APP1 segment (after b"Exif\\0\\0"), or None."""
    try:
        with path.open("rb") as file:
            if file.read(2) != b"\xff\xd8":
                return None
            while True:
                marker = file.read(2)
                if len(marker) < 2 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):
                    return None  # end of image, or the image data: no EXIF before it
                size_bytes = file.read(2)
                if len(size_bytes) < 2:
                    return None
                size = struct.unpack(">H", size_bytes)[0] - 2
                if size < 0:
                    return None
                if marker[1] == 0xE1:
                    payload = file.read(size)
                    if payload.startswith(b"Exif\x00\x00"):
                        return payload[6:]
                else:
                    file.seek(size, 1)
    except OSError:
        return None


def _ifd_ascii(tiff: bytes, offset: int, endian: str) -> tuple[dict[int, str], int | None]:
    """The ASCII entries of one IFD by tag, and the offset of its EXIF sub-IFD when it points to one."""
    values: dict[int, str] = {}
    exif_ifd: int | None = None
    if offset + 2 > len(tiff):
        return values, None
    (count,) = struct.unpack_from(endian + "H", tiff, offset)
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind, n = struct.unpack_from(endian + "HHI", tiff, entry)
        if tag == _EXIF_IFD_POINTER and kind == 4:
            (exif_ifd,) = struct.unpack_from(endian + "I", tiff, entry + 8)
        elif kind == 2:
            size = n * _EXIF_TYPE_SIZES[2]
            start = entry + 8 if size <= 4 else struct.unpack_from(endian + "I", tiff, entry + 8)[0]
            raw = tiff[start : start + size]
            values[tag] = raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return values, exif_ifd


def exif_datetime_original(path: Path) -> datetime | None:
    """When a JPEG was taken by EXIF DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal), or None.

    Without OffsetTimeOriginal the time is naive (the camera's local time, as written); with it, aware.
    Only JPEG files carry EXIF as read here; other formats give None.
    """
    if path.suffix.lower() not in _JPEG_SUFFIXES:
        return None
    tiff = _exif_block(path)
    if tiff is None or len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    endian = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(endian + "I", tiff, 4)
        values, exif_ifd = _ifd_ascii(tiff, ifd0, endian)
        if exif_ifd is not None:
            values.update(_ifd_ascii(tiff, exif_ifd, endian)[0])
    except struct.error:
        return None
    text = values.get(_DATETIME_ORIGINAL)
    if not text:
        return None
    try:
        taken = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    subsec = values.get(_SUBSEC_TIME_ORIGINAL, "")
    if subsec.isdigit():
        taken += timedelta(microseconds=int(subsec[:6].ljust(6, "0")))
    offset = values.get(_OFFSET_TIME_ORIGINAL, "")
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset)
    if match:
        delta = timedelta(hours=int(match[2]), minutes=int(match[3]))
        taken = taken.replace(tzinfo=timezone(-delta if match[1] == "-" else delta))
    return taken


@dataclass(frozen=True, slots=True)
class _Timed:
    path: Path
    ts: float
    wall_time: datetime | None


def _by_clock(
    paths: Sequence[Path], clock: Callable[[Path], datetime | float | None]
) -> tuple[list[tuple[datetime | float, Path]] | None, str | None]:
    """Every image's time by one clock, in time order; (None, why not) unless each has a distinct one."""
    stamped: list[tuple[datetime | float, Path]] = []
    for path in paths:
        stamp = clock(path)
        if stamp is None:
            return None, f"{path.name} has none"
        stamped.append((stamp, path))
    kinds = {isinstance(stamp, datetime) and stamp.tzinfo is not None for stamp, _ in stamped}
    if len(kinds) > 1:
        return None, "some carry a time zone and some do not"
    stamped.sort(key=lambda pair: pair[0])  # type: ignore[arg-type, return-value]
    for (before, first_path), (after, second_path) in zip(stamped, stamped[1:], strict=False):
        if before == after:
            return None, f"{first_path.name} and {second_path.name} have the same time"
    return stamped, None


def _timeline(
    paths: Sequence[Path], image_fps: float | None, start_time: datetime | None, name: str
) -> tuple[list[_Timed], float | None]:
    """Place each image in time; returns the images in time order and the fixed rate used (None otherwise).

    Without image_fps, the images' own times are used: EXIF DateTimeOriginal when every image has one, else
    times in the file names when every name carries one; else a SourceError asks for the rate. A rate is
    never assumed: a 5 fps folder read at 1 fps stretches every dwell fivefold and fires false incidents.
    """
    if image_fps is not None and not image_fps > 0:
        raise SourceError(f"{name}: the image frame rate must be positive, got {image_fps}")
    if image_fps is None and len(paths) == 1:
        return [_Timed(paths[0], 0.0, start_time)], None
    if image_fps is None:
        reasons = []
        clocks: list[tuple[str, Callable[[Path], datetime | float | None]]] = [
            ("EXIF DateTimeOriginal", exif_datetime_original),
            ("the date-times in their names", lambda path: datetime_from_name(path.name)),
            ("the millisecond offsets in their names", lambda path: offset_from_name(path.name)),
        ]
        for label, clock in clocks:
            stamped, why = _by_clock(paths, clock)
            if stamped is None:
                reasons.append(f"{label}: {why}")
                continue
            first = stamped[0][0]
            timed = []
            for stamp, path in stamped:
                if isinstance(stamp, datetime):
                    ts = (stamp - first).total_seconds()  # type: ignore[operator]
                    wall = wall_time_at(start_time, ts) if start_time else stamp
                else:
                    ts = float(stamp) - float(first)  # type: ignore[arg-type]
                    wall = wall_time_at(start_time, ts)
                timed.append(_Timed(path, ts, wall))
            log.info("%s: timing %d images by %s", name, len(timed), label)
            return timed, None
        raise SourceError(
            f"{name}: cannot tell when the images were taken ({'; '.join(reasons)}); give the folder's frame "
            "rate: gridpatrol detect --image-fps N (image_fps= in Python)"
        )
    fps = image_fps
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
        first_image = next((image for p in paths if (image := read_image(p)) is not None), None)
        if first_image is None:
            what = (
                "no image in the folder can be decoded" if path.is_dir() else "cannot be decoded as an image"
            )
            raise SourceError(f"{name}: {what}")
        self._timeline, fps = _timeline(paths, image_fps, start_time, name)
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
