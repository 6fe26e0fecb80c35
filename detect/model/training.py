"""Training the shipped detector: a thin wrapper over ultralytics' trainer.

ultralytics does the work (augmentation, schedule, EMA, checkpoints every epoch, progress bars);
this module fixes where runs live, checks inputs up front with messages that name them, resumes
an interrupted run from its last.pt, and turns a run's checkpoint into the small weights file we
ship (optimizer state stripped, fp16).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detect import SetupError
from detect.yolo import SHIPPED_IMGSZ

if TYPE_CHECKING:
    from detect.model.dataset import LabelBox

log = logging.getLogger(__name__)

DEFAULT_BASE = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "yolo26n-coco.pt"
DEFAULT_PROJECT = Path(__file__).resolve().parents[2] / "build" / "runs"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "build" / "datasets" / "gridpatrol-street" / "data.yaml"
MAX_SHIPPED_BYTES = 20 * 1024 * 1024
DISTILL_KINDS = ("features", "logits")
# Default weight of the distillation loss per kind: ultralytics' own `dis` for features; for logits 1,
# the teacher's terms on the footing of the detection loss's class term (detect.model.logit_distill).
DISTILL_WEIGHTS = {"features": 6.0, "logits": 1.0}
DISTILL_FILE = "logit-distillation.json"  # in a run folder: the teacher a resumed run must keep using
# A review frame's pseudo-label is dropped when it overlaps an operator's box (any class) or a box the
# operators rejected by at least this IoU (see merge_review_sets).
PSEUDO_DROP_IOU = 0.5
DEFAULT_PSEUDO_CONF = 0.4  # the recipe's pseudo-label threshold (models/MODEL_CARD.md) when no manifest says


class TrainingError(SetupError):
    """Inputs a training run cannot start or resume from; the message names the path."""


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """One training run. imgsz in pixels (multiple of 32); workers: data-loader processes."""

    data: Path = DEFAULT_DATA
    base: Path = DEFAULT_BASE
    imgsz: int = SHIPPED_IMGSZ
    epochs: int = 50
    batch: int = 16
    workers: int = 2
    device: str = "cpu"
    project: Path = DEFAULT_PROJECT
    name: str = "gridpatrol-n"
    seed: int = 0
    cache: str | None = "ram"
    patience: int = 100
    calibrate_bn: bool = True  # see calibrate_batchnorms
    calibration_images: int = 64
    plots: bool = False
    teacher: Path | None = None  # weights the model is distilled from (see `distill`)
    # "features": ultralytics' neck features; "logits": detect.model.logit_distill; None: features
    # when there is a teacher (without one, any distillation setting is refused)
    distill: str | None = None
    distill_weight: float | None = None  # None: DISTILL_WEIGHTS[distill]
    hours: float | None = None  # train for this long instead of `epochs` (ultralytics' `time`)
    scale: float | None = None  # random zoom gain (ultralytics' `scale`, default 0.5: 0.5x-1.5x)

    def run_dir(self) -> Path:
        return Path(self.project).resolve() / self.name


@dataclass(frozen=True, slots=True)
class MergeSummary:
    """What `merge_review_sets` wrote: the merged data.yaml and, over the review sets, images per
    split, operators' boxes, pseudo-labels added and pseudo-labels dropped by the overlap rule."""

    data_yaml: Path
    images: dict[str, int]
    operator_boxes: int
    pseudo_added: int
    pseudo_dropped: int

    def format(self) -> str:
        images = ", ".join(f"{split} {n}" for split, n in sorted(self.images.items()))
        return (
            f"{self.data_yaml}: review frames {images or 'none'}; operators' boxes {self.operator_boxes}, "
            f"pseudo-labels added {self.pseudo_added}, dropped (IoU >= {PSEUDO_DROP_IOU:g} with an "
            f"operator's or a rejected box) {self.pseudo_dropped}"
        )


