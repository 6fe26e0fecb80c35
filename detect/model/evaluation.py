"""Accuracy of a detector on a labelled YOLO-format dataset: per-class AP50, AP50-95, P and R.

Predictions come from the detector adapter (detect.yolo.load_yolo), so the same code scores
PyTorch, ONNX and OpenVINO models. Predictions are matched to labels by class *name* (a COCO model
can be scored on our 12-class labels: its classes the dataset does not name are dropped). Matching
follows the COCO / ultralytics convention: detections in descending score, each taking the best
still-unclaimed label of its class at each IoU threshold 0.50:0.05:0.95; AP from ultralytics'
`ap_per_class` (101-point interpolated area under the precision envelope).

Precision and recall are reported at the operating threshold (the score the product keeps
detections at), not at ultralytics' max-F1 point: that is what a user of the product sees.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from detect import SetupError
from detect.yolo import SHIPPED_IMGSZ

log = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMGSZ_STRIDE = 32  # the detector's largest stride: input sizes are multiples of it
MAX_IMGSZ = 4096  # larger letterboxes need gigabytes per image and are never what was meant


class EvaluationError(SetupError):
    """A model or dataset that cannot be evaluated; the message names the path."""


def check_imgsz(imgsz: int, what: str = "imgsz") -> int:
    """imgsz when it is an input size the detector can score at: a multiple of 32 from 32 to 4096.
    Anything else is an EvaluationError naming `what`: at 0 or below every model scores 0 (and two
    models compare equal), past a few thousand the letterbox alone needs gigabytes."""
    if not IMGSZ_STRIDE <= imgsz <= MAX_IMGSZ or imgsz % IMGSZ_STRIDE:
        raise EvaluationError(
            f"{what} {imgsz}: must be a multiple of {IMGSZ_STRIDE} from {IMGSZ_STRIDE} to {MAX_IMGSZ}"
        )
    return imgsz


@dataclass(frozen=True, slots=True)
class ImageBoxes:
    """Boxes of one image: xyxy (N, 4) pixels, cls (N,) dataset class ids, scores (N,) (1.0 for labels)."""

    xyxy: np.ndarray
    cls: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> ImageBoxes:
        return ImageBoxes(np.zeros((0, 4)), np.zeros((0,), dtype=int), np.zeros((0,)))

    @staticmethod
    def of(rows: Sequence[tuple[int, float, float, float, float, float]]) -> ImageBoxes:
        """From (cls, x1, y1, x2, y2, score) rows (for tests and hand-made cases)."""
        if not rows:
            return ImageBoxes.empty()
        arr = np.asarray(rows, dtype=float)
        return ImageBoxes(arr[:, 1:5], arr[:, 0].astype(int), arr[:, 5])


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    name: str
    images: int  # images with at least one label of this class
    instances: int  # labels of this class
    ap50: float | None  # None when the class has no labels in the set
    ap50_95: float | None
    precision: float | None  # at the operating threshold; None when nothing was predicted
    recall: float | None


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    model: str
    data: str
    split: str
    imgsz: int
    conf: float
    images: int
    classes: list[ClassMetrics] = field(default_factory=list)
    lacks: list[str] = field(default_factory=list)  # the dataset's classes the model has not got

    @property
    def map50(self) -> float:
        return _mean(c.ap50 for c in self.classes)

    @property
    def map50_95(self) -> float:
        return _mean(c.ap50_95 for c in self.classes)

    def by_name(self) -> dict[str, ClassMetrics]:
        return {c.name: c for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["map50"] = self.map50
        out["map50_95"] = self.map50_95
        return out


def _mean(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else math.nan


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(labels: ImageBoxes, preds: ImageBoxes) -> np.ndarray:
    """(N preds, 10) booleans: prediction i is a true positive at IoU threshold t.

    Predictions are visited in descending score; each claims its best unclaimed same-class label.
    """
    order = np.argsort(-preds.scores, kind="stable")
    correct = np.zeros((len(preds.scores), len(IOU_THRESHOLDS)), dtype=bool)
    if len(labels.cls) == 0 or len(order) == 0:
        return correct
    iou = box_iou(labels.xyxy, preds.xyxy[order]) * (labels.cls[:, None] == preds.cls[order][None, :])
    claimed = np.zeros((len(labels.cls), len(IOU_THRESHOLDS)), dtype=bool)
    cols = np.arange(len(IOU_THRESHOLDS))
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(0)):
        available = np.where(claimed, 0.0, iou[:, j, None])
        k = available.argmax(0)
        hit = available[k, cols] >= IOU_THRESHOLDS
        correct[order[j]] = hit
        claimed[k, cols] |= hit
    return correct


def score(
    labels: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes], names: Sequence[str], *, conf: float
) -> list[ClassMetrics]:
    """Per-class metrics of predictions against labels (same image order); names: class id -> name."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} label sets but {len(predictions)} prediction sets")
    from detect.backends import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.metrics import ap_per_class

    tp, scores, pred_cls, target_cls = [], [], [], []
    images_with = np.zeros(len(names), dtype=int)
    for lab, pred in zip(labels, predictions, strict=True):
        tp.append(match(lab, pred))
        scores.append(pred.scores)
        pred_cls.append(pred.cls)
        target_cls.append(lab.cls)
        for c in set(lab.cls.tolist()):
            images_with[c] += 1
    tp_all = np.concatenate(tp) if tp else np.zeros((0, len(IOU_THRESHOLDS)), dtype=bool)
    conf_all = np.concatenate(scores) if scores else np.zeros(0)
    pcls = np.concatenate(pred_cls).astype(int) if pred_cls else np.zeros(0, dtype=int)
    tcls = np.concatenate(target_cls).astype(int) if target_cls else np.zeros(0, dtype=int)

    ap_by_class: dict[int, np.ndarray] = {}
    if len(tcls):
        result = ap_per_class(tp_all, conf_all, pcls, tcls, names=dict(enumerate(names)))
        ap, unique = result[5], result[6]
        ap_by_class = {int(c): ap[i] for i, c in enumerate(unique)}

    out = []
    for c, name in enumerate(names):
        instances = int((tcls == c).sum())
        kept = (pcls == c) & (conf_all >= conf)
        n_pred = int(kept.sum())
        hits = int(tp_all[kept, 0].sum())
        ap = ap_by_class.get(c)
        out.append(
            ClassMetrics(
                name=name,
                images=int(images_with[c]),
                instances=instances,
                ap50=float(ap[0]) if ap is not None and instances else None,
                ap50_95=float(ap.mean()) if ap is not None and instances else None,
                precision=hits / n_pred if n_pred else None,
                recall=hits / instances if instances else None,
            )
        )
    return out


