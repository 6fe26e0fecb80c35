"""The README's main job: `gridpatrol demo` on the embedded default, in a fresh data folder (slow)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def demo(data_dir: Path) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRIDPATROL_") or k == "GRIDPATROL_MODEL_CACHE"
    }
    env["GRIDPATROL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "demo"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )


def test_demo_makes_a_parking_and_a_garbage_case_and_is_idempotent(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "job 1 (patrol vehicle dashcam): done" in first.stdout  # moving traffic: no case
    assert "job 2 (fixed camera at a garbage collection point): done" in first.stdout
    assert "job 3 (fixed camera over a lane): done" in first.stdout
    assert "2 case(s)" in first.stdout
    cases = [line.split() for line in first.stdout.splitlines() if line.strip().startswith("GP-")]
    assert sorted((c[1], c[c.index("camera") + 1]) for c in cases) == [
        ("illegal_parking", "demo-cam-01"),  # the red car in the collection point's access lane
        ("piled_debris", "demo-cam-02"),  # the garbage on the lane's pavement
    ]
    assert (tmp_path / "gridpatrol.db").exists()
    assert oct((tmp_path / "demo-credentials.json").stat().st_mode & 0o777) == "0o600"

    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already uploaded" in again.stdout and "2 case(s)" in again.stdout


def test_the_parking_photo_is_the_first_val_photo_with_a_large_sure_car(shared_dir):
    """The demo's parking photo follows its stated rule (COCO base at 640: a car >= 0.7 over >= 10%)."""
    import cv2

    from api.cli.demo import PARKING_PHOTO
    from detect.yolo import YoloDetector

    coco = YoloDetector(shared_dir / "weights" / "yolo26n-coco.pt", imgsz=640, conf=0.7, backend="pytorch")
    for photo in sorted((shared_dir / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg")):
        image = cv2.imread(str(photo))
        area = image.shape[0] * image.shape[1]
        cars = [d for d in coco.detect(image) if d.class_name == "car"]
        if any((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) >= 0.1 * area for d in cars):
            break
    assert photo.name == PARKING_PHOTO
