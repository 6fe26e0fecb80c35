"""The detector adapter loads weights from paths, fully offline, and speaks our values."""

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.backends import import_ultralytics
from detect.yolo import Boxes, ModelError, ObjectTracker, YoloDetector, load_yolo, to_boxes, to_detections

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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize(("weights", "imgsz"), [("yolo11n-coco-int8.onnx", 320), ("yolo26n-coco.pt", 640)])
def test_a_model_is_loaded_once(monkeypatch, weights, imgsz):
    """The detector's names and its predictions come from one backend: an export is not loaded (an
    OpenVINO one compiled) again by the first prediction."""
    import_ultralytics()
    from ultralytics.nn.autobackend import AutoBackend

    loads = []
    real_init = AutoBackend.__init__

    def counted(self, *args, **kwargs):
        loads.append(kwargs.get("model"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(AutoBackend, "__init__", counted)
    detector = YoloDetector(SHARED / "weights" / weights, kinds=KINDS, imgsz=imgsz, backend="pytorch")
    first = detector.detect(bus_image())
    assert detector.detect(bus_image()) == first
    assert len(loads) == 1


@pytest.mark.slow
def test_tracker_keeps_ids_on_a_still_scene():
    detector = YoloDetector(SHARED / "weights" / "yolo26n-coco.pt", kinds=KINDS)
    image = bus_image()
    dets = detector.detect(image)
    tracker = ObjectTracker("bytetrack")
    ids = [sorted(d.track_id for d in tracker.update(dets, image)) for _ in range(3)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == len(dets)


@pytest.mark.slow
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
    with pytest.raises(ModelError, match=message):
        load_yolo(path)


def test_detections_of_boxes_keep_the_mapped_kinds_highest_score_first():
    boxes = Boxes(
        xyxy=np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0], [1.0, 2.0, 3.0, 4.0]]),
        scores=np.array([0.4, 0.9, 0.8]),
        cls=np.array([0, 2, 1]),
        image_hw=(40, 50),
    )
    names = {0: "car", 1: "dog", 2: "person"}
    assert [(d.class_name, d.kind, d.score) for d in to_detections(boxes, names)] == [
        ("person", "person", 0.9),
        ("dog", "dog", 0.8),
        ("car", "car", 0.4),
    ]
    kept = to_detections(boxes, names, {"car": "vehicle", "person": "person"})
    assert [(d.kind, d.box) for d in kept] == [
        ("person", (5.0, 5.0, 20.0, 30.0)),
        ("vehicle", (0.0, 0.0, 10.0, 10.0)),
    ]
    assert to_detections(Boxes.empty((40, 50)), names) == []
    # centre x, centre y, width, height over the image's width and height
    assert boxes.xywhn[1] == pytest.approx([12.5 / 50, 17.5 / 40, 15 / 50, 25 / 40])


@pytest.mark.slow
def test_boxes_are_the_models_results_converted_once():
    """Boxes carry ultralytics' own numbers: normalised boxes bit for bit (pseudo-labels are cached)."""
    model = load_yolo(SHARED / "weights" / "yolo26n-coco.pt")
    image = bus_image()
    result = model.model.predict(image, imgsz=640, conf=0.05, verbose=False)[0]
    boxes = to_boxes(result)
    assert len(boxes) == len(result.boxes) > 5 and boxes.image_hw == image.shape[:2]
    assert np.array_equal(boxes.xyxy, result.boxes.xyxy.numpy().astype(float))
    assert np.array_equal(boxes.xywhn, result.boxes.xywhn.numpy().astype(float))
    assert np.array_equal(boxes.cls, result.boxes.cls.numpy().astype(int))
    (again,) = model.predict([image], imgsz=640, conf=0.05, iou=0.7)
    assert np.array_equal(again.xyxy, boxes.xyxy) and np.array_equal(again.scores, boxes.scores)