def _import_verbose() -> None:
    """Import ultralytics offline, with its epoch logs and progress bars on (the adapter mutes them)."""
    from detect.backends import import_ultralytics

    import_ultralytics()
    import ultralytics.utils as ultralytics_utils

    ultralytics_utils.VERBOSE = True  # its progress bars read this flag when they are made
    ultralytics_utils.LOGGER.setLevel(logging.INFO)
    for handler in ultralytics_utils.LOGGER.handlers:
        handler.setLevel(logging.INFO)


def _check_file(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        raise TrainingError(f"{what} not found: {path}")
    return Path(path).resolve()


def check_settings(settings: TrainSettings) -> None:
    """TrainingError naming the first setting (by its option) out of range, checked before any work
    starts (a NaN passes `x <= 0`; ultralytics would fail on it, or on a size of 0, only later)."""
    if settings.imgsz < 32 or settings.imgsz % 32:
        raise TrainingError(f"--imgsz must be a positive multiple of 32, got {settings.imgsz}")
    for name, value in (("--distill-weight", settings.distill_weight), ("--hours", settings.hours)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise TrainingError(f"{name} must be a number > 0, got {value}")
    if settings.scale is not None and not 0.0 <= settings.scale < 1.0:
        raise TrainingError(f"--scale must be in [0, 1), got {settings.scale}")


def train(settings: TrainSettings) -> Path:
    """Start a new run; returns its folder. Refuses to overwrite an existing run (resume it instead)."""
    data = _check_file(settings.data, "dataset yaml")
    base = _check_file(settings.base, "base weights")
    teacher = _check_file(settings.teacher, "teacher weights") if settings.teacher else None
    distill = settings.distill or "features"
    if distill not in DISTILL_KINDS:
        raise TrainingError(f"unknown distillation '{distill}' (one of {', '.join(DISTILL_KINDS)})")
    distill_weight = DISTILL_WEIGHTS[distill] if settings.distill_weight is None else settings.distill_weight
    check_settings(settings)
    if teacher is None and (settings.distill is not None or settings.distill_weight is not None):
        asked = f"--distill {distill}" if settings.distill else f"--distill-weight {distill_weight:g}"
        raise TrainingError(f"{asked} needs a teacher to distil from: give --teacher WEIGHTS")
    run_dir = refuse_existing_run(settings)
    _import_verbose()
    from ultralytics import YOLO

    log.info("training %s from %s on %s -> %s", settings.name, base, data, run_dir)
    log.info("settings: %s", {k: str(v) for k, v in asdict(settings).items()})
    if settings.calibrate_bn:
        base = _calibrated_base(base, data, run_dir, settings)
    model = YOLO(str(base), task="detect")
    kwargs = _train_kwargs(settings, data, run_dir)
    logit_teacher: dict[str, Any] | None = None
    if teacher is not None and distill == "logits":
        logit_teacher = {"teacher": str(teacher), "weight": distill_weight}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / DISTILL_FILE).write_text(json.dumps(logit_teacher, indent=2) + "\n")
    elif teacher is not None:
        log.info("distilling towards %s's features (weight %g)", teacher, distill_weight)
        kwargs.update(distill_model=str(teacher), dis=distill_weight)
    if settings.scale is not None:
        kwargs["scale"] = settings.scale
    if settings.hours is not None:
        kwargs["time"] = settings.hours
    model.train(trainer=trainer_class(logit_teacher), **kwargs)
    return run_dir


def trainer_class(logit_teacher: dict[str, Any] | None) -> type:
    """ultralytics' detection trainer, with the logit distillation of detect.model.logit_distill when
    logit_teacher names one ({"teacher": path, "weight": w}), and its results.csv read without polars
    (which GPU machines' images may lack: it is only needed there to read that file back)."""
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import unwrap_model

    class Trainer(DetectionTrainer):  # type: ignore[misc]
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            from detect.model.twin import frozen_layers, is_twin

            if weights is None or not is_twin(weights):
                return super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            names, given = list(self.data["names"].values()), list(weights.names.values())
            if names != given:  # its head scores exactly its classes: the data must name the same
                raise TrainingError(f"the data's classes {names} are not the weights' {given}, in order")
            self.args.freeze = frozen_layers(weights)  # only the added class branches learn
            log.info("training the added class branches only (detect.model.twin)")
            return weights

        def _setup_train(self) -> None:
            super()._setup_train()
            if logit_teacher is None:
                return
            from detect.model.logit_distill import DistillationError, LogitDistillation, load_teacher

            model: Any = unwrap_model(self.model)  # type: ignore[arg-type]
            inner = getattr(model, "criterion", None) or model.init_criterion()
            try:
                teacher, pairs = load_teacher(Path(logit_teacher["teacher"]), model, self.device)
            except DistillationError as exc:
                raise TrainingError(str(exc)) from None
            model.criterion = LogitDistillation(inner, teacher, pairs, float(logit_teacher["weight"]))

        def read_results_csv(self) -> dict[str, list[Any]]:
            import csv

            try:
                with self.csv.open(newline="") as fh:
                    rows = list(csv.DictReader(fh))
            except OSError:
                return {}
            return {key.strip(): [_number(row[key]) for row in rows] for key in (rows[0] if rows else {})}

    return Trainer


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def refuse_existing_run(settings: TrainSettings) -> Path:
    """The run folder, or TrainingError when it holds a run already (a new run never overwrites one)."""
    run_dir = settings.run_dir()
    if (run_dir / "weights" / "last.pt").exists():
        raise TrainingError(f"run folder {run_dir} already holds a run: resume it (--resume) or pick --name")
    return run_dir


def _calibrated_base(base: Path, data: Path, run_dir: Path, settings: TrainSettings) -> Path:
    """base with its identity BatchNorms calibrated on the training split (base itself if it has none)."""
    from detect.backends import import_ultralytics
    from detect.model.evaluation import EvaluationError, load_data

    import_ultralytics()
    from ultralytics.utils.torch_utils import torch_load

    ckpt = torch_load(base, map_location="cpu")
    if not identity_batchnorms(ckpt.get("ema") or ckpt["model"]):
        return base
    try:
        _, images = load_data(data, "train")
    except EvaluationError as exc:
        raise TrainingError(str(exc)) from None
    if not images:
        raise TrainingError(f"{data}: no training images")
    step = max(1, len(images) // settings.calibration_images)
    sample = images[::step][: settings.calibration_images]
    return calibrate_batchnorms(base, sample, run_dir / "base-calibrated.pt", imgsz=settings.imgsz)


def _train_kwargs(settings: TrainSettings, data: Path, run_dir: Path) -> dict[str, Any]:
    return {
        "data": str(data),
        "imgsz": settings.imgsz,
        "epochs": settings.epochs,
        "batch": settings.batch,
        "workers": settings.workers,
        "device": settings.device,
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "seed": settings.seed,
        "deterministic": True,
        "cache": settings.cache or False,
        "patience": settings.patience,
        "plots": settings.plots,
        "verbose": True,
    }


def identity_batchnorms(model: Any) -> list[Any]:
    """BatchNorm layers that do nothing but add a bias (mean 0, var 1 - eps, weight 1).

    The COCO checkpoints in ../shared were rebuilt from an int8 ONNX export whose convolutions had
    BatchNorm folded in; the rebuild keeps each conv bias in such an identity BatchNorm. In eval
    mode that is exact, but in train mode BatchNorm normalises by the batch's statistics, which
    rescales every channel and scrambles the pretrained network in the first steps (measured: after
    one epoch car AP50 on cn-garbage val fell from 0.79 to 0.07).
    """
    import torch

    found = []
    for module in model.modules():
        if (
            isinstance(module, torch.nn.BatchNorm2d)
            and module.running_mean is not None
            and module.running_var is not None
        ):
            mean, var = module.running_mean.float(), module.running_var.float()
            if (
                torch.allclose(mean, torch.zeros_like(mean))
                and torch.allclose(var + module.eps, torch.ones_like(var), atol=1e-4)
                and torch.allclose(module.weight.float(), torch.ones_like(mean))
            ):
                found.append(module)
    return found


def calibrate_batchnorms(
    base: str | os.PathLike[str], images: list[Path], out: str | os.PathLike[str], *, imgsz: int = 416
) -> Path:
    """Write a copy of base whose identity BatchNorms carry their real input statistics.

    For each identity BatchNorm (y = x + b) the mean m and variance v of its input over images are
    measured, then running stats := (m, v), weight := sqrt(v + eps), bias := b + m. In eval mode the
    layer still computes exactly x + b; in train mode, with batch statistics close to (m, v), it
    computes nearly the same, so fine-tuning starts from the pretrained network instead of a
    rescaled one. images: photos like the training set's (deterministic order), letterboxed to imgsz.
    """
    import cv2
    import numpy as np
    import torch

    _import_verbose()
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.torch_utils import torch_load

    source = _check_file(Path(base), "base weights")
    ckpt = torch_load(source, map_location="cpu")
    model = (ckpt.get("ema") or ckpt["model"]).float().eval()
    layers = identity_batchnorms(model)
    if not layers:
        raise TrainingError(f"{source}: no identity BatchNorm layers, nothing to calibrate")
    sums = {id(m): torch.zeros(m.num_features, dtype=torch.float64) for m in layers}
    squares = {id(m): torch.zeros(m.num_features, dtype=torch.float64) for m in layers}
    counts = {id(m): 0 for m in layers}

    def hook(module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
        x = inputs[0].detach().double()
        sums[id(module)] += x.sum(dim=(0, 2, 3))
        squares[id(module)] += (x * x).sum(dim=(0, 2, 3))
        counts[id(module)] += x.numel() // x.shape[1]

    handles = [m.register_forward_hook(hook) for m in layers]
    letterbox = LetterBox((imgsz, imgsz), auto=False)
    try:
        with torch.no_grad():
            for image in images:
                bgr = cv2.imread(str(image))
                if bgr is None:
                    raise TrainingError(f"cannot read image {image}")
                boxed: Any = letterbox(image=bgr)
                rgb = boxed[:, :, ::-1]
                x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for m in layers:
            n = counts[id(m)]
            mean = sums[id(m)] / n
            var = (squares[id(m)] / n - mean * mean).clamp(min=1e-6)
            m.running_mean.copy_(mean.float())
            m.running_var.copy_(var.float())
            m.bias.add_(mean.float())
            m.weight.copy_(torch.sqrt(var + m.eps).float())
    ckpt["model"] = model.half()
    ckpt.pop("ema", None)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, target)
    log.info(
        "calibrated %d BatchNorm layers of %s on %d images -> %s", len(layers), source, len(images), target
    )
    return target


def last_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    last = Path(run_dir) / "weights" / "last.pt"
    if not last.is_file():
        raise TrainingError(f"no checkpoint to resume from: {last}")
    return last.resolve()


def resume(run_dir: str | os.PathLike[str], *, workers: int | None = None, epochs: int | None = None) -> Path:
    """Continue an interrupted run from its last.pt (epoch, optimizer, schedule and EMA restored).

    epochs: change the run's planned length first (ultralytics would keep the checkpoint's). The
    learning-rate schedule and the last mosaic-free epochs follow the new length from here on.
    """
    last = last_checkpoint(run_dir)
    ckpt = read_checkpoint(last)
    if ckpt is None:
        raise TrainingError(f"{last} is truncated (the run was stopped while saving it): start a new run")
    if ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) < 0:
        # ultralytics strips a run's checkpoints when it ends (no optimizer state, epoch -1); resuming
        # one falls back to its default dataset and tries a download
        raise TrainingError(
            f"{Path(run_dir).resolve().name} has finished (its checkpoints are stripped for shipping): to "
            "train more, start a new run from its weights: --base <run>/weights/best.pt --name <new name>"
        )
    _set_aside_truncated_best(Path(run_dir) / "weights" / "best.pt")
    if epochs is not None:
        set_planned_epochs(last, ckpt, epochs)
    _import_verbose()
    from ultralytics import YOLO

    log.info("resuming %s", last)
    overrides: dict[str, Any] = {"resume": True}
    if workers is not None:
        overrides["workers"] = workers
    distill_file = Path(run_dir) / DISTILL_FILE
    logit_teacher = json.loads(distill_file.read_text()) if distill_file.is_file() else None
    YOLO(str(last), task="detect").train(trainer=trainer_class(logit_teacher), **overrides)
    return Path(run_dir).resolve()


def read_checkpoint(checkpoint: Path) -> dict[str, Any] | None:
    """A training checkpoint's contents; None when it is missing or cut short (written in place by
    ultralytics, so a kill while saving leaves a truncated file)."""
    import torch

    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, OSError, ValueError, pickle.UnpicklingError):
        return None
    return ckpt if isinstance(ckpt, dict) else None


