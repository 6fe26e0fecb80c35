"""Privacy blurring (detect.privacy) on real pixels: ultralytics' bus.jpg (a Madrid street: a bus and four
people), rendered Chinese plates pasted on it (tests/detect/plate_fixtures.py) and the real plate OCR.

The people's boxes are what the COCO model (../shared/weights/yolo11n-coco.pt) found on bus.jpg; the faces
are where OpenCV 4's frontal-face Haar cascade found them (the two people facing the camera). On OpenCV 5,
which ships no cascade, faces are blurred on the people's heads only: the cascade's own test is skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detect.evidence import DwellStrip, dwell_window, write_evidence
from detect.plate_reader import PlateReader
from detect.privacy import Blurred, blur_private, face_cascade, head_box, inside_share, plate_band
from detect.values import Box, Detection
from streams.frame import Frame
from tests.detect.plate_fixtures import bus_jpg, cjk_font, paste, read_image, render_plate

BUS: Box = (21.2, 231.9, 804.8, 734.0)  # the model's box for the bus
PEOPLE: tuple[Box, ...] = (
    (47.6, 400.1, 239.9, 904.6),
    (669.8, 391.4, 810.0, 879.3),
    (222.1, 406.9, 344.7, 859.3),
    (0.0, 557.7, 68.2, 870.8),  # cut off by the left edge, facing away
)
FACES = ((118, 420, 165, 467), (262, 422, 319, 479))  # x1, y1, x2, y2 pixels
SUBJECT_PLATE_AT = (520, 648)  # a 150 px plate's top-left on the bus's grey skirt (as test_plate_reader)
# a car parked below the bus, not involved (a box drawn on the pavement; its plate pasted in its lower half)
OTHER_CAR: Box = (380.0, 700.0, 760.0, 900.0)
OTHER_PLATE_AT = (450, 790)

FONT = cjk_font()
needs_font = pytest.mark.skipif(FONT is None, reason="no Noto Sans CJK font (Debian: fonts-noto-cjk)")
needs_cascade = pytest.mark.skipif(face_cascade() is None, reason="this OpenCV ships no Haar face cascade")


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return read_image(bus_jpg())


def people() -> list[Detection]:
    return [Detection(box, 0.9, "person", "person") for box in PEOPLE]


def detail(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The variance of the Laplacian of a region: what a face's or a character's edges leave."""
    x1, y1, x2, y2 = box
    gray = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def changed_mask(shape: tuple[int, ...], blurred: Blurred) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for region in blurred.regions:
        x1, y1, x2, y2 = region.box
        mask[y1:y2, x1:x2] = True
    return mask


def assert_faces_pixelated(before: np.ndarray, after: np.ndarray) -> None:
    for face in FACES:
        x1, y1, x2, y2 = face
        diff = np.abs(before[y1:y2, x1:x2].astype(int) - after[y1:y2, x1:x2].astype(int)).mean()
        assert diff > 10, (face, diff)
        assert detail(after, face) < 0.2 * detail(before, face), face


def test_faces_are_blurred_on_the_heads_of_detected_people(bus: np.ndarray) -> None:
    blurred = blur_private(bus, BUS, people(), cascade=False)
    assert sum(r.why == "head" for r in blurred.regions) == len(PEOPLE)
    assert_faces_pixelated(bus, blurred.image)
    for face in FACES:  # each face the cascade finds lies inside a head region
        assert max(inside_share(face, head_box(p)) for p in PEOPLE) == 1.0


def test_a_close_up_cut_off_at_the_waist_has_its_whole_face_blurred() -> None:
    """ultralytics' zidane.jpg (1280 x 720): two men seen from the chest up; the model's box of the one on the
    right, and his face where the cascade finds it, 32% of his box's height down (a head region of the top
    quarter alone would cut his chin off)."""
    image = read_image(bus_jpg().with_name("zidane.jpg"))
    person, face = (750.3, 40.9, 1149.5, 712.5), (916, 108, 1067, 259)
    blurred = blur_private(image, (0.0, 0.0, 100.0, 100.0), [Detection(person, 0.86, "person", "person")])
    heads = [r.box for r in blurred.regions if r.why == "head"]
    assert len(heads) == 1 and inside_share(face, heads[0]) == 1.0
    x1, y1, x2, y2 = face
    colours = np.unique(blurred.image[y1:y2, x1:x2].reshape(-1, 3), axis=0)
    assert len(colours) <= 9  # a mosaic of at most 3 x 3 cells over the face (cells of 79 px)


