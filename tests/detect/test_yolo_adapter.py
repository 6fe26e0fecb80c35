"""The detector adapter loads weights from paths, fully offline, and speaks our values (slow)."""

import socket
from pathlib import Path

import cv2
import pytest

from detect.yolo import ModelError, ObjectTracker, YoloDetector, import_ultralytics

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
KINDS = {"bus": "bus", "person": "person", "car": "car"}


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every connection to a non-loopback address during the test."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")):
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: guarded(None, address))
    return attempts


def bus_image():
    import_ultralytics()
    from ultralytics.utils import ASSETS

    return cv2.imread(str(Path(ASSETS) / "bus.jpg"))


@pytest.mark.parametrize(
    ("weights", "imgsz"),
    [("yolo26n-coco.pt", 640), ("yolo26n-coco-int8.onnx", 640), ("yolo11n-coco-int8.onnx", 320)],
)
def test_finds_bus_and_people_offline(no_network, weights, imgsz):
    detector = YoloDetector(SHARED / "weights" / weights, kinds=KINDS, imgsz=imgsz)
    dets = detector.detect(bus_image())
    kinds = [d.kind for d in dets]
    assert "bus" in kinds and kinds.count("person") >= 3
    bus = next(d for d in dets if d.kind == "bus")
    assert bus.score > 0.6 and bus.box[2] - bus.box[0] > 600
    assert all(d.kind in KINDS.values() for d in dets)  # classes the config does not map are dropped
    assert no_network == []


def test_tracker_keeps_ids_on_a_still_scene():
    detector = YoloDetector(SHARED / "weights" / "yolo26n-coco.pt", kinds=KINDS)
    image = bus_image()
    dets = detector.detect(image)
    tracker = ObjectTracker("bytetrack")
    ids = [sorted(d.track_id for d in tracker.update(dets, image)) for _ in range(3)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == len(dets)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.pt", None, "not found"),
        ("model.txt", b"hello", "unsupported model format"),
        ("broken.pt", b"not a checkpoint", "cannot load model weights"),
        ("broken.onnx", b"not an onnx file", "cannot load model weights"),
    ],
)
def test_bad_weights_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as err:
        YoloDetector(path)
    assert str(path) in str(err.value)
