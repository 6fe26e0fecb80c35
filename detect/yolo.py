"""The adapter over ultralytics: the one place that imports it for inference and tracking.

`import_ultralytics()` prepares an offline environment first (no network, no settings sync, fonts
from matplotlib, our own config folder), so every caller in the project imports it through here.
Model output is turned into our `Detection` values at once; nothing downstream sees `Results`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from detect.values import Detection

log = logging.getLogger(__name__)

_lock = threading.Lock()
_prepared = False

SUPPORTED_SUFFIXES = (".pt", ".onnx")
# The weights gridpatrol ships and the input size they are run at: the default of every command and of
# configs/site.yaml (a test holds the two together). Why this size: models/MODEL_CARD.md.
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "gridpatrol-n.pt"
SHIPPED_IMGSZ = 480


class ModelError(ValueError):
    """Weights that cannot be loaded: the message names the path."""


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
    """Import ultralytics set up to run fully offline (idempotent, thread-safe)."""
    global _prepared
    with _lock:
        if not _prepared:
            _prepare_offline()
        import ultralytics
        from ultralytics.utils import SETTINGS

        if not _prepared:
            if SETTINGS.get("sync", False):
                SETTINGS.update({"sync": False})
            _prepared = True
    return ultralytics


def check_weights(path: str | os.PathLike[str]) -> Path:
    """The weights path, or a ModelError saying why it cannot be a model."""
    weights = Path(path)
    if not weights.exists():
        raise ModelError(f"model weights not found: {weights}")
    if weights.is_dir():
        if not any(weights.glob("*.xml")):
            raise ModelError(f"{weights}: a folder, but not an OpenVINO model (no .xml inside)")
    elif weights.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ModelError(f"{weights}: unsupported model format (use .pt, .onnx or an OpenVINO folder)")
    return weights


class YoloDetector:
    """A YOLO model from a path (.pt, .onnx or OpenVINO folder) that returns our Detection values.

    kinds maps model class names to object kinds; classes the map does not name are dropped here,
    so trackers and rules never see them. backend: `pytorch` runs .pt weights as they are; `auto`,
    `onnx`, `openvino` may run a cached export of them instead (see detect.model.export.resolve_backend);
    `weights` is then the export and `source_weights` the .pt file.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        kinds: dict[str, str] | None = None,
        imgsz: int = 640,
        device: str = "cpu",
        conf: float = 0.25,
        iou: float = 0.7,
        backend: str = "pytorch",
    ) -> None:
        from detect.model.export import ExportError, resolve_backend

        self.source_weights = check_weights(weights)
        try:
            self.weights, self.backend = resolve_backend(
                self.source_weights, backend, device=device, imgsz=imgsz
            )
        except ExportError as exc:
            raise ModelError(str(exc)) from exc
        ultralytics = import_ultralytics()
        try:
            self._model = ultralytics.YOLO(str(self.weights), task="detect")
            names = self._model.names
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise ModelError(f"cannot load model weights {self.weights}: {exc}") from exc
        self.names: dict[int, str] = dict(names)
        log.info("model %s on %s (%s, imgsz %d)", self.source_weights, self.backend, device, imgsz)
        self.kinds = dict(kinds) if kinds is not None else {n: n for n in self.names.values()}
        self._keep = [i for i, n in self.names.items() if n in self.kinds]
        self.imgsz = imgsz
        self.device = device
        self.conf = conf
        self.iou = iou

    @property
    def model(self) -> Any:
        """The underlying ultralytics model (for benchmarks that compare against it)."""
        return self._model

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in one BGR image, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        results = self._model.predict(
            list(images),
            imgsz=self.imgsz,
            device=self.device,
            conf=self.conf,
            iou=self.iou,
            classes=self._keep or None,
            verbose=False,
        )
        return [self._to_detections(r) for r in results]

    def _to_detections(self, result: Any) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy().astype(float)
        scores = boxes.conf.cpu().numpy().astype(float)
        classes = boxes.cls.cpu().numpy().astype(int)
        out = []
        for box, score, cls in zip(xyxy, scores, classes, strict=True):
            name = self.names.get(int(cls), str(cls))
            kind = self.kinds.get(name)
            if kind is None:
                continue
            out.append(Detection(box=tuple(box.tolist()), score=float(score), class_name=name, kind=kind))
        out.sort(key=lambda d: -d.score)
        return out


class _NumpyBoxes:
    """The few attributes ultralytics' trackers read from `Boxes`, over plain arrays."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy = xyxy
        self.conf = conf
        self.cls = cls
        wh = xyxy[:, 2:4] - xyxy[:, 0:2]
        self.xywh = np.concatenate([xyxy[:, 0:2] + wh / 2.0, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _NumpyBoxes:
        return _NumpyBoxes(self.xyxy[index], self.conf[index], self.cls[index])


class ObjectTracker:
    """One source's multi-object tracker (ultralytics' ByteTrack or BoT-SORT), fed our Detections.

    buffer_frames: how many analysed frames a lost track is kept by the tracker itself.
    """

    def __init__(self, tracker_type: str = "bytetrack", *, buffer_frames: int = 30) -> None:
        import_ultralytics()
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker

        args = SimpleNamespace(
            tracker_type=tracker_type,
            track_high_thresh=0.25,
            track_low_thresh=0.1,
            new_track_thresh=0.25,
            track_buffer=max(1, int(buffer_frames)),
            match_thresh=0.8,
            fuse_score=True,
            gmc_method="sparseOptFlow",
            proximity_thresh=0.5,
            appearance_thresh=0.8,
            with_reid=False,
            model="auto",
        )
        if tracker_type == "bytetrack":
            self._tracker = BYTETracker(args)
        elif tracker_type == "botsort":
            self._tracker = BOTSORT(args)
        else:
            raise ValueError(f"unknown tracker type '{tracker_type}' (bytetrack or botsort)")
        self._class_ids: dict[str, int] = {}

    def update(self, detections: Sequence[Detection], image: np.ndarray) -> list[Detection]:
        """The detections that belong to a confirmed track, each with its track_id set."""
        if detections:
            xyxy = np.array([d.box for d in detections], dtype=np.float32)
            conf = np.array([d.score for d in detections], dtype=np.float32)
            cls = np.array(
                [self._class_ids.setdefault(d.class_name, len(self._class_ids)) for d in detections],
                dtype=np.float32,
            )
        else:
            xyxy = np.zeros((0, 4), dtype=np.float32)
            conf = np.zeros((0,), dtype=np.float32)
            cls = np.zeros((0,), dtype=np.float32)
        rows = self._tracker.update(_NumpyBoxes(xyxy, conf, cls), image)
        tracked = []
        for row in rows:
            idx = int(row[-1])
            if not 0 <= idx < len(detections):
                continue
            det = detections[idx]
            tracked.append(
                Detection(
                    box=det.box,
                    score=det.score,
                    class_name=det.class_name,
                    kind=det.kind,
                    track_id=int(row[4]),
                )
            )
        return tracked
