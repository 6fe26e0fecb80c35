"""Reading a vehicle's Chinese number plate off a frame (issue 12): find the plate, then OCR only it.

Cost matters (this runs on vehicles in parking sightings, not on every frame), so the OCR never sees the
whole frame nor the whole vehicle. First the plate is looked for inside the vehicle's box by its colour:
Chinese plates are blue with white characters (most cars), a green gradient (new-energy vehicles) or yellow
(large vehicles); their background is a solid patch about 3.1 times as wide as it is tall (440 x 140 mm;
3.4 for the 480 x 140 mm new-energy plate). HSV masks of those colours, contours, and filters on aspect
ratio, size and fill give a few candidate boxes, the lower half of the vehicle preferred. Each candidate is
cropped with a small margin, small crops are upscaled, and RapidOCR's PP-OCRv4 recogniser reads the crop as
one text line (rec only: no text detection, no angle classifier). Only readings detect.plates accepts, of
the kind the colour says, with no character under PlateReader's min_confidence, are kept; the most
confident wins. Over several frames of one vehicle, PlateReader.read_many votes.

The models ship inside the rapidocr-onnxruntime wheel (PP-OCR det/cls/rec as ONNX); nothing is downloaded.

A yellow patch shaped like a two-row plate (the rear plates of trucks and buses, 440 x 220 mm) is read
row by row. Not handled: white police and black plates (no colour candidate), a blue plate touching blue
paint (one colour patch), plates seen at a steep angle (the crop is not de-skewed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from detect import SetupError
from detect.plates import Plate, read_plate
from detect.values import Box

log = logging.getLogger(__name__)

# OpenCV HSV: hue 0-180, saturation and value 0-255. (lower, upper) per plate colour.
PLATE_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "blue": ((100, 90, 50), (130, 255, 255)),
    "yellow": ((15, 90, 90), (35, 255, 255)),
    "green": ((35, 40, 80), (85, 255, 255)),
}
MIN_ASPECT, MAX_ASPECT = 2.0, 6.0  # width / height of a colour patch that may be a one-row plate
TARGET_ASPECT = 3.3  # between the standard 3.14 and the new-energy 3.43
# A yellow two-row plate (large vehicles' rear, 440 x 220 mm): province and city letter above (60 mm
# tall), the 5-character serial below (110 mm); the rows part at about 37% of the height.
TWO_ROW_ASPECTS = (1.6, 2.6)
TWO_ROW_TARGET = 2.0
TWO_ROW_SPLIT = (0.40, 0.36)  # the top row ends, the bottom row starts, as shares of the crop's height
MIN_PLATE_WIDTH_PX = 36  # narrower than this, seven characters are not legible
MAX_WIDTH_SHARE = 0.8  # of the vehicle box's width: wider is the vehicle's paint, not a plate
MIN_FILL = 0.45  # share of the patch's box in the colour (a plate's ground; its characters are not)
CROP_MARGINS = (0.08, 0.0)  # tried in turn, see PlateReader._read_candidate
OCR_HEIGHT_PX = 48  # the recogniser's input height: smaller crops are upscaled to it
SURE_CONFIDENCE = 0.9  # a plate read this surely ends the reading of a vehicle's candidates


@dataclass(frozen=True, slots=True)
class PlateCandidate:
    """A patch of plate colour that may be a plate: box (x1, y1, x2, y2) in full-frame pixels (the
    colour patch, before the crop's margin), its colour, a score for the order they are read in, and
    whether it is shaped like a two-row plate (yellow only)."""

    box: tuple[int, int, int, int]
    colour: str
    score: float
    two_row: bool = False


def _clamp_box(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1, x2, y2 = (round(v) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def find_plate_candidates(
    image_bgr: np.ndarray, vehicle_box: Box, *, max_candidates: int = 3
) -> list[PlateCandidate]:
    """Patches of plate colour inside `vehicle_box` ((x1, y1, x2, y2) pixels of `image_bgr`, an HxWx3
    BGR uint8 array) shaped like a plate, best first, at most `max_candidates`.

    Nothing outside the vehicle box is looked at, and every box returned lies inside it. A patch's score
    is its fill (the share of its box in the colour) times how close its aspect ratio is to a plate's,
    doubled in the lower half of the box (where plates are mounted); a patch flatter than a plate (the
    pale top of a new-energy plate's gradient does not pass the green mask) is grown vertically to a
    plate's proportions about its middle. Colour alone cannot part a blue plate from blue paint it
    touches: such a plate is found only when its white border parts them.
    """
    h_img, w_img = image_bgr.shape[:2]
    clamped = _clamp_box(vehicle_box, w_img, h_img)
    if clamped is None:
        return []
    vx1, vy1, vx2, vy2 = clamped
    vehicle = image_bgr[vy1:vy2, vx1:vx2]
    vw, vh = vx2 - vx1, vy2 - vy1
    if vw < MIN_PLATE_WIDTH_PX:
        return []
    hsv = cv2.cvtColor(vehicle, cv2.COLOR_BGR2HSV)
    kernel = np.ones((3, 3), np.uint8)  # smooths speckle; wider would join a plate to same-coloured paint
    candidates: list[PlateCandidate] = []
    for colour, (lower, upper) in PLATE_COLOURS.items():
        mask = cv2.inRange(hsv, np.array(lower, np.uint8), np.array(upper, np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        # RETR_LIST: a blue plate on blue paint is an island inside the paint's hole (its white border).
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w < MIN_PLATE_WIDTH_PX or w > MAX_WIDTH_SHARE * vw or h < 8:
                continue
            aspect = w / h
            two_row = colour == "yellow" and TWO_ROW_ASPECTS[0] <= aspect < TWO_ROW_ASPECTS[1]
            if not (two_row or MIN_ASPECT <= aspect <= MAX_ASPECT):
                continue
            fill = cv2.countNonZero(mask[y : y + h, x : x + w]) / float(w * h)
            if fill < MIN_FILL:
                continue
            target = TWO_ROW_TARGET if two_row else TARGET_ASPECT
            score = fill * min(aspect, target) / max(aspect, target)
            if y + h / 2 >= vh / 2:
                score *= 2.0
            if aspect > TARGET_ASPECT * 1.25:
                grown = min(round(w / TARGET_ASPECT), vh)
                y, h = max(0, min(y - (grown - h) // 2, vh - grown)), grown
            box = (vx1 + x, vy1 + y, vx1 + x + w, vy1 + y + h)
            candidates.append(PlateCandidate(box, colour, score, two_row=two_row))
    candidates.sort(key=lambda c: c.score, reverse=True)
    kept: list[PlateCandidate] = []
    for candidate in candidates:  # a plate's outline and its hole in the paint give the same box twice
        if all(_iou(candidate.box, other.box) < 0.5 for other in kept):
            kept.append(candidate)
    return kept[:max_candidates]


def _colour_fits(colour: str, plate: Plate) -> bool:
    """Blue plates are standard, green ones new-energy; yellow are either (large vehicles' standard
    plates, and the yellow-green new-energy plates of large vehicles)."""
    if colour == "blue":
        return not plate.new_energy
    if colour == "green":
        return plate.new_energy
    return True


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def plate_crop(image_bgr: np.ndarray, candidate: PlateCandidate, *, margin: float = 0.08) -> np.ndarray:
    """The candidate's patch with a margin (`margin` of its width each side, 2.5 times that share of its
    height above and below), clamped to the image, upscaled (bicubic) to at least OCR_HEIGHT_PX tall."""
    x1, y1, x2, y2 = candidate.box
    mx, my = round(margin * (x2 - x1)), round(2.5 * margin * (y2 - y1))
    h_img, w_img = image_bgr.shape[:2]
    crop = image_bgr[max(0, y1 - my) : min(h_img, y2 + my), max(0, x1 - mx) : min(w_img, x2 + mx)]
    if crop.shape[0] < OCR_HEIGHT_PX:
        factor = OCR_HEIGHT_PX / crop.shape[0]
        crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(crop)


class PlateReader:
    """Reads plates with RapidOCR's PP-OCRv4 recogniser, loaded on first use (under a second) and kept.

    A reading's confidence is its least sure character's probability (the mean the OCR reports hides
    one wrong character among seven), and readings under `min_confidence` are dropped. 0.65 was chosen
    on one set of rendered plates (benchmarks/plates.py --seed 12: each wrong reading that fit the
    format, mostly a misread province character, had a character under 0.6); on a fresh set (seed 7)
    4 of 160 plates still read wrong against 112 right: it makes wrong plates rarer, not impossible,
    and read_many's vote over frames is the next guard. The colour must agree with
    the kind: a blue patch reads as a standard plate, a green one as a new-energy plate (a new-energy
    reading cut short to seven characters otherwise passes as a standard plate).

    Thread-safe: one OCR runs at a time (an ONNX Runtime session already uses the machine's cores).
    `threads` caps ONNX Runtime's intra-op threads (None: its default, all cores).
    """

    def __init__(
        self, *, max_candidates: int = 3, min_confidence: float = 0.65, threads: int | None = None
    ) -> None:
        self.max_candidates = max_candidates
        self.min_confidence = min_confidence
        self.threads = threads
        self._ocr: Any = None
        self._lock = threading.Lock()

    def _recogniser(self) -> Any:
        """rapidocr_onnxruntime 1.4's TextRecognizer (RapidOCR.text_rec), called directly: RapidOCR's own
        call returns only the mean confidence, the recogniser each character's."""
        if self._ocr is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:  # its wheel supports Python up to 3.12 (pyproject's marker)
                raise SetupError(
                    "plate reading needs rapidocr-onnxruntime (pip install 'rapidocr-onnxruntime>=1.4.4,<2'; "
                    "Python 3.12 or older)"
                ) from None

            started = time.perf_counter()
            options: dict[str, Any] = {"use_det": False, "use_cls": False, "print_verbose": False}
            if self.threads is not None:
                options["intra_op_num_threads"] = self.threads
            self._ocr = RapidOCR(**options)
            log.info("plate OCR loaded in %.2f s", time.perf_counter() - started)
        return self._ocr.text_rec

    def recognise(self, crop_bgr: np.ndarray) -> tuple[str, float] | None:
        """The OCR's one-line reading of a crop (BGR uint8) and its least sure character's probability
        (0..1; separators such as the plate's dot not counted), None when it reads nothing."""
        with self._lock:
            results, _ = self._recogniser()(crop_bgr, return_word_box=True)
        text, _mean, details = results[0]
        char_confidences = [c for char, c in zip(text, details[-1], strict=False) if char.isalnum()]
        if not char_confidences:
            return None
        return str(text), float(min(char_confidences))

    def _recognise_rows(self, crop_bgr: np.ndarray) -> tuple[str, float] | None:
        """A two-row plate's reading: each row read as a line, top then bottom, the less sure row's
        confidence."""
        height = crop_bgr.shape[0]
        top = self.recognise(crop_bgr[: round(TWO_ROW_SPLIT[0] * height)])
        bottom = self.recognise(crop_bgr[round(TWO_ROW_SPLIT[1] * height) :])
        if top is None or bottom is None:
            return None
        return top[0] + bottom[0], min(top[1], bottom[1])

    def read(self, image_bgr: np.ndarray, vehicle_box: Box) -> Plate | None:
        """The plate on the vehicle in `vehicle_box` ((x1, y1, x2, y2) pixels of `image_bgr`, HxWx3 BGR
        uint8), or None when no candidate's reading fits the national format surely enough. Of several
        plates read (a vehicle behind in the box), the most confident; the candidates are read best
        first and the reading stops at one of SURE_CONFIDENCE."""
        best: Plate | None = None
        for candidate in find_plate_candidates(image_bgr, vehicle_box, max_candidates=self.max_candidates):
            plate = self._read_candidate(image_bgr, candidate)
            if plate is not None and (best is None or plate.confidence > best.confidence):
                best = plate
            if best is not None and best.confidence >= SURE_CONFIDENCE:
                break  # the candidates left are less plate-like; reading them costs more than it can add
        return best

    def _read_candidate(self, image_bgr: np.ndarray, candidate: PlateCandidate) -> Plate | None:
        # With a margin first (a patch found a little small keeps its edge characters); when that reading
        # is no plate, the patch alone (the margin's paint or frame can read as an extra character).
        for margin in CROP_MARGINS:
            crop = plate_crop(image_bgr, candidate, margin=margin)
            reading = self._recognise_rows(crop) if candidate.two_row else self.recognise(crop)
            plate = read_plate(*reading) if reading is not None else None
            if plate is not None and not _colour_fits(candidate.colour, plate):
                verdict = f"{plate.text}: wrong kind for a {candidate.colour} plate"
                plate = None
            elif plate is not None and plate.confidence < self.min_confidence:
                verdict = f"{plate.text}: unsure ({plate.confidence:.2f} < {self.min_confidence})"
                plate = None
            else:
                verdict = plate.text if plate else "not a plate"
            log.debug(
                "plate candidate %s %s margin %.2f read %r: %s",
                candidate.colour,
                candidate.box,
                margin,
                reading,
                verdict,
            )
            if plate is not None:
                return plate
        return None

    def read_many(self, views: Iterable[tuple[np.ndarray, Box]]) -> Plate | None:
        """The plate of one vehicle seen in several frames: `views` are (image, vehicle box) pairs.

        Each frame votes with its reading's confidence; the text with the most votes in total wins (a
        plate read in three frames beats one confident misreading), and comes back with its best
        reading's confidence. None when no frame gave a plate.
        """
        votes: dict[str, float] = {}
        best: dict[str, Plate] = {}
        for image, box in views:
            plate = self.read(image, box)
            if plate is None:
                continue
            votes[plate.text] = votes.get(plate.text, 0.0) + plate.confidence
            if plate.text not in best or plate.confidence > best[plate.text].confidence:
                best[plate.text] = plate
        if not votes:
            return None
        winner = max(votes, key=lambda text: votes[text])
        if len(votes) > 1:
            log.info("plate readings disagree %s: keeping %s", sorted(votes), winner)
        return best[winner]
