"""`gridpatrol export`: weights exported to a faster CPU format (ONNX for ONNX Runtime, OpenVINO IR)
where the user asks, at the shipped input size by default.

The export itself is the runtime's (detect.backends.export_yolo, which `model.backend` also uses
for its cached exports); this module names and places the result.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from detect.backends import EXPORT_SUFFIXES, ExportError, export_yolo
from detect.yolo import SHIPPED_IMGSZ


def export_model(
    model: str | os.PathLike[str],
    fmt: str,
    *,
    imgsz: int = SHIPPED_IMGSZ,
    out: str | os.PathLike[str] | None = None,
    half: bool = False,
    dynamic: bool = False,
) -> Path:
    """Export a .pt model; returns the .onnx file or the OpenVINO folder.

    dynamic: accept any input shape up to imgsz (see `export_yolo`).
    out: where to put the result (default: beside the model, ultralytics' naming:
    NAME.onnx, NAME_openvino_model/).
    """
    if out is not None and fmt in EXPORT_SUFFIXES:
        wanted = EXPORT_SUFFIXES[fmt]
        if not Path(out).name.endswith(wanted):
            raise ExportError(
                f"{out}: an {fmt} export must be named *{wanted} (that is how it is loaded back)"
            )
    produced = export_yolo(model, fmt, imgsz=imgsz, half=half, dynamic=dynamic)
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
