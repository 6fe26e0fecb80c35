"""Exported backends (ONNX Runtime, OpenVINO) find the same boxes as PyTorch on bus.jpg."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.evaluation import box_iou
from detect.export import ExportError, export_model

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "gridpatrol-n.pt"
IMGSZ = 416


@pytest.fixture(scope="module")
def weights(shared_dir: Path) -> Path:
    """The shipped model when it exists, the COCO base otherwise (same architecture and exporter)."""
    return SHIPPED if SHIPPED.is_file() else shared_dir / "weights" / "yolo26n-coco.pt"


def _boxes(path: Path, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from detect.yolo import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    result = YOLO(str(path), task="detect").predict(image, imgsz=IMGSZ, conf=0.25, verbose=False)[0]
    b = result.boxes
    return b.xyxy.numpy(), b.cls.numpy().astype(int), b.conf.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_gives_the_same_boxes(fmt: str, weights: Path, tmp_path: Path) -> None:
    from detect.yolo import import_ultralytics

    import_ultralytics()
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ASSETS

    # Square-padded beforehand: PyTorch would otherwise pad bus.jpg to 416x320 (minimal padding) while the
    # fixed-size exports see 416x416, and the padding alone moves scores by up to 0.2. Same input, same boxes.
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
