"""Privacy blurring of evidence images (个人信息保护, issue 12): faces, and the plates of vehicles that are
not involved, are pixelated in what operators see; the subject's own plate stays readable (it is evidence).

Faces are found two ways, and both are kept:
- OpenCV's bundled Haar cascade (haarcascade_frontalface_default.xml from cv2.data.haarcascades), on the
  whole image, so a face is blurred even when no person was detected. OpenCV 5 no longer ships the cascades
  nor CascadeClassifier: there this finder is off (logged once) and only the heads below are blurred.
  Measured with OpenCV 4.14 on ultralytics' bus.jpg (1080 x 810, 4 people): the 2 faces facing the camera;
  on zidane.jpg 1 of its 2 faces and 2 false hits on the blurred background; 1 false hit (a lamp) on 6
  frames of the shared dashcam clip; 300-750 ms a 0.9-megapixel frame on this 2-core machine. The profile
  cascade found nothing more on these and cost as much again: it is not used.
- the head of every detected person: the top of the person's box, its full width (`head_box`). It catches
  what the cascade misses (profiles, backs of heads, small and blurred faces); blurring a back of a head costs
  nothing. It needs the frame's detections (`scene`).

A cascade hit overlapping a plate-coloured patch of the subject's box is dropped: a face is never on a plate,
and a false hit there would erase the evidence.

Plates: every vehicle detection (VEHICLE_KINDS) that is not the subject, that is with less than
INVOLVED_SHARE of its box inside the subject's box, has its plate looked for with the plate reader's own
colour-and-shape search (detect.plate_reader.find_plate_candidates); every candidate it gives is blurred.
When none lies in the lower half of the vehicle box (a white, black or dirty plate, a blue plate on blue
paint), the lower-middle band of the box, where plates are mounted front and rear, is blurred as well
(PLATE_BAND; a vehicle seen side-on may keep its plate outside it). A plate region lying mostly inside the
subject's box is left alone: it is the subject's, or hidden behind it.

Blurring is a mosaic (each region averaged into cells about a quarter of its short side, INTER_AREA then
INTER_NEAREST): a plate is left 4 cells tall, a character about one cell wide, nothing an OCR can read back
(the OCR tests in tests/detect/test_privacy.py); a face is 2 x 2 to 4 x 4 flat cells.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.plate_reader import find_plate_candidates
from detect.values import Box, Detection

log = logging.getLogger(__name__)

FACE_CASCADE = "haarcascade_frontalface_default.xml"
CASCADE_SCALE = 1.1  # detectMultiScale's scaleFactor
CASCADE_NEIGHBOURS = 5  # ... its minNeighbors (4 and 6 found the same faces on bus.jpg)
CASCADE_MIN_PX = 20  # the smallest face looked for, pixels a side
CASCADE_MAX_SIDE_PX = 1920  # larger images are searched scaled down to this many pixels a side

PERSON_KINDS = frozenset({"person"})
VEHICLE_KINDS = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})  # China plates e-bikes too
HEAD_SHARE = 0.25  # the top share of a person's box that is their head (a standing adult's is about 0.15)
HEAD_WIDTH_SHARE = 0.6  # ... or this share of its width tall, if more (a close-up cut off at the waist),
HEAD_MAX_SHARE = 0.5  # ... but never more than this share of its height (a box around two people is wide)
INVOLVED_SHARE = 0.5  # a vehicle with at least this share of its box inside the subject's box is involved
PLATE_BAND = (0.2, 0.55, 0.8, 0.97)  # (x1, y1, x2, y2) of the band, as shares of the vehicle box
FACE_MARGIN = 0.15  # a face or head region grown by this share of its size each side
PLATE_MARGIN = 0.1  # a plate candidate grown by this share of its size each side
MOSAIC_CELLS = 4  # mosaic cells across a region's short side (at least 3 px a cell)

PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class BlurredRegion:
    """One region pixelated: box (x1, y1, x2, y2) in the blurred image's pixels; why: "face" (the
    cascade), "head" (a person's box), "plate" (a plate candidate) or "plate_band" (no candidate)."""

    box: PixelBox
    why: str


@dataclass(frozen=True, slots=True)
class Blurred:
    """The blurred image (BGR uint8; the input itself, unchanged, when no region was found) and what was
    blurred."""

    image: np.ndarray
    regions: tuple[BlurredRegion, ...]


@functools.cache
def face_cascade() -> Any | None:
    """OpenCV's frontal-face Haar cascade, loaded once; None where this OpenCV has none (OpenCV 5)."""
    data = getattr(cv2, "data", None)
    classifier = getattr(cv2, "CascadeClassifier", None)
    path = Path(getattr(data, "haarcascades", "")) / FACE_CASCADE
    if classifier is None or not path.is_file():
        log.warning(
            "OpenCV %s has no Haar face cascade (%s): faces are blurred only on detected people's heads",
            cv2.__version__,
            FACE_CASCADE,
        )
        return None
    cascade = classifier(str(path))
    return None if cascade.empty() else cascade


def find_faces(image_bgr: np.ndarray) -> list[PixelBox]:
    """Faces the Haar cascade finds in an HxWx3 BGR image, (x1, y1, x2, y2) pixels; [] without a cascade."""
    cascade = face_cascade()
    if cascade is None or image_bgr.size == 0:
        return []
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, CASCADE_MAX_SIDE_PX / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    found = cascade.detectMultiScale(
        gray,
        scaleFactor=CASCADE_SCALE,
        minNeighbors=CASCADE_NEIGHBOURS,
        minSize=(CASCADE_MIN_PX, CASCADE_MIN_PX),
    )
    return [
        (round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
        for x, y, w, h in found
    ]


def head_box(person: Box) -> Box:
    """The head of a person's box (x1, y1, x2, y2 pixels), full width: its top HEAD_SHARE, or, if
    taller, HEAD_WIDTH_SHARE of its width up to HEAD_MAX_SHARE of its height. On bus.jpg the cascade's two
    faces end 13% and 16% of their people's height down; on zidane.jpg (a man cut off at the waist) 32%,
    0.55 of his width."""
    x1, y1, x2, y2 = person
    h = y2 - y1
    return (x1, y1, x2, y1 + max(h * HEAD_SHARE, min((x2 - x1) * HEAD_WIDTH_SHARE, h * HEAD_MAX_SHARE)))


def plate_band(vehicle: Box) -> Box:
    """The lower-middle band of a vehicle's box (PLATE_BAND), where its plate is mounted."""
    x1, y1, x2, y2 = vehicle
    w, h = x2 - x1, y2 - y1
    return (x1 + w * PLATE_BAND[0], y1 + h * PLATE_BAND[1], x1 + w * PLATE_BAND[2], y1 + h * PLATE_BAND[3])


def inside_share(box: Box, outer: Box) -> float:
    """The share of `box`'s area that lies inside `outer` (0 for an empty box)."""
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    if area <= 0.0:
        return 0.0
    iw = min(box[2], outer[2]) - max(box[0], outer[0])
    ih = min(box[3], outer[3]) - max(box[1], outer[1])
    return max(0.0, iw) * max(0.0, ih) / area


def _overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _kind(detection: Detection) -> str:
    return detection.kind or detection.class_name


def _grown(box: Box, margin: float, width: int, height: int) -> PixelBox | None:
    """The box grown by `margin` of its size each side, in whole pixels, clipped; None when empty."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    right, bottom = min(width, math.ceil(x2 + mx)), min(height, math.ceil(y2 + my))
    return (left, top, right, bottom) if right > left and bottom > top else None


def pixelate(image: np.ndarray, box: PixelBox) -> None:
    """Pixelate `box` of `image` in place: cells of about a MOSAIC_CELLS'th of its short side."""
    x1, y1, x2, y2 = box
    roi = image[y1:y2, x1:x2]
    h, w = roi.shape[:2]
    cell = max(3, math.ceil(min(h, w) / MOSAIC_CELLS))
    small = cv2.resize(roi, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    roi[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _shift(box: Box, dx: float, dy: float) -> Box:
    return (box[0] - dx, box[1] - dy, box[2] - dx, box[3] - dy)


def private_regions(
    image_bgr: np.ndarray,
    subject: Box,
    scene: Sequence[Detection] = (),
    *,
    origin: tuple[int, int] = (0, 0),
    cascade: bool = True,
) -> list[BlurredRegion]:
    """The regions of `image_bgr` (HxWx3 BGR uint8) to blur: faces, heads, uninvolved vehicles' plates.

    subject and the scene's boxes are (x1, y1, x2, y2) pixels of the frame the image was cut from, whose
    top-left pixel (x, y) `origin` is (a dwell strip's window; (0, 0) for the whole frame). cascade: look
    for faces with the Haar cascade too (not only on detected people's heads).
    """
    height, width = image_bgr.shape[:2]
    dx, dy = origin
    own = _shift(subject, dx, dy)
    regions: list[BlurredRegion] = []

    def add(box: Box, margin: float, why: str) -> None:
        grown = _grown(box, margin, width, height)
        if grown is not None:
            regions.append(BlurredRegion(grown, why))

    if cascade:
        faces = find_faces(image_bgr)
        if faces:  # the subject's plate candidates guard against a false face on them
            guard = [c.box for c in find_plate_candidates(image_bgr, own)]
            for face in faces:
                if not any(_overlaps(face, plate) for plate in guard):
                    add(face, FACE_MARGIN, "face")
    for detection in scene:
        box = _shift(detection.box, dx, dy)
        kind = _kind(detection)
        if kind in PERSON_KINDS:
            add(head_box(box), FACE_MARGIN, "head")
        elif kind in VEHICLE_KINDS and inside_share(box, own) < INVOLVED_SHARE:
            plates: list[Box] = [c.box for c in find_plate_candidates(image_bgr, box)]
            middle = (box[1] + box[3]) / 2.0
            for plate in plates:
                if inside_share(plate, own) < 0.5:
                    add(plate, PLATE_MARGIN, "plate")
            if not any((p[1] + p[3]) / 2.0 >= middle for p in plates):
                band = plate_band(box)
                if inside_share(band, own) < 0.5:
                    add(band, 0.0, "plate_band")
    return regions


def blur_private(
    image_bgr: np.ndarray,
    subject: Box,
    scene: Sequence[Detection] = (),
    *,
    origin: tuple[int, int] = (0, 0),
    cascade: bool = True,
) -> Blurred:
    """The image with its private regions (`private_regions`, same arguments) pixelated, in a copy; the
    input is never changed (it may be a view of a frame other stages still read)."""
    regions = private_regions(image_bgr, subject, scene, origin=origin, cascade=cascade)
    if not regions:
        return Blurred(image_bgr, ())
    out = image_bgr.copy()
    for region in regions:
        pixelate(out, region.box)
    return Blurred(out, tuple(regions))