def test_the_subject_outside_faces_is_unchanged(bus: np.ndarray) -> None:
    blurred = blur_private(bus, BUS, people())
    x1, y1, x2, y2 = (round(v) for v in BUS)
    untouched = ~changed_mask(bus.shape, blurred)[y1:y2, x1:x2]
    assert untouched.mean() > 0.7  # four heads in front of the bus
    assert np.array_equal(bus[y1:y2, x1:x2][untouched], blurred.image[y1:y2, x1:x2][untouched])


def test_the_input_image_is_never_changed(bus: np.ndarray) -> None:
    before = bus.copy()
    blur_private(bus, BUS, people())
    blur_private(bus[200:800, 0:600], BUS, people(), origin=(0, 200))
    assert np.array_equal(bus, before)


@needs_cascade
def test_the_cascade_finds_faces_without_detections(bus: np.ndarray) -> None:
    blurred = blur_private(bus, BUS)
    faces = [r.box for r in blurred.regions if r.why == "face"]
    assert len(faces) == 2
    for face in FACES:
        assert any(inside_share(face, found) == 1.0 for found in faces)
    assert_faces_pixelated(bus, blurred.image)


def test_a_window_of_the_frame_is_blurred_where_the_frame_is(bus: np.ndarray) -> None:
    """A dwell strip's window: boxes stay in full-frame pixels, `origin` says where the window starts."""
    window = bus[300:900, 0:500]
    blurred = blur_private(window, BUS, people(), origin=(0, 300), cascade=False)
    whole = blur_private(bus, BUS, people(), cascade=False)
    assert np.array_equal(blurred.image[200:400, 100:300], whole.image[500:700, 100:300])


def test_nothing_to_blur_gives_the_image_itself(bus: np.ndarray) -> None:
    blurred = blur_private(bus[0:200, 0:200], BUS, [Detection(BUS, 0.9, "bus", "bus")], cascade=False)
    assert blurred.regions == ()
    assert blurred.image is not None and blurred.image.base is bus


def test_an_uninvolved_vehicle_without_a_plate_colour_has_its_plate_band_blurred(bus: np.ndarray) -> None:
    """No plate-coloured patch in its lower half: the lower-middle band, where plates sit, is blurred."""
    car = Detection(OTHER_CAR, 0.8, "car", "car")
    blurred = blur_private(bus, BUS, [car], cascade=False)
    bands = [r.box for r in blurred.regions if r.why == "plate_band"]
    assert len(bands) == 1
    assert inside_share(plate_band(OTHER_CAR), bands[0]) == 1.0


def test_the_subject_and_vehicles_mostly_inside_it_keep_their_plates(bus: np.ndarray) -> None:
    involved = [Detection(BUS, 0.9, "bus", "bus"), Detection((100, 300, 600, 700), 0.5, "truck", "truck")]
    assert blur_private(bus, BUS, involved, cascade=False).regions == ()


# --- plates, read back by the real OCR --------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader()


def two_plates(bus: np.ndarray) -> np.ndarray:
    assert FONT is not None
    image = paste(bus, render_plate("浙A12345", font=FONT, width_px=150), SUBJECT_PLATE_AT)
    return paste(image, render_plate("苏E67890", font=FONT, width_px=150), OTHER_PLATE_AT)