def _set_aside_truncated_best(best: Path) -> None:
    """ultralytics writes best.pt in place after last.pt: a run killed in between leaves it cut short,
    and the resumed run would fail at its very end, validating it. Keep it aside instead; the run
    writes a new best.pt when an epoch beats the best fitness so far (shipping falls back to last.pt)."""
    if best.is_file() and read_checkpoint(best) is None:
        aside = best.with_name("best.pt.truncated")
        best.replace(aside)
        log.warning("%s is truncated (the run was stopped while saving it): moved to %s", best, aside)


def set_planned_epochs(checkpoint: Path, ckpt: dict[str, Any], epochs: int) -> None:
    """Rewrite the planned epochs in a (not running) run's checkpoint file, atomically; ckpt is its
    contents, already read (`read_checkpoint`)."""
    import torch

    done = int(ckpt.get("epoch", -1)) + 1
    if epochs <= done:
        raise TrainingError(f"{checkpoint}: {done} epochs are done already; --epochs must be more than that")
    old = ckpt["train_args"]["epochs"]
    if old == epochs:
        return
    ckpt["train_args"]["epochs"] = epochs
    tmp = checkpoint.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(checkpoint)
    log.info("%s: planned epochs %d -> %d (%d done)", checkpoint, old, epochs, done)


