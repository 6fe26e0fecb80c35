"""The plate reader: finding the plate inside a vehicle's box, then the real OCR on the crop.

The plates are RENDERED here (Pillow, Debian's Noto Sans CJK: tests/detect/plate_fixtures.py) and pasted on
real photos: ultralytics' bus.jpg (a Madrid bus; its own plate is hidden and is not Chinese) and, when
`gridpatrol dataset samples` has fetched it, OpenCV's photo of a car's rear, over its real plate. The OCR is
REAL: RapidOCR's PP-OCRv4 recogniser from the rapidocr-onnxruntime wheel, no mock. A rendered plate is
cleaner than a photographed one, so these tests prove the crop finding, the wiring and the format filter,
not accuracy on the street (benchmarks/plates.py measures what real pixels there are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detect.plate_reader import PlateReader, find_plate_candidates
from detect.values import Box
from tests.detect.plate_fixtures import (
    bus_jpg,
    cjk_font,
    paste,
    read_image,
    render_plate,
    render_two_row_plate,
)

REPO = Path(__file__).resolve().parents[2]
CAR_REAR = REPO / "build" / "street-samples" / "car-rear-motion-blur.jpg"
# The bus in bus.jpg (810 x 1080), by eye: (x1, y1, x2, y2) pixels (the shipped model's box for it is
# about (16, 226, 806, 752)). Its lower half is blue paint, white
# lettering ("cero emisiones") and a grey skirt.
BUS = (0, 230, 805, 740)
ON_THE_SKIRT = (520, 648)  # a 150 px plate's top-left on the bus's grey skirt (lower half of BUS)
ON_THE_PAVEMENT = (450, 790)  # below the bus, outside BUS
CAR = (0, 30, 600, 440)  # the car in car-rear-motion-blur.jpg (600 x 482); its plate is at about (230, 228)

FONT = cjk_font()
needs_font = pytest.mark.skipif(FONT is None, reason="no Noto Sans CJK font (Debian: fonts-noto-cjk)")


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return read_image(bus_jpg())


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader()


def plate(text: str, width_px: int = 150) -> np.ndarray:
    assert FONT is not None
    return render_plate(text, font=FONT, width_px=width_px)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


# --- finding the crop (no OCR) --------------------------------------------------------------------------


@needs_font
@pytest.mark.parametrize(
    ("text", "width_px", "top_left", "colour"),
    [("浙A12345", 150, ON_THE_SKIRT, "blue"), ("沪AD12345", 160, (560, 560), "green")],
)
def test_the_best_candidate_is_the_plate(
    bus: np.ndarray, text: str, width_px: int, top_left: tuple[int, int], colour: str
) -> None:
    patch = plate(text, width_px)
    image = paste(bus, patch, top_left)
    truth = (top_left[0], top_left[1], top_left[0] + patch.shape[1], top_left[1] + patch.shape[0])
    best = find_plate_candidates(image, BUS)[0]
    assert best.colour == colour
    assert _iou(best.box, truth) > 0.8, (best, truth)


@needs_font
def test_candidates_lie_inside_the_vehicle_box(bus: np.ndarray) -> None:
    image = paste(bus, plate("浙A12345"), ON_THE_PAVEMENT)
    for candidate in find_plate_candidates(image, BUS):
        x1, y1, x2, y2 = candidate.box
        assert BUS[0] <= x1 < x2 <= BUS[2] and BUS[1] <= y1 < y2 <= BUS[3], candidate


@pytest.mark.parametrize(
    "box", [(0, 0, 0, 0), (900, 100, 1000, 200), (10, 10, 30, 400), (50.7, -20, 10, 500)]
)
def test_an_empty_or_outside_box_has_no_candidates(bus: np.ndarray, box: Box) -> None:
    """Empty, outside the image, narrower than a legible plate, or inverted."""
    assert find_plate_candidates(bus, box) == []


# --- reading (the real OCR) -----------------------------------------------------------------------------


@pytest.mark.slow
@needs_font
def test_reads_a_blue_plate_on_the_bus(bus: np.ndarray, reader: PlateReader) -> None:
    read = reader.read(paste(bus, plate("浙A12345"), ON_THE_SKIRT), BUS)
    assert read is not None
    assert (read.text, read.new_energy) == ("浙A12345", False)
    assert 0.5 < read.confidence <= 1.0


@pytest.mark.slow
@needs_font
def test_reads_a_green_new_energy_plate_on_the_bus(bus: np.ndarray, reader: PlateReader) -> None:
    read = reader.read(paste(bus, plate("沪AD12345", 160), (560, 560)), BUS)
    assert read is not None
    assert (read.text, read.new_energy) == ("沪AD12345", True)


@pytest.mark.slow
@needs_font
def test_reads_a_yellow_two_row_plate_row_by_row(bus: np.ndarray, reader: PlateReader) -> None:
    """A large vehicle's rear plate: 京A above, 12345 below; read as one line it is no plate."""
    assert FONT is not None
    image = paste(bus, render_two_row_plate("京A12345", font=FONT, width_px=120), (560, 540))
    best = find_plate_candidates(image, BUS)[0]
    assert (best.colour, best.two_row) == ("yellow", True)
    read = reader.read(image, BUS)
    assert read is not None
    assert (read.text, read.new_energy) == ("京A12345", False)


@pytest.mark.slow
def test_the_bus_itself_has_no_chinese_plate(bus: np.ndarray, reader: PlateReader) -> None:
    """Blue paint and white lettering make candidates; none reads as a plate."""
    assert find_plate_candidates(bus, BUS), "expected the blue paint to give candidates to reject"
    assert reader.read(bus, BUS) is None


@pytest.mark.slow
@needs_font
def test_a_plate_outside_the_vehicle_box_is_not_read(bus: np.ndarray, reader: PlateReader) -> None:
    image = paste(bus, plate("浙A12345"), ON_THE_PAVEMENT)
    assert reader.read(image, BUS) is None
    around_it = (380, 600, 700, 900)  # the same pixels are readable when a box holds them
    read = reader.read(image, around_it)
    assert read is not None and read.text == "浙A12345"


@pytest.mark.slow
@needs_font
def test_several_frames_vote(bus: np.ndarray, reader: PlateReader) -> None:
    """Two frames read 浙A12345, one reads nothing, one another plate: the plate read twice wins."""
    first = paste(bus, plate("浙A12345"), ON_THE_SKIRT)
    second = paste(bus, plate("浙A12345", 140), (530, 650))
    other = paste(bus, plate("浙B67890"), ON_THE_SKIRT)
    read = reader.read_many([(other, BUS), (first, BUS), (bus, BUS), (second, BUS)])
    assert read is not None and read.text == "浙A12345"
    assert reader.read_many([(bus, BUS)]) is None


@pytest.mark.slow
@needs_font
@pytest.mark.skipif(not CAR_REAR.exists(), reason="street samples not fetched: gridpatrol dataset samples")
def test_reads_a_plate_over_a_real_cars_plate() -> None:
    """OpenCV's motion-blurred photo of a car's rear: its own (non-Chinese, blurred) plate reads as
    nothing; a rendered Chinese plate pasted over it is read."""
    car = read_image(CAR_REAR)
    reader = PlateReader()
    assert reader.read(car, CAR) is None
    read = reader.read(paste(car, plate("粤B8K3L2", 120), (228, 228)), CAR)
    assert read is not None and read.text == "粤B8K3L2"
