"""Exported backends (ONNX Runtime, OpenVINO) find the same boxes as PyTorch on bus.jpg."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.backends import ExportError, resolve_backend
from detect.model.evaluation import box_iou
from detect.model.export import export_model
from detect.yolo import SHIPPED_IMGSZ as IMGSZ
from detect.yolo import SHIPPED_WEIGHTS as SHIPPED


@pytest.fixture(scope="module")
def weights(shared_dir: Path) -> Path:
    """The shipped model when it exists, the COCO base otherwise (same architecture and exporter)."""
    return SHIPPED if SHIPPED.is_file() else shared_dir / "weights" / "yolo26n-coco.pt"


def _boxes(path: Path, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from detect.yolo import load_yolo

    boxes = load_yolo(path).predict([image], imgsz=IMGSZ, conf=0.25, iou=0.7)[0]
    return boxes.xyxy, boxes.cls, boxes.scores


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_gives_the_same_boxes(fmt: str, weights: Path, tmp_path: Path) -> None:
    from detect.backends import import_ultralytics

    import_ultralytics()
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ASSETS

    # Square-padded beforehand: PyTorch would otherwise pad bus.jpg minimally while the fixed-size
    # exports see a square, and the padding alone moves scores by up to 0.2. Same input, same boxes.
    bus = LetterBox((IMGSZ, IMGSZ), auto=False)(image=cv2.imread(str(Path(ASSETS) / "bus.jpg")))
    model = tmp_path / "model.pt"
    model.write_bytes(weights.read_bytes())  # ultralytics writes exports beside the model
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model_openvino_model")
    exported = export_model(model, fmt, imgsz=IMGSZ, out=out)
    assert exported == out and out.exists()

    ref_xyxy, ref_cls, ref_conf = _boxes(model, bus)
    xyxy, cls, conf = _boxes(exported, bus)
    assert len(ref_cls) >= 3, "the reference model should see the bus and people"
    iou = box_iou(ref_xyxy, xyxy) * (ref_cls[:, None] == cls[None, :])
    # Every PyTorch box has its twin: same class, IoU >= 0.95, score within 0.03 ...
    for i in range(len(ref_cls)):
        j = int(iou[i].argmax())
        assert iou[i, j] >= 0.95, (i, ref_cls[i], iou[i])
        assert abs(float(conf[j]) - float(ref_conf[i])) <= 0.03
    # ... and the export adds nothing confident that PyTorch does not see.
    assert int((conf >= 0.35).sum()) <= len(ref_cls)


def test_export_refuses_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(tmp_path / "x.pt", "tflite")
    with pytest.raises(ExportError, match="existing .pt"):
        export_model(tmp_path / "missing.pt", "onnx")
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(ExportError, match="_openvino_model"):
        export_model(tmp_path / "m.pt", "openvino", out=tmp_path / "ov")


@pytest.mark.slow
def test_auto_backend_exports_once_per_weights_and_size(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detect import backends

    monkeypatch.setenv("GRIDPATROL_MODEL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "site.pt"
    model.write_bytes(weights.read_bytes())

    path, backend = resolve_backend(model, "auto", device="cpu", imgsz=IMGSZ)
    assert backend == "openvino"
    assert path.parent == tmp_path / "cache" and path.name.endswith(f"-{IMGSZ}-dynamic_openvino_model")
    assert any(path.glob("*.xml")) and (path / "metadata.yaml").is_file()
    assert not list((tmp_path / "cache").glob(".tmp-*")), "no temporary export left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "site.pt"], "nothing beside the model"

    calls: list[object] = []
    monkeypatch.setattr(backends, "export_yolo", lambda *a, **k: calls.append(a))
    assert resolve_backend(model, "auto", device="cpu", imgsz=IMGSZ) == (path, "openvino")
    assert calls == [], "a cached export is reused, not made again"
    monkeypatch.undo()
    monkeypatch.setenv("GRIDPATROL_MODEL_CACHE", str(tmp_path / "cache"))

    # Other weights under the same name never load the stale export.
    model.write_bytes(weights.read_bytes() + b"\0")
    changed, _ = resolve_backend(model, "openvino", device="cpu", imgsz=IMGSZ)
    assert changed != path


def test_backend_choice_without_export(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPATROL_MODEL_CACHE", str(tmp_path / "cache"))
    assert resolve_backend(weights, "pytorch", device="cpu") == (weights, "pytorch")
    assert resolve_backend(weights, "auto", device="cuda:0") == (weights, "pytorch")
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    assert resolve_backend(folder, "auto") == (folder, "openvino")
    assert resolve_backend(tmp_path / "m.onnx", "auto") == (tmp_path / "m.onnx", "onnx")
    with pytest.raises(ExportError, match="unknown model backend 'tensorrt'"):
        resolve_backend(weights, "tensorrt")


def test_a_failed_automatic_export_falls_back_to_pytorch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GRIDPATROL_MODEL_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING"):
        assert resolve_backend(broken, "auto", device="cpu") == (broken, "pytorch")
    assert "running on PyTorch" in caplog.text
    with pytest.raises(ExportError, match="openvino backend not available"):
        resolve_backend(broken, "openvino", device="cpu")


@pytest.mark.slow
def test_auto_backend_sees_what_pytorch_sees_on_a_wide_frame(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    """The default CPU backend (a dynamic-shape OpenVINO export) on real 16:9 dashcam frames: the
    boxes of PyTorch, unpadded. OpenVINO runs in bfloat16 on CPUs that have it (this one does:
    avx512_bf16), so scores move more than with the float32 exports above: up to ~0.05 here;
    mAP50 on cn-garbage val is unchanged (benchmarks/model.py)."""
    from detect.yolo import YoloDetector

    monkeypatch.setenv("GRIDPATROL_MODEL_CACHE", str(tmp_path / "cache"))
    reference = YoloDetector(weights, imgsz=IMGSZ, backend="pytorch")
    default = YoloDetector(weights, imgsz=IMGSZ, backend="auto")
    assert (reference.backend, default.backend) == ("pytorch", "openvino")
    capture = cv2.VideoCapture(str(shared_dir / "footage" / "highway-dashcam-1.mp4"))
    checked = 0
    for index in range(0, 400, 40):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        ref = [d for d in reference.detect(frame) if d.score >= 0.35]
        got = default.detect(frame)
        for d in ref:
            twins = [g for g in got if g.class_name == d.class_name]
            ious = box_iou(np.array([d.box]), np.array([g.box for g in twins])) if twins else np.zeros((1, 0))
            assert ious.size and ious.max() >= 0.9, (index, d)
            best = twins[int(ious.argmax())]
            assert abs(best.score - d.score) <= 0.08, (index, d, best)
            checked += 1
    capture.release()
    assert checked >= 10, "the clip's frames should hold cars to compare"