def run_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Where a run stands: epochs done and planned, from its last.pt (without loading the model)."""
    last = last_checkpoint(run_dir)
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    args = ckpt.get("train_args", {})
    return {"epoch_done": int(ckpt.get("epoch", -1)) + 1, "epochs": int(args.get("epochs", 0)), "args": args}


def export_weights(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write a run's checkpoint as shippable weights: EMA model, fp16, no optimizer state.

    The weights are made in a temporary file beside out, read back (a detector must be in them) and
    measured (at most MAX_SHIPPED_BYTES) before they replace out: a checkpoint that is not one, weights
    too big to ship or a failed write leave out as it was, with a TrainingError naming why."""
    source = _check_file(Path(checkpoint), "checkpoint")
    if not _has_detector(read_checkpoint(source)):
        raise TrainingError(f"{source}: not an ultralytics detector checkpoint (damaged, or another file)")
    target = Path(out)
    if target.is_dir():
        raise TrainingError(f"{target}: a folder, not a .pt file to write the weights to")
    from detect.backends import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.torch_utils import strip_optimizer

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # made as any new file (the umask's mode)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("wb").close()  # a place no file can be made is named here, in plain words
        try:
            stripped = strip_optimizer(str(source), str(tmp))
        except RuntimeError as exc:  # torch's writer: a full disk, a file-size limit
            raise TrainingError(f"cannot write {target}: {exc}") from None
        if not stripped or not _has_detector(read_checkpoint(tmp)):
            raise TrainingError(f"{source}: stripping it gave no detector; {target} left as it was")
        size = tmp.stat().st_size
        if size > MAX_SHIPPED_BYTES:
            raise TrainingError(
                f"{source}: {size / 1e6:.1f} MB stripped, over the {MAX_SHIPPED_BYTES / 1e6:.0f} MB limit; "
                f"{target} left as it was"
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise TrainingError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%.1f MB) from %s", target, size / 1e6, source)
    return target


