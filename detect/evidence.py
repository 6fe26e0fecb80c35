"""Evidence images for an incident: the best frame annotated, a crop of the object, the raw frame, and
the dwell strip (the same part of the frame when the object was first seen, about half way through
its stay and when it was last seen, so a reviewer sees at a glance that it never moved).

Privacy (issue 12, detect.privacy): with `privacy` on, faces and the plates of vehicles not involved are
pixelated in every image operators see (annotated, crop, raw, the dwell strip); the unblurred best frame is
kept as one more file, role "original", which the case service seals (admins only, each fetch logged in
the custody chain). It is written only when something was blurred (otherwise raw is the original, byte for
byte). The dwell strip keeps no originals.

Each file is JPEG, written atomically (temp file, then rename) under
`<out_dir>/evidence/<incident id>/<role>-f<frame index>.jpg`, and described by an EvidenceFile with
its SHA-256 so the case service can verify it was not altered on the way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from detect.privacy import blur_private
from detect.values import DWELL_ROLES, Box, Detection, EvidenceFile, Window
from streams.frame import Frame

BOX_COLOUR = (0, 0, 255)  # BGR red
TEXT_COLOUR = (255, 255, 255)
ZONE_COLOUR = (0, 255, 255)  # BGR yellow
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_PAD_PX = 3  # each side of a banner line's text

# The dwell strip. A sighting keeps its first frame, at most DWELL_SAMPLES frames spread over its stay
# and its latest frame: at most DWELL_SAMPLES + 2 JPEGs of at most DWELL_MAX_SIDE_PX a side each,
# however long it stays (a few hundred KB at most), and no full frame once it is out of sight.
DWELL_SAMPLES = 8
DWELL_MARGIN_RATIO = 1.5  # the strip's window: the first box grown by this much of its size each side
DWELL_MIN_SIDE_PX = 160  # ... and at least this many pixels a side (or the whole frame's side)
DWELL_MAX_SIDE_PX = 480  # strip images are scaled down to at most this many pixels a side


def _encode(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _label_lines(label: str, ts: float, wall_time: datetime | None, camera: str) -> list[str]:
    when = wall_time.isoformat(timespec="seconds") if wall_time else f"t={ts:.1f}s"
    return [label, f"{camera}  {when}"]


def _text_scale(lines: list[str], width: int, height: int, preferred: float) -> float:
    """The largest font scale up to `preferred` at which every line, padded, fits the image's width and all
    lines together its height (Hershey text scales linearly; shrink until it fits)."""
    scale = preferred
    while scale > 0.1:
        widest = max(cv2.getTextSize(text, FONT, scale, 1)[0][0] for text in lines)
        if widest + 2 * TEXT_PAD_PX <= width and (int(28 * scale) + 6) * len(lines) <= height:
            break
        scale *= 0.9
    return scale


def annotate(
    image: np.ndarray, box: Box, lines: list[str], zone_norm: Sequence[tuple[float, float]] | None = None
) -> np.ndarray:
    """A copy of a BGR image with the zone outlined, the box drawn and text lines in a banner above it.

    box: (x1, y1, x2, y2) in pixels; zone_norm: the zone polygon's vertices (x, y) as fractions of the image
    width and height (a zone's points_norm), or None. The text shrinks where needed to stay inside the image.
    """
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(2, round(min(h, w) / 300))
    if zone_norm:
        points = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in zone_norm], dtype=np.int32)
        cv2.polylines(
            out, [points], isClosed=True, color=ZONE_COLOUR, thickness=thickness, lineType=cv2.LINE_AA
        )
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
    if not lines:
        return out
    scale = _text_scale(lines, w, h, max(0.5, min(h, w) / 900))
    line_h = int(28 * scale) + 6
    top = y1 - line_h * len(lines) if y1 - line_h * len(lines) >= 0 else min(y2, h - line_h * len(lines))
    top = max(0, top)
    for i, text in enumerate(lines):
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
        y = top + i * line_h
        x = min(max(0, x1), max(0, w - tw - 2 * TEXT_PAD_PX))
        cv2.rectangle(out, (x, y), (x + tw + 2 * TEXT_PAD_PX, y + line_h), BOX_COLOUR, -1)
        cv2.putText(out, text, (x + TEXT_PAD_PX, y + line_h - 6), FONT, scale, TEXT_COLOUR, 1, cv2.LINE_AA)
    return out


def crop(image: np.ndarray, box: Box, margin_ratio: float) -> np.ndarray:
    """The box grown by margin_ratio of its size on each side, clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin_ratio, (y2 - y1) * margin_ratio
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(round(x2 + mx))), min(h, int(round(y2 + my)))
    if right <= left or bottom <= top:
        return image.copy()
    return image[top:bottom, left:right].copy()


