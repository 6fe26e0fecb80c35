"""The adapter over ultralytics: the one place that loads a YOLO model for inference and turns its
output into our values; tracking.

`load_yolo` loads weights (offline, errors as ModelError naming the path) as a `YoloModel`, whose
predictions are `Boxes`: our arrays, converted from ultralytics `Results` once, in `to_boxes`.
The runtime speaks `Detection` (`to_detections`); the workshop's evaluation and pseudo-labelling
read `Boxes` for class ids and raw scores. Nothing outside this module sees `Results`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from detect import SetupError
from detect.backends import ExportError, freeze_after_first_model, import_ultralytics, resolve_backend
from detect.values import Detection

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".pt", ".onnx")
# The weights gridpatrol ships and the input size they are run at: the default of every command and of
# configs/site.yaml (a test holds the two together). Why this size: models/MODEL_CARD.md.
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "gridpatrol-n.pt"
SHIPPED_IMGSZ = 480

# An image ultralytics predicts on: a BGR uint8 array (height, width, 3) or an image file's path.
Image = np.ndarray | str


class ModelError(SetupError):
    """Weights that cannot be loaded: the message names the path."""


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


@dataclass(frozen=True, slots=True)
class Boxes:
    """A model's boxes in one image, as arrays; row i is one box, in the model's order.

    xyxy: (N, 4) float64, (x1, y1, x2, y2) pixels in the image, origin top-left.
    scores: (N,) float64 in 0..1. cls: (N,) int, the model's class ids.
    image_hw: (height, width) of the image in pixels.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    cls: np.ndarray
    image_hw: tuple[int, int]

    @staticmethod
    def empty(image_hw: tuple[int, int]) -> Boxes:
        return Boxes(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=int), image_hw)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def xywhn(self) -> np.ndarray:
        """(N, 4) float64: centre x, centre y, width, height, normalised to the image's width and
        height (YOLO label form). Computed in float32 from the model's float32 boxes, as ultralytics
        computes `Boxes.xywhn`, so pseudo-labels are the numbers they always were."""
        xyxy = self.xyxy.astype(np.float32)
        out = np.empty_like(xyxy)
        out[:, 0] = (xyxy[:, 0] + xyxy[:, 2]) / 2
        out[:, 1] = (xyxy[:, 1] + xyxy[:, 3]) / 2
        out[:, 2] = xyxy[:, 2] - xyxy[:, 0]
        out[:, 3] = xyxy[:, 3] - xyxy[:, 1]
        height, width = self.image_hw
        out[:, [0, 2]] /= width
        out[:, [1, 3]] /= height
        return out.astype(float)


def to_boxes(result: Any) -> Boxes:
    """Our Boxes of one ultralytics detection `Results` (the one conversion of model output)."""
    height, width = (int(v) for v in result.orig_shape[:2])
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Boxes.empty((height, width))
    return Boxes(
        xyxy=boxes.xyxy.cpu().numpy().astype(float),
        scores=boxes.conf.cpu().numpy().astype(float),
        cls=boxes.cls.cpu().numpy().astype(int),
        image_hw=(height, width),
    )


def to_detections(
    boxes: Boxes, names: Mapping[int, str], kinds: Mapping[str, str] | None = None
) -> list[Detection]:
    """Detection values of one image's boxes, highest score first.

    names: the model's class id -> class name. kinds: class name -> object kind; classes it does not
    name are dropped (None: every class, its kind its name).
    """
    out = []
    for box, score, cls in zip(boxes.xyxy, boxes.scores, boxes.cls, strict=True):
        name = names.get(int(cls), str(cls))
        kind = name if kinds is None else kinds.get(name)
        if kind is None:
            continue
        out.append(Detection(box=tuple(box.tolist()), score=float(score), class_name=name, kind=kind))
    out.sort(key=lambda d: -d.score)
    return out


class YoloModel:
    """A loaded YOLO detection model (.pt, .onnx or OpenVINO folder): its class names, and its
    predictions as Boxes. Made by `load_yolo`.

    An export (.onnx, OpenVINO) is loaded (compiled, for OpenVINO) once, by the predictor of a first
    prediction on a blank image, and its class names read from that predictor: ultralytics' `names`
    of an export sets up a throwaway predictor, and the first predict() then a second one, two loads
    (0.35-0.45 s each for OpenVINO on the 2-core machine, benchmarks/patrol.py).
    """

    def __init__(self, model: Any, weights: Path, *, device: str = "cpu") -> None:
        self.model = model  # the ultralytics model, for benchmarks that compare against it
        self.weights = weights
        if not hasattr(model.model, "names"):  # an export: load it by predicting on a blank image
            model.predict(
                np.zeros((32, 32, 3), dtype=np.uint8),
                imgsz=32,
                device=device,
                verbose=False,
            )
        self.names: dict[int, str] = dict(model.names)

    def predict(
        self,
        images: Sequence[Image],
        *,
        imgsz: int,
        conf: float,
        iou: float,
        device: str = "cpu",
        classes: list[int] | None = None,
    ) -> list[Boxes]:
        """Boxes in each image (in order) scoring at least conf, after NMS at iou (at most 300 per
        image); classes: the model's class ids to keep (None: all)."""
        results = self.model.predict(
            list(images),
            imgsz=imgsz,
            device=device,
            conf=conf,
            iou=iou,
            classes=classes,
            max_det=300,
            verbose=False,
        )
        return [to_boxes(r) for r in results]


def load_yolo(weights: str | os.PathLike[str], *, device: str = "cpu") -> YoloModel:
    """The model at a weights path, loaded offline as it is (no backend choice: see YoloDetector)
    for `device`; a ModelError naming the path when it is missing or cannot be loaded."""
    path = check_weights(weights)
    ultralytics = import_ultralytics()
    try:
        model = YoloModel(ultralytics.YOLO(str(path), task="detect"), path, device=device)
    except Exception as exc:  # ultralytics raises many types for a bad file
        raise ModelError(f"cannot load model weights {path}: {exc}") from exc
    freeze_after_first_model()  # it and what loading it imported live as long as the process
    return model


class YoloDetector:
    """A YOLO model from a path (.pt, .onnx or OpenVINO folder) that returns our Detection values.

    kinds maps model class names to object kinds; classes the map does not name are dropped here,
    so trackers and rules never see them. backend: `pytorch` runs .pt weights as they are; `auto`,
    `onnx`, `openvino` may run a cached export of them instead (see detect.backends.resolve_backend);
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
        self.source_weights = check_weights(weights)
        try:
            self.weights, self.backend = resolve_backend(
                self.source_weights, backend, device=device, imgsz=imgsz
            )
        except ExportError as exc:
            raise ModelError(str(exc)) from exc
        self._yolo = load_yolo(self.weights, device=device)
        self.names = self._yolo.names
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
        return self._yolo.model

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in one BGR image, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        found = self._yolo.predict(
            images,
            imgsz=self.imgsz,
            device=self.device,
            conf=self.conf,
            iou=self.iou,
            classes=self._keep or None,
        )
        return [to_detections(boxes, self.names, self.kinds) for boxes in found]


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
