"""Exporting weights to faster CPU formats (ONNX for ONNX Runtime, OpenVINO IR) with ultralytics.

The export has a fixed input size (the shipped image size) and keeps the class names in its
metadata, so `YoloDetector` and `detect.model.evaluation` load it by path like the .pt file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from detect.yolo import SHIPPED_IMGSZ

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")


class ExportError(ValueError):
    """A model that cannot be exported; the message names the path or the format."""


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

    dynamic: accept any input shape up to imgsz, so frames are letterboxed to their own aspect
    (a 16:9 frame at 480 runs as 480x288, as PyTorch does) instead of padded to a square.

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
        "dynamic": dynamic,
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


BACKENDS = ("auto", "pytorch", "onnx", "openvino")
_SUFFIX = {"onnx": ".onnx", "openvino": "_openvino_model"}


def model_cache_dir() -> Path:
    """Where exports made on first use are kept: $GRIDPATROL_MODEL_CACHE, else the user's cache
    folder (~/.cache/gridpatrol/models)."""
    if os.environ.get("GRIDPATROL_MODEL_CACHE"):
        return Path(os.environ["GRIDPATROL_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gridpatrol" / "models"


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # torch.jit's deprecation notices, raised by the exporter
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def cached_export(
    model: str | os.PathLike[str], fmt: str, *, imgsz: int, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The `fmt` export of a .pt model at `imgsz`, made once and kept in the cache folder under the
    weights' SHA-256 (new weights under the same name never reuse a stale export). It has dynamic
    input shapes: street footage is 16:9, and a square input would spend ~40% of its work on
    padding (measured on the dashcam clip at 416: 2.0x PyTorch's frames/s dynamic, 1.45x square).
    The export is made in a private temporary folder and renamed into place, so concurrent
    processes never load half of one; the loser of a race throws its copy away."""
    source = Path(model)
    if not source.is_file() or source.suffix != ".pt":
        raise ExportError(f"model must be an existing .pt file: {source}")
    folder = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    from detect.model.dataset import sha256_file

    key = sha256_file(source)[:16]
    target = folder / f"{source.stem}-{key}-{imgsz}-dynamic{_SUFFIX[fmt]}"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # ultralytics writes an export beside its model: export a private copy in a private folder, so
    # nothing is written next to the source (models/ may be read-only, or shared by processes).
    work = folder / f".tmp-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    log.info("first use of %s with %s at imgsz %d: exporting once to %s", source.name, fmt, imgsz, target)
    try:
        copy = work / source.name
        shutil.copyfile(source, copy)
        with _quiet_ultralytics():  # its export banner is noise in a detect run or a job's log
            produced = export_model(copy, fmt, imgsz=imgsz, dynamic=True)
        try:
            os.rename(produced, target)
        except OSError:
            if not target.exists():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_backend(
    weights: str | os.PathLike[str], backend: str, *, device: str = "cpu", imgsz: int = 640
) -> tuple[Path, str]:
    """The weights to load for a backend choice, and the backend they run on.

    `auto` runs .pt weights through OpenVINO on a CPU (measured by benchmarks/model.py: about 3x
    PyTorch's frames per second with the same mAP50) and through PyTorch on a GPU; an export or a
    folder given as weights runs as it is. `onnx` / `openvino` export .pt weights once (cached,
    see `cached_export`). When the automatic export fails, PyTorch is used and a warning says why;
    an explicitly requested one that fails is an ExportError."""
    path = Path(weights)
    if backend not in BACKENDS:
        raise ExportError(f"unknown model backend '{backend}' (one of {', '.join(BACKENDS)})")
    if path.is_dir():
        return path, "openvino"
    if path.suffix == ".onnx":
        return path, "onnx"
    if backend == "pytorch" or path.suffix != ".pt":
        return path, "pytorch"
    wanted = backend
    if backend == "auto":
        if not str(device).lower().startswith("cpu"):
            return path, "pytorch"
        wanted = "openvino"
    try:
        return cached_export(path, wanted, imgsz=imgsz), wanted
    except (ExportError, OSError) as exc:
        if backend != "auto":
            raise ExportError(f"{path}: {wanted} backend not available: {exc}") from exc
        log.warning("%s: OpenVINO export failed (%s); running on PyTorch", path, exc)
        return path, "pytorch"