@pytest.mark.slow
@needs_font
def test_an_uninvolved_cars_plate_is_unreadable_and_the_subjects_reads(
    bus: np.ndarray, reader: PlateReader
) -> None:
    image = two_plates(bus)
    scene = [Detection(BUS, 0.9, "bus", "bus"), Detection(OTHER_CAR, 0.8, "car", "car"), *people()]
    other = reader.read(image, OTHER_CAR)
    assert other is not None and other.text == "苏E67890"  # readable before

    blurred = blur_private(image, BUS, scene)
    assert any(r.why == "plate" for r in blurred.regions)
    after = reader.read(blurred.image, OTHER_CAR)
    assert after is None or after.text != "苏E67890"
    around = (
        OTHER_PLATE_AT[0] - 70,
        OTHER_PLATE_AT[1] - 90,
        OTHER_PLATE_AT[0] + 250,
        OTHER_PLATE_AT[1] + 110,
    )
    wider = reader.read(blurred.image, around)  # however wide the box read
    assert wider is None or wider.text != "苏E67890"
    x, y = OTHER_PLATE_AT
    assert detail(blurred.image, (x, y, x + 150, y + 48)) < 0.1 * detail(image, (x, y, x + 150, y + 48))

    subject = reader.read(blurred.image, BUS)
    assert subject is not None and subject.text == "浙A12345"


@pytest.mark.slow
@needs_font
def test_an_uninvolved_vehicle_overlapping_the_subjects_plate_does_not_blur_it(
    bus: np.ndarray, reader: PlateReader
) -> None:
    """A vehicle box (a third of it on the bus) that holds the subject's plate: that plate is left alone."""
    image = two_plates(bus)
    overlapping = Detection((450.0, 600.0, 800.0, 1000.0), 0.6, "car", "car")
    assert inside_share(overlapping.box, BUS) < 0.5
    blurred = blur_private(image, BUS, [overlapping], cascade=False)
    subject = reader.read(blurred.image, BUS)
    assert subject is not None and subject.text == "浙A12345"


# --- the evidence files -----------------------------------------------------------------------------------


LABELS: dict[str, Any] = {"label": "illegal_parking", "ts": 1.0, "wall_time": None, "camera": "cam"}


def decoded(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None
    return image


def test_write_evidence_blurs_and_keeps_the_original(tmp_path: Path, bus: np.ndarray) -> None:
    files = write_evidence(tmp_path, "inc-1", bus, BUS, scene=people(), **LABELS)
    assert [f.role for f in files] == ["annotated", "crop", "raw", "original"]
    for f in files:
        assert hashlib.sha256((tmp_path / f.path).read_bytes()).hexdigest() == f.sha256
    by_role = {f.role: decoded(tmp_path / f.path) for f in files}
    for face in FACES:
        assert detail(by_role["raw"], face) < 0.2 * detail(by_role["original"], face)
        x1, y1, x2, y2 = face
        diff = np.abs(by_role["original"][y1:y2, x1:x2].astype(int) - bus[y1:y2, x1:x2].astype(int))
        assert diff.mean() < 4  # the original is the unblurred frame (up to JPEG)


def test_without_privacy_or_anything_to_blur_there_is_no_original(tmp_path: Path, bus: np.ndarray) -> None:
    plain = write_evidence(tmp_path, "inc-2", bus, BUS, scene=people(), privacy=False, **LABELS)
    assert [f.role for f in plain] == ["annotated", "crop", "raw"]
    raw = decoded(tmp_path / plain[2].path)
    assert detail(raw, FACES[0]) > 0.5 * detail(bus, FACES[0])
    empty = np.full((360, 640, 3), 90, np.uint8)
    files = write_evidence(tmp_path, "inc-3", empty, (100, 100, 300, 300), **LABELS)
    assert [f.role for f in files] == ["annotated", "crop", "raw"]


def test_the_dwell_strip_blurs_its_frames(bus: np.ndarray) -> None:
    subject = PEOPLE[2]
    window = dwell_window(subject, bus.shape[1], bus.shape[0])
    frame = Frame(image=bus, ts=0.0, source_id="cam", index=0)
    strips = {}
    for privacy in (True, False):
        strip = DwellStrip(window, 90, privacy=privacy)
        strip.observe(frame, subject, people())
        strips[privacy] = cv2.imdecode(np.frombuffer(strip.choose()[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    x0, y0, x1, y1 = window
    scale = strips[True].shape[1] / (x1 - x0)
    for fx1, fy1, fx2, fy2 in FACES:
        x, y = round((fx1 - x0) * scale), round((fy1 - y0) * scale)
        face = (x, y, x + round((fx2 - fx1) * scale), y + round((fy2 - fy1) * scale))
        assert detail(strips[True], face) < 0.2 * detail(strips[False], face)
    assert np.array_equal(frame.image, bus)