def _has_detector(ckpt: dict[str, Any] | None) -> bool:
    return ckpt is not None and hasattr(ckpt.get("ema") or ckpt.get("model"), "names")


def pseudo_labels_to_add(
    pseudo: Sequence[LabelBox],
    operator: Sequence[LabelBox],
    rejected: Sequence[LabelBox],
    *,
    iou: float = PSEUDO_DROP_IOU,
) -> list[LabelBox]:
    """The pseudo-labels of a review frame that may be added to its operators' labels: those whose IoU
    with every operator box (of any class: the operators spoke about that object) and every rejected
    box (the operators said nothing is there) is below iou. Boxes are YOLO-normalised; IoU does not
    change when x and y are scaled apart, so it is the same as in pixels."""
    from detect.model.evaluation import box_iou

    if not pseudo:
        return []
    spoken = [*operator, *rejected]
    if not spoken:
        return list(pseudo)
    overlap = box_iou(_xyxy(pseudo), _xyxy(spoken)).max(axis=1)
    return [box for box, best in zip(pseudo, overlap, strict=True) if best < iou]


def _xyxy(boxes: Sequence[LabelBox]) -> Any:
    import numpy as np

    return np.array(
        [[b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2] for b in boxes], dtype=float
    )


def _split_entries(data: Path, split: str) -> list[str]:
    """A data.yaml's entries for a split as absolute paths (folders or image lists)."""
    import yaml

    spec = yaml.safe_load(data.read_text(encoding="utf-8")) or {}
    root = data.parent
    if spec.get("path"):
        root = (data.parent / spec["path"]).resolve()
    entries = spec.get(split) or []
    return [str((root / e).resolve()) for e in (entries if isinstance(entries, list) else [entries])]


