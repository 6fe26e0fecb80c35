"""Where a YOLO model runs: ultralytics imported offline, and the backend a weights file runs on.

`import_ultralytics()` prepares an offline environment first (no network, no settings sync, fonts
from matplotlib, our own config folder), so every caller in the project imports it through here.
`resolve_backend` picks PyTorch, ONNX Runtime or OpenVINO for a weights file and makes the export
that backend needs on first use, kept in a cache folder under the weights' SHA-256.

The runtime: the detector adapter (detect.yolo) loads what this module resolves; the workshop's
`gridpatrol export` (detect.model.export) writes an export where the user asks with `export_yolo`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from detect import SetupError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_prepared = False
_model_frozen = False

BACKENDS = ("auto", "pytorch", "onnx", "openvino")
FORMATS = ("onnx", "openvino")
# How ultralytics names an export beside its model, and how it is told apart when loaded back.
EXPORT_SUFFIXES = {"onnx": ".onnx", "openvino": "_openvino_model"}


class ExportError(SetupError):
    """A model that cannot be exported; the message names the path or the format."""


def yolo_config_dir() -> Path:
    """The folder ultralytics keeps its settings in: ours, never the user's global one."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        return Path(os.environ["YOLO_CONFIG_DIR"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "gridpatrol" / "ultralytics"


def _prepare_offline() -> None:
    config_dir = yolo_config_dir()
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    fonts = config_dir / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (fonts / name).exists() and dejavu.exists():
            shutil.copyfile(dejavu, fonts / name)


def import_ultralytics() -> ModuleType:
    """Import ultralytics set up to run fully offline (idempotent, thread-safe).

    The first import also moves what is alive then out of the garbage collector's sight (gc.freeze;
    again after the first model is loaded: `freeze_after_first_model`): torch and ultralytics leave a
    few hundred thousand objects that live as long as the process, and every full collection walked
    them, the last one at exit. Measured on the 2-core machine: a process holding a loaded OpenVINO
    detector exits in 1.0 s, 0.4 s frozen (benchmarks/patrol.py shows it in a detect run's "rest").
    Frozen objects are still freed by reference counting; only cycles among them outlive their use.
    """
    global _prepared
    with _lock:
        if not _prepared:
            _prepare_offline()
        import ultralytics
        from ultralytics.utils import SETTINGS

        if not _prepared:
            if SETTINGS.get("sync", False):
                SETTINGS.update({"sync": False})
            gc.freeze()
            _prepared = True
    return ultralytics


def freeze_after_first_model() -> None:
    """gc.freeze() once the process's first model is loaded (see import_ultralytics). Once only: a
    service loads a model per job, and a freeze also keeps for good any cycle alive at that moment (a
    request in flight); the first load is the one that brings in the long-lived objects."""
    global _model_frozen
    with _lock:
        if not _model_frozen:
            gc.freeze()
            _model_frozen = True


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, hex (read in chunks: weights and photos are not held whole)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def export_yolo(
    model: str | os.PathLike[str], fmt: str, *, imgsz: int, half: bool = False, dynamic: bool = False
) -> Path:
    """Export a .pt model with ultralytics' exporter; returns the .onnx file or the OpenVINO folder it
    writes beside the model (NAME.onnx, NAME_openvino_model/).

    The export has a fixed input size and keeps the class names in its metadata, so it loads by path
    like the .pt file. dynamic: accept any input shape up to imgsz, so frames are letterboxed to their
    own aspect (a 16:9 frame at 480 runs as 480x288, as PyTorch does) instead of padded to a square.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}' (one of {', '.join(FORMATS)})")
    source = Path(model)
    if not source.is_file() or source.suffix != ".pt":
        raise ExportError(f"model must be an existing .pt file: {source}")
    if imgsz % 32:
        raise ExportError(f"imgsz must be a multiple of 32, got {imgsz}")
    ultralytics = import_ultralytics()
    try:
        yolo = ultralytics.YOLO(str(source), task="detect")
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
        return Path(yolo.export(**kwargs))
    except Exception as exc:
        raise ExportError(f"export of {source} to {fmt} failed: {exc}") from exc


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
    key = sha256_file(source)[:16]
    target = folder / f"{source.stem}-{key}-{imgsz}-dynamic{EXPORT_SUFFIXES[fmt]}"
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
            produced = export_yolo(copy, fmt, imgsz=imgsz, dynamic=True)
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
