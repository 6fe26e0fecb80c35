"""The shipped weights (models/gridpatrol-n.pt) load offline and find what the rules need."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.model.evaluation import box_iou, read_labels
from detect.yolo import SHIPPED_IMGSZ as IMGSZ
from detect.yolo import SHIPPED_WEIGHTS as SHIPPED
from detect.yolo import YoloDetector

REPO = Path(__file__).resolve().parents[2]
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


def _bus_jpg(detector: YoloDetector) -> list:
    from ultralytics.utils import ASSETS

    return detector.detect(cv2.imread(str(Path(ASSETS) / "bus.jpg")))


@pytest.mark.slow
def test_finds_the_bus_and_people_on_bus_jpg(detector: YoloDetector) -> None:
    names = [d.class_name for d in _bus_jpg(detector)]
    assert "bus" in names
    assert names.count("person") >= 3


@pytest.mark.slow
def test_finds_people_and_a_large_vehicle_on_bus_jpg(detector: YoloDetector) -> None:
    """The floor any shipped weights must clear: two sure people and a bus or truck over the bus."""
    found = _bus_jpg(detector)
    assert sum(1 for d in found if d.class_name == "person" and d.score >= 0.5) >= 2
    bus_box = np.array([[13.0, 226.0, 800.0, 770.0]])  # the bus in bus.jpg (810 x 1080), by hand
    vehicles = [d.box for d in found if d.class_name in {"bus", "truck"}]
    assert vehicles and box_iou(bus_box, np.array(vehicles)).max() >= 0.8


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


@pytest.mark.slow
def test_the_default_config_on_real_dashcam_footage(shared_dir: Path, tmp_path: Path) -> None:
    """configs/site.yaml as it ships (its model, size and CPU backend) on the real highway clip: it sees
    the traffic, and a no-parking zone over the moving lanes gives no incident."""
    from detect.config import load_config, parse_config
    from detect.pipeline import build_detector, detect_footage

    base = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    base["categories"]["illegal_parking"]["min_dwell_s"] = 5.0
    base["cameras"] = [
        {
            "id": "patrol-01",
            "zones": [
                {
                    "id": "lanes",
                    "kind": "no_parking",
                    "points_norm": [[0.05, 0.45], [0.95, 0.45], [0.95, 1.0], [0.05, 1.0]],
                }
            ],
        }
    ]
    config = parse_config(base, base_dir=REPO / "configs")
    detector = build_detector(config)
    clip = shared_dir / "footage" / "highway-dashcam-1.mp4"
    capture = cv2.VideoCapture(str(clip))
    vehicles = []
    for index in range(0, 400, 50):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        vehicles.append(sum(1 for d in detector.detect(frame) if d.kind in {"car", "truck", "bus"}))
    capture.release()
    assert sorted(vehicles)[len(vehicles) // 2] >= 2, vehicles  # the clip shows several cars in most frames
    assert list(detect_footage(clip, config, out_dir=tmp_path, detector=detector)) == []


def test_the_weights_speed_benchmark_runs_from_the_repository(shared_dir: Path, tmp_path: Path) -> None:
    """benchmarks/weights_speed.py times two weights in turn on the shared clip's frames and prints
    each one's frames per second and their ratio (the model card's speed check of a weight soup)."""
    import shutil
    import subprocess
    import sys

    other = tmp_path / "other-weights.pt"
    shutil.copyfile(SHIPPED, other)
    args = ["--against", str(other), "--backends", "pytorch", "--frames", "2", "--rounds", "1"]
    run = subprocess.run(
        [sys.executable, "benchmarks/weights_speed.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (line,) = [row for row in run.stdout.splitlines() if row.startswith("pytorch")]
    a_fps, b_fps, ratio = (float(x) for x in line.split()[1:])
    assert a_fps > 0 and b_fps > 0 and ratio == pytest.approx(b_fps / a_fps, rel=0.06)
    same = subprocess.run(
        [sys.executable, "benchmarks/weights_speed.py", "--against", str(SHIPPED), "--backends", "onnx"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert same.returncode == 2 and "share a file name" in same.stderr
