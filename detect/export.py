"""Exporting weights to faster CPU formats (ONNX for ONNX Runtime, OpenVINO IR) with ultralytics.

The export has a fixed input size (the shipped image size) and keeps the class names in its
metadata, so `YoloDetector` and `detect.evaluation` load it by path like the .pt file.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")


class ExportError(ValueError):
    """A model that cannot be exported; the message names the path or the format."""


def export_model(
    model: str | os.PathLike[str],
    fmt: str,
    *,
    imgsz: int = 416,
    out: str | os.PathLike[str] | None = None,
    half: bool = False,
) -> Path:
    """Export a .pt model; returns the .onnx file or the OpenVINO folder.

    out: where to put the result (default: beside the model, ultralytics' naming:
    NAME.onnx, NAME_openvino_model/).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}' (one of {', '.join(FORMATS)})")
    source = Path(model)
    if not source.is_file() or source.suffix != ".pt":
        raise ExportError(f"model must be an existing .pt file: {source}")
    if imgsz % 32:
        raise ExportError(f"imgsz must be a multiple of 32, got {imgsz}")
    if out is not None:
        wanted = "_openvino_model" if fmt == "openvino" else ".onnx"
        if not Path(out).name.endswith(wanted):
            raise ExportError(
                f"{out}: an {fmt} export must be named *{wanted} (that is how it is loaded back)"
            )
    from detect.yolo import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    try:
        yolo = YOLO(str(source), task="detect")
    except Exception as exc:  # ultralytics raises many kinds for a bad file
        raise ExportError(f"cannot load model {source}: {exc}") from exc
    kwargs: dict[str, object] = {
        "format": fmt,
        "imgsz": imgsz,
        "device": "cpu",
        "half": half,
        "dynamic": False,
    }
    if fmt == "onnx":
        kwargs["simplify"] = False  # onnxslim is not a dependency; ORT optimises the graph itself
    log.info("exporting %s to %s at imgsz %d", source, fmt, imgsz)
    try:
        produced = Path(yolo.export(**kwargs))
    except Exception as exc:
        raise ExportError(f"export of {source} to {fmt} failed: {exc}") from exc
    if out is None:
        return produced
    target = Path(out)
    if target.resolve() == produced.resolve():
        return produced
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(produced), target)
    return target
