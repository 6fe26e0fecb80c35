"""The shipped weights (models/gridpatrol-n.pt) load offline and find what the rules need."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.evaluation import box_iou, read_labels
from detect.yolo import YoloDetector

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "gridpatrol-n.pt"
IMGSZ = 416
CLASSES = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "umbrella",
    "chair",
    "dining table",
    "garbage",
    "garbage_bin",
    "overflow",
]
# A cn-garbage val photo with one large labelled pile of exposed garbage.
GARBAGE_PHOTO = "000562_jpg.rf.9f41493c8f3a4a67c0c0afa5e591992f.jpg"

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no shipped weights at {SHIPPED}")


@pytest.fixture(scope="module")
def detector() -> YoloDetector:
    return YoloDetector(SHIPPED, imgsz=IMGSZ, conf=0.25)


def test_shipped_weights_are_small_and_name_our_classes(detector: YoloDetector) -> None:
    assert SHIPPED.stat().st_size < 20 * 1024 * 1024
    assert [detector.names[i] for i in sorted(detector.names)] == CLASSES


@pytest.mark.slow
def test_finds_the_bus_and_people_on_bus_jpg(detector: YoloDetector) -> None:
    from ultralytics.utils import ASSETS

    found = detector.detect(cv2.imread(str(Path(ASSETS) / "bus.jpg")))
    names = [d.class_name for d in found]
    assert "bus" in names
    assert names.count("person") >= 3


@pytest.mark.slow
def test_finds_garbage_in_a_val_photo(detector: YoloDetector, shared_dir: Path) -> None:
    photo = shared_dir / "datasets" / "cn-garbage" / "images" / "val" / GARBAGE_PHOTO
    image = cv2.imread(str(photo))
    height, width = image.shape[:2]
    labels = read_labels(photo, width, height)
    piles = labels.xyxy[labels.cls == 0]  # cn-garbage class 0: garbage
    assert len(piles) == 1
    garbage = [d for d in detector.detect(image) if d.class_name == "garbage"]
    assert garbage, "no garbage found"
    assert box_iou(piles, np.array([d.box for d in garbage])).max() >= 0.5