def load_data(data: str | os.PathLike[str], split: str) -> tuple[list[str], list[Path]]:
    """Class names and sorted image paths of a split of an ultralytics data.yaml; EvaluationError
    naming the file (and the key, or the list's line) when it is not one."""
    data_path = Path(data)
    if not data_path.is_file():
        raise EvaluationError(f"dataset yaml not found: {data_path}")
    spec, names = read_dataset_yaml(data_path)
    root = data_path.parent
    if spec.get("path"):
        if not isinstance(spec["path"], str):
            raise EvaluationError(f"{data_path}: path: expected a folder, got {spec['path']!r}")
        root = (
            (data_path.parent / spec["path"]).resolve()
            if not Path(spec["path"]).is_absolute()
            else Path(spec["path"])
        )
    entries = spec.get(split)
    if not entries:
        raise EvaluationError(f"{data_path}: no '{split}' split")
    listed = entries if isinstance(entries, list) else [entries]
    if not all(isinstance(e, str) and e for e in listed):
        raise EvaluationError(
            f"{data_path}: {split}: expected a folder or a .txt list of images (or a list of them), "
            f"got {entries!r}"
        )
    images: list[Path] = []
    for entry in listed:
        folder = root / entry
        if folder.is_dir():
            images += [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        elif folder.suffix == ".txt" and folder.is_file():
            images += _listed_images(folder, root)
        else:
            raise EvaluationError(f"{data_path}: {split} folder not found: {folder}")
    return names, sorted(images)


def _read_text(path: Path, error: type[SetupError] = EvaluationError) -> str:
    """A file's UTF-8 text; `error` naming it when it cannot be read or is not text."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read it as text ({exc})") from None


def read_dataset_yaml(
    data_path: Path, error: type[SetupError] = EvaluationError
) -> tuple[dict[str, Any], list[str]]:
    """An ultralytics data.yaml's mapping and its class names (`names`: a list, or a mapping of the
    class ids 0..N-1); `error` naming the file when it cannot be read or is not one."""
    text = _read_text(data_path, error)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{data_path}: not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise error(f"{data_path}: not a dataset yaml (a mapping with names and splits)")
    return spec, _names(spec.get("names"), data_path, error)


def _names(names: object, data_path: Path, error: type[SetupError]) -> list[str]:
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            by_id = {}
        if sorted(by_id) != list(range(len(names))):
            raise error(f"{data_path}: names: the keys must be the class ids 0, 1, 2, ..., got {list(names)}")
        names = [by_id[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise error(f"{data_path}: no 'names' list or mapping")
    return [str(n) for n in names]


def _listed_images(listing: Path, root: Path) -> list[Path]:
    """The images of a .txt list, as ultralytics reads it: "./x" relative to the list's folder, others
    to the root; EvaluationError naming the list and line of one that is not there."""
    text = _read_text(listing)
    images = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        image = listing.parent / name[2:] if name.startswith("./") else root / name
        if not image.is_file():
            raise EvaluationError(f"{listing}:{number}: no such image: {image}")
        images.append(image)
    return images


def label_path(image: Path) -> Path:
    """ultralytics' convention: the last /images/ of the path becomes /labels/, the suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