def write_evidence(
    out_dir: Path,
    incident_id: str,
    image: np.ndarray,
    box: Box,
    *,
    label: str,
    ts: float,
    wall_time: datetime | None,
    camera: str,
    jpeg_quality: int = 90,
    crop_margin_ratio: float = 0.15,
    frame_index: int = 0,
    zone_norm: Sequence[tuple[float, float]] | None = None,
    scene: Sequence[Detection] = (),
    privacy: bool = True,
) -> tuple[EvidenceFile, ...]:
    """Write annotated, crop and raw JPEGs; paths in the result are relative to out_dir.

    zone_norm: the polygon of the zone the incident was in (points_norm), outlined on the annotated frame.
    scene: the frame's detections (full-frame pixels), for privacy: people's heads and other vehicles'
    plates. privacy: blur faces and uninvolved plates (detect.privacy) in the three images and, when
    anything was blurred, write the unblurred frame as a fourth file, role "original".

    File names carry the frame index, so an incident written when it fires and again, with a
    better frame, when it ends keeps both sets of files intact (each record's hashes stay true).
    """
    folder = Path("evidence") / incident_id
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    shown = blur_private(image, box, scene) if privacy else None
    seen = image if shown is None else shown.image
    images = {
        "annotated": annotate(seen, box, _label_lines(label, ts, wall_time, camera), zone_norm),
        "crop": crop(seen, box, crop_margin_ratio),
        "raw": seen,
    }
    if shown is not None and shown.regions:
        images["original"] = image
    files = []
    for role, img in images.items():
        data = _encode(img, jpeg_quality)
        rel = folder / f"{role}-f{frame_index:06d}.jpg"
        _write(out_dir / rel, data)
        files.append(EvidenceFile(role=role, path=rel.as_posix(), sha256=hashlib.sha256(data).hexdigest()))
    return tuple(files)


def dwell_window(box: Box, width: int, height: int) -> Window:
    """The part of a width x height frame a dwell strip shows, (x1, y1, x2, y2) in pixels.

    The box grown by DWELL_MARGIN_RATIO of its size on each side, at least DWELL_MIN_SIDE_PX a side
    (at most the frame's side), moved inside the frame where it would cross an edge.
    """

    def span(lo: float, hi: float, limit: int) -> tuple[int, int]:
        size = min(limit, max(DWELL_MIN_SIDE_PX, round((hi - lo) * (1 + 2 * DWELL_MARGIN_RATIO))))
        start = min(max(0, round((lo + hi - size) / 2)), limit - size)
        return start, start + size

    x1, x2 = span(box[0], box[2], width)
    y1, y2 = span(box[1], box[3], height)
    return (x1, y1, x2, y2)


@dataclass(frozen=True, slots=True)
class StripFrame:
    """One kept frame of a dwell strip: the window's JPEG and the object's box (full-frame pixels)."""

    frame_index: int
    ts: float
    wall_time: datetime | None
    box: Box
    jpeg: bytes