def _review_names(review_dir: Path, data: Path, names: list[str]) -> list[str]:
    """The classes a review export adds after the recipe's (e.g. a `stall` class operators drew that the
    model does not have yet: `from-reviews --new-class`); TrainingError unless the export's classes
    start with the recipe's, in the same order."""
    from detect.model.dataset import DatasetError, source_names

    try:
        theirs = source_names(review_dir)
    except DatasetError as exc:
        raise TrainingError(f"--add-dataset {review_dir}: {exc}") from None
    if theirs[: len(names)] == names:
        return theirs[len(names) :]
    where = next((i for i, (a, b) in enumerate(zip(theirs, names, strict=False)) if a != b), None)
    detail = (
        f"class {where} is '{theirs[where]}' there, '{names[where]}' in {data}"
        if where is not None
        else f"{len(theirs)} classes there, {len(names)} in {data}"
    )
    raise TrainingError(
        f"--add-dataset {review_dir}: its classes do not match the training set's ({detail}); export it with "
        "`gridpatrol dataset from-reviews --recipe` of the recipe that built --data"
    )


def merge_review_sets(
    data: Path,
    review_dirs: Sequence[Path],
    out_dir: Path,
    *,
    pseudo_model: Path,
    cache_root: Path,
    pseudo_imgsz: int = SHIPPED_IMGSZ,
    pseudo_conf: float | None = None,
) -> MergeSummary:
    """One training set of data (a built recipe's data.yaml) and review exports (`gridpatrol dataset
    from-reviews`), written to out_dir (emptied first):

        <out_dir>/data.yaml                 train/val: the review folders below, then data's own entries
        <out_dir>/reviews-<i>/images/<split>/<name>  -> symlink to the export's frame
        <out_dir>/reviews-<i>/labels/<split>/<name>.txt  the operators' boxes, then the pseudo-labels kept
        <out_dir>/merge.json                what was merged and the counts

    A review frame is labelled only where operators spoke (confirmed, corrected, added boxes); its
    other objects would be taught as background. So every review frame is pseudo-labelled by
    pseudo_model (the site's current model, every class it shares with the set by name, at
    pseudo_conf: the recipe's pseudo-label threshold from data's manifest.json, else
    DEFAULT_PSEUDO_CONF) and a pseudo-label is added unless its IoU with an operator's box (any class)
    or a box the operators rejected (reviews.json) is PSEUDO_DROP_IOU or more. Predictions are cached
    like the recipe's (detect.model.dataset). Review train frames go to train, review val frames to val.
    """
    import yaml

    from detect.backends import sha256_file
    from detect.model.dataset import (
        DatasetError,
        PseudoLabelSpec,
        _pseudo_predictions,
        pseudo_boxes,
        read_yolo_labels,
    )
    from detect.model.evaluation import EvaluationError, load_data
    from detect.model.from_reviews import MANIFEST, SPLITS

    data = _check_file(data, "dataset yaml")
    pseudo_model = _check_file(pseudo_model, "pseudo-label model")
    try:
        names, _ = load_data(data, "train")
    except EvaluationError as exc:
        raise TrainingError(str(exc)) from None
    class_ids = {n: i for i, n in enumerate(names)}
    if pseudo_conf is None:
        manifest = data.parent / "manifest.json"
        recipe_pseudo = json.loads(manifest.read_text()).get("pseudo_labels") if manifest.is_file() else None
        pseudo_conf = float(recipe_pseudo["conf"]) if recipe_pseudo else DEFAULT_PSEUDO_CONF
    if not 0.0 < pseudo_conf < 1.0:
        raise TrainingError(f"pseudo-label threshold must be between 0 and 1, got {pseudo_conf}")

    frames = []  # (source index, split, image, operator boxes, rejected boxes)
    added_classes: list[str] = []  # classes the exports add after the recipe's, the longest list
    for i, review_dir in enumerate(Path(d).resolve() for d in review_dirs):
        extra = _review_names(review_dir, data, names)
        shorter, longer = sorted((extra, added_classes), key=len)
        if longer[: len(shorter)] != shorter:
            raise TrainingError(
                f"--add-dataset {review_dir}: it adds the classes {extra}, an earlier export {added_classes};"
                " export both with the same --new-class list"
            )
        added_classes = longer
        listing = review_dir / MANIFEST
        if not listing.is_file():
            raise TrainingError(f"--add-dataset {review_dir}: no {MANIFEST} (not a from-reviews export)")
        identity = dict(enumerate(range(len(names) + len(extra))))
        for entry in _review_entries(listing):
            image = review_dir / entry["image"]
            if entry["split"] not in SPLITS or not image.is_file():
                raise TrainingError(f"{listing}: image {entry['image']} missing or split unknown")
            try:
                operator = read_yolo_labels(
                    review_dir / "labels" / entry["split"] / f"{image.stem}.txt", identity
                )
            except DatasetError as exc:
                raise TrainingError(str(exc)) from None
            rejected = [_label_box(line, listing) for line in entry.get("rejected", [])]
            frames.append((i, entry["split"], image, operator, rejected))
    if not frames:
        raise TrainingError(f"--add-dataset: no frames in {', '.join(str(d) for d in review_dirs)}")

    spec = PseudoLabelSpec(
        model=pseudo_model, conf=pseudo_conf, imgsz=pseudo_imgsz, classes={n: n for n in names}
    )
    try:
        predictions = _pseudo_predictions(
            [f[2] for f in frames], pseudo_model, sha256_file(pseudo_model), spec, cache_root
        )
    except DatasetError as exc:
        raise TrainingError(str(exc)) from None

    if out_dir.exists():
        shutil.rmtree(out_dir)
    images: Counter[str] = Counter()
    added = dropped = operator_boxes = 0
    folders: dict[str, list[str]] = {split: [] for split in SPLITS}
    for i, split, image, operator, rejected in frames:
        image_dir = out_dir / f"reviews-{i}" / "images" / split
        label_dir = out_dir / f"reviews-{i}" / "labels" / split
        if not image_dir.is_dir():
            image_dir.mkdir(parents=True)
            label_dir.mkdir(parents=True)
            folders[split].append(str(image_dir))
        pseudo = pseudo_boxes(predictions[image], spec.classes, class_ids, pseudo_conf)
        kept = pseudo_labels_to_add(pseudo, operator, rejected)
        (image_dir / image.name).symlink_to(image)
        (label_dir / f"{image.stem}.txt").write_text(
            "".join(f"{b.line()}\n" for b in [*operator, *kept]), encoding="utf-8"
        )
        images[split] += 1
        operator_boxes += len(operator)
        added += len(kept)
        dropped += len(pseudo) - len(kept)

    merged: dict[str, Any] = {split: folders[split] + _split_entries(data, split) for split in SPLITS}
    merged["names"] = dict(enumerate([*names, *added_classes]))
    header = (
        f"# Written by `gridpatrol train --add-dataset`: {data} with review exports\n"
        f"# {', '.join(str(Path(d).resolve()) for d in review_dirs)}; review frames pseudo-labelled by\n"
        f"# {pseudo_model.name} at {pseudo_conf:g}, none kept over an operator's or a rejected box.\n"
    )
    out_yaml = out_dir / "data.yaml"
    out_yaml.write_text(
        header + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    summary = MergeSummary(out_yaml, dict(images), operator_boxes, added, dropped)
    (out_dir / "merge.json").write_text(
        json.dumps(
            {
                "data": str(data),
                "reviews": [str(Path(d).resolve()) for d in review_dirs],
                "pseudo_model": str(pseudo_model),
                "pseudo_model_sha256": sha256_file(pseudo_model),
                "pseudo_conf": pseudo_conf,
                "pseudo_imgsz": pseudo_imgsz,
                "drop_iou": PSEUDO_DROP_IOU,
                "images": dict(images),
                "operator_boxes": operator_boxes,
                "pseudo_added": added,
                "pseudo_dropped": dropped,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    log.info("%s", summary.format())
    return summary


def _review_entries(listing: Path) -> list[dict[str, Any]]:
    """The images of a review export's reviews.json (detect.model.from_reviews), each a mapping with an
    "image" path and a "split"; TrainingError naming the file and the entry when it is not one."""
    try:
        manifest = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainingError(f"{listing}: not a review export's JSON ({exc})") from None
    entries = manifest.get("images", []) if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise TrainingError(f"{listing}: expected an object with an 'images' list (a from-reviews export)")
    for number, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("image"), str)
            and isinstance(entry.get("split"), str)
            and isinstance(entry.get("rejected", []), list)
            and all(isinstance(line, str) for line in entry.get("rejected", []))
        ):
            raise TrainingError(
                f"{listing}: images[{number}]: expected an object with 'image' and 'split' strings "
                f"(and 'rejected' box lines), got {json.dumps(entry)[:80]}"
            )
    return entries


def _label_box(line: str, listing: Path) -> LabelBox:
    """A "class cx cy w h" line of reviews.json (a rejected box's class may be -1: not in the list)."""
    from detect.model.dataset import LabelBox

    try:
        cls, x, y, w, h = line.split()
        return LabelBox(int(cls), float(x), float(y), float(w), float(h))
    except ValueError:
        raise TrainingError(f"{listing}: not a 'class cx cy w h' box: {line!r}") from None