LabelRow = tuple[int, float, float, float, float]  # class id, centre x, centre y, width, height (0..1)


def label_rows(image: Path, classes: int | None = None) -> list[LabelRow]:
    """The YOLO labels of an image, normalised; EvaluationError naming the file and line of a bad one
    (class not a whole number in 0..classes-1, a coordinate not a finite number). Lines of more than
    five values (segments) are skipped; a missing file is an image without labels."""
    path = label_path(image)
    if not path.exists():
        return []
    text = _read_text(path)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or len(parts) > 5:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            c, x, y, w, h = int(parts[0]), *(float(v) for v in parts[1:])
        except ValueError:
            raise EvaluationError(
                f"{path}:{number}: expected 'class x y w h' (a class id, then four numbers), got {line!r}"
            ) from None
        if c < 0 or (classes is not None and c >= classes):
            known = f" (the dataset has classes 0-{classes - 1})" if classes is not None else ""
            raise EvaluationError(f"{path}:{number}: class {c} is not a class of the dataset{known}")
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise EvaluationError(f"{path}:{number}: coordinates must be finite numbers, got {line!r}")
        rows.append((c, x, y, w, h))
    return rows


def to_pixels(rows: Sequence[LabelRow], width: int, height: int) -> ImageBoxes:
    """Normalised label rows as boxes in an image's pixels."""
    return ImageBoxes.of(
        [
            (c, (x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height, 1.0)
            for c, x, y, w, h in rows
        ]
    )


def read_labels(image: Path, width: int, height: int, classes: int | None = None) -> ImageBoxes:
    """The labels of an image in its pixels (label_rows, then to_pixels)."""
    return to_pixels(label_rows(image, classes), width, height)


Predictor = Callable[[Sequence[Path]], list[tuple[ImageBoxes, tuple[int, int]]]]


def yolo_predictor(
    model: str | os.PathLike[str], names: Sequence[str], *, imgsz: int, iou: float = 0.7, batch: int = 8
) -> Predictor:
    """A function: image paths -> (predictions in dataset class ids, (height, width)) per image."""
    from detect.yolo import ModelError, load_yolo

    try:
        yolo = load_yolo(model)
    except ModelError as exc:
        raise EvaluationError(str(exc)) from None
    to_data = {i: names.index(n) for i, n in yolo.names.items() if n in names}
    if not to_data:
        raise EvaluationError(f"{yolo.weights}: none of its classes is in the dataset ({', '.join(names)})")
    lacks = [n for n in names if n not in set(yolo.names.values())]

    def predict(images: Sequence[Path]) -> list[tuple[ImageBoxes, tuple[int, int]]]:
        found = yolo.predict([str(p) for p in images], imgsz=imgsz, conf=0.001, iou=iou, device="cpu")
        out = []
        for boxes in found:
            keep = np.array([c in to_data for c in boxes.cls], dtype=bool)
            mapped = np.array([to_data[c] for c in boxes.cls[keep]], dtype=int)
            out.append((ImageBoxes(boxes.xyxy[keep], mapped, boxes.scores[keep]), boxes.image_hw))
        return out

    predict.lacks = lacks  # type: ignore[attr-defined]
    return predict


def evaluate(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    imgsz: int = SHIPPED_IMGSZ,
    conf: float = 0.25,
    split: str = "val",
    limit: int | None = None,
    predictor: Predictor | None = None,
    batch: int = 8,
) -> EvaluationReport:
    """Score a model (.pt, .onnx, OpenVINO folder) on a split of a dataset; limit: first N images.

    A bad label line or an image that cannot be read stops the evaluation with an EvaluationError
    naming it, rather than being skipped: figures compared between models (promotion) must be on
    the same images. Labels are checked before the model is loaded, images batch by batch.
    """
    if not 0.0 < conf < 1.0:
        raise EvaluationError(f"conf must be between 0 and 1, got {conf}")
    check_imgsz(imgsz)
    names, images = load_data(data, split)
    if limit is not None:
        images = images[:limit]
    if not images:
        raise EvaluationError(f"{data}: no images in the {split} split")
    rows = [label_rows(image, len(names)) for image in images]  # a bad label stops us before the model
    predict = predictor or yolo_predictor(model, names, imgsz=imgsz)
    from tqdm import tqdm

    from detect.model.dataset import image_problem

    labels: list[ImageBoxes] = []
    preds: list[ImageBoxes] = []
    with tqdm(total=len(images), desc="evaluating", unit="img") as bar:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            for image in chunk:
                problem = image_problem(image)
                if problem is not None:
                    raise EvaluationError(
                        f"{image}: {problem}; fix or remove it (the figures cover the whole {split} split)"
                    )
            for image_rows, (pred, (height, width)) in zip(
                rows[start : start + batch], predict(chunk), strict=True
            ):
                labels.append(to_pixels(image_rows, width, height))
                preds.append(pred)
            bar.update(len(chunk))
    classes = score(labels, preds, names, conf=conf)
    return EvaluationReport(
        model=str(model),
        data=str(data),
        split=split,
        imgsz=imgsz,
        conf=conf,
        images=len(images),
        classes=classes,
        lacks=list(getattr(predict, "lacks", [])),
    )


def format_table(report: EvaluationReport) -> str:
    """The report as a fixed-width text table (one row per class with labels, then 'all')."""

    def cell(v: float | None) -> str:
        return "    -" if v is None else f"{v:5.3f}"

    lines = [
        f"{report.model} on {report.data} [{report.split}], {report.images} images, imgsz {report.imgsz}, "
        f"P/R at conf {report.conf:g}",
        f"{'class':<14} {'images':>6} {'labels':>6} {'AP50':>6} {'AP50-95':>7} {'P':>6} {'R':>6}",
    ]
    for c in report.classes:
        if not c.instances and c.precision is None:
            continue
        lines.append(
            f"{c.name:<14} {c.images:>6} {c.instances:>6} {cell(c.ap50):>6} {cell(c.ap50_95):>7} "
            f"{cell(c.precision):>6} {cell(c.recall):>6}"
        )
    lines.append(f"{'all':<14} {report.images:>6} {'':>6} {report.map50:6.3f} {report.map50_95:7.3f}")
    return "\n".join(lines)