class DwellStrip:
    """The frames one sighting (one object, or one stall) keeps for its dwell strip.

    Every frame is a JPEG of the same window (`dwell_window` of the object's box when first seen).
    Kept: the first frame; samples, taken every `stride` observations after it, at most
    DWELL_SAMPLES of them (when that many are held the next sample first drops every other one and
    doubles the stride, so they stay evenly spread over the stay); the latest observation. So at most
    DWELL_SAMPLES + 2 small JPEGs per sighting over an hour as over a minute, and only the samples
    are encoded as the object is seen, not every frame. The latest observation is held as its frame
    while that is the current frame and encoded by `settle` when the sighting is missed in a frame,
    so that no full frame is kept for an object out of sight.

    privacy: each kept frame is blurred (detect.privacy: faces, the plates of vehicles in the scene other
    than the object) before it is encoded; the strip keeps no unblurred original (the incident's sealed
    original is its best frame, written by write_evidence).
    """

    def __init__(self, window: Window, jpeg_quality: int, *, privacy: bool = True) -> None:
        self.window = window
        self.jpeg_quality = jpeg_quality
        self.privacy = privacy
        self.first: StripFrame | None = None
        self.samples: list[StripFrame] = []
        self.stride = 1
        self.observed = 0
        self._latest: StripFrame | None = None  # the latest observation, when encoded
        # the latest observation, not encoded yet: its frame, box and the frame's detections
        self._pending: tuple[Frame, Box, Sequence[Detection]] | None = None

    @property
    def held(self) -> int:
        """JPEGs held (at most DWELL_SAMPLES + 2)."""
        kept = {id(f) for f in (self.first, *self.samples, self._latest) if f is not None}
        return len(kept)

    def observe(self, frame: Frame, box: Box, scene: Sequence[Detection] = ()) -> None:
        """The object was seen in `frame` at `box` (full-frame pixels) among the frame's detections `scene`
        (for privacy blurring); frames come in time order. Seen again in the same frame (a stall taking
        over its first cue's strip): the box is updated."""
        if self._pending is not None and self._pending[0] is frame:
            self._pending = (frame, box, scene)
            return
        latest = self._latest
        if latest is not None and (latest.frame_index, latest.ts) == (frame.index, frame.ts):
            updated = replace(latest, box=box)
            self.first = updated if self.first is latest else self.first
            self.samples = [updated if s is latest else s for s in self.samples]
            self._latest = updated
            return
        n = self.observed  # observations before this one; the first is n = 0
        self.observed += 1
        if n == 0:
            self.first = self._latest = self._encode(frame, box, scene)
            return
        if n % self.stride == 0 and len(self.samples) == DWELL_SAMPLES:
            self.samples = self.samples[1::2]  # those at multiples of the doubled stride
            self.stride *= 2
        if n % self.stride == 0:
            self._latest = self._encode(frame, box, scene)
            self.samples.append(self._latest)
            self._pending = None
        else:
            self._latest, self._pending = None, (frame, box, scene)

    def settle(self) -> None:
        """The object was missed in the current frame: encode its latest observation, let go of the frame."""
        if self._pending is not None:
            self._latest = self._encode(*self._pending)
            self._pending = None

    def choose(self) -> tuple[StripFrame, StripFrame, StripFrame]:
        """First, middle, last: the first frame, the kept frame nearest the middle of the time between
        the first and the latest (the first when none lies between them), the latest observation."""
        self.settle()
        if self.first is None or self._latest is None:
            raise RuntimeError("a dwell strip with no frame")
        first, last = self.first, self._latest
        mid_ts = (first.ts + last.ts) / 2.0
        between = [s for s in self.samples if first.ts < s.ts < last.ts]
        middle = min(between, key=lambda s: (abs(s.ts - mid_ts), s.ts)) if between else first
        return first, middle, last

    def _encode(self, frame: Frame, box: Box, scene: Sequence[Detection]) -> StripFrame:
        x1, y1, x2, y2 = self.window
        part = frame.image[y1:y2, x1:x2]
        if self.privacy:  # a copy when anything is blurred: the frame itself is left as it is
            part = blur_private(part, box, scene, origin=(x1, y1)).image
        h, w = part.shape[:2]
        scale = DWELL_MAX_SIDE_PX / max(h, w, 1)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            part = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
        return StripFrame(frame.index, frame.ts, frame.wall_time, box, _encode(part, self.jpeg_quality))


def write_dwell_strip(out_dir: Path, incident_id: str, strip: DwellStrip) -> tuple[EvidenceFile, ...]:
    """Write the strip's first, middle and last frames (roles DWELL_ROLES) beside the incident's other
    evidence; paths in the result are relative to out_dir, times and boxes rounded as the incident's."""
    folder = Path("evidence") / incident_id
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    files = []
    for role, frame in zip(DWELL_ROLES, strip.choose(), strict=True):
        rel = folder / f"{role}-f{frame.frame_index:06d}.jpg"
        _write(out_dir / rel, frame.jpeg)
        files.append(
            EvidenceFile(
                role=role,
                path=rel.as_posix(),
                sha256=hashlib.sha256(frame.jpeg).hexdigest(),
                ts=round(frame.ts, 3),
                wall_time=frame.wall_time,
                window=strip.window,
                box=(
                    round(frame.box[0], 1),
                    round(frame.box[1], 1),
                    round(frame.box[2], 1),
                    round(frame.box[3], 1),
                ),
            )
        )
    return tuple(files)
