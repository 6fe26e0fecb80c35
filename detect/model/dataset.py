"""Building the training set of the shipped detector from a recipe (datasets/*.yaml).

A recipe names the class list, the labelled sources (YOLO-format folders) with a remap of their
class names onto ours, and a COCO model that pseudo-labels the COCO kinds the sources leave
unlabelled (cn-garbage labels only garbage, so its cars and people would otherwise be taught as
background).

The build is deterministic: sources and files are walked in sorted order, label lines are written
in a fixed order with fixed precision, and nothing in the output carries a time. Source photos are
symlinked, never copied; only close-ups (the recipe's `close_ups`) are written, as JPEG crops of
them. Pseudo-labels are cached on disk keyed by the image's sha256, the model's sha256, the
inference size and the score floor the raw predictions were kept at; the recipe's threshold is
applied to the cached predictions, so changing the threshold or rebuilding does not run the model
again.

Output layout (a folder ultralytics can train from)::

    <out>/data.yaml            names, train: images/train, val: images/val (no `path:` key)
    <out>/images/<split>/<source>__<name>.jpg  -> symlink to the source photo
    <out>/labels/<split>/<source>__<name>.txt  class x_centre y_centre width height (normalised)
    <out>/images/train/<source>__<name>__close-<class>.jpg  a close-up cut from that photo, and its labels
    <out>/manifest.json        recipe, model sha256, counts per class and split, threshold sweep
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detect import SetupError
from detect.backends import sha256_file
from detect.config import ImageSize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Raw predictions are cached down to this score so that any threshold at or above it can be applied later.
CACHE_SCORE_FLOOR = 0.05
# Score thresholds the manifest reports pseudo-label counts for (how the recipe's threshold was chosen).
SWEEP_THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
# A split of the build is a folder name under images/ and labels/: a plain identifier, never a path.
SPLIT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class DatasetError(SetupError):
    """A recipe or source that cannot be built; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=BaseModel)


class SourceSpec(_Strict):
    """A labelled YOLO-format dataset: <root>/images/<split>, <root>/labels/<split>, <root>/data.yaml."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="prefix of its files in the build")
    root: Path = Field(description="relative to the recipe file")
    splits: dict[Annotated[str, Field(pattern=SPLIT_NAME)], str] = Field(
        min_length=1,
        description="our split (train, val, test or another plain name) -> the source's split folder",
    )
    remap: dict[str, str] = Field(description="source class name -> our class name; others dropped")
    pseudo_label: bool = Field(
        default=True,
        description="pseudo-label this source's images (false: its own labels already cover those kinds)",
    )


class PseudoLabelSpec(_Strict):
    """A detector that labels the classes the sources leave unlabelled."""

    model: Path = Field(description="weights (.pt), relative to the recipe file")
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="checked when given")
    conf: float = Field(gt=CACHE_SCORE_FLOOR - 1e-9, lt=1.0, description="minimum score of a pseudo-label")
    imgsz: ImageSize = 640
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU (models with NMS)")
    classes: dict[str, str] = Field(min_length=1, description="model class name -> our class name")


class RepeatFactorSpec(_Strict):
    """Repeat-factor sampling of the train split (Gupta et al., LVIS, 2019): a class in a fraction f
    of the train images gets r = max(1, sqrt(threshold / f)); an image is listed round(max r of its
    classes) times. Rare classes are then seen more often without touching the common ones."""

    threshold: float = Field(
        gt=0.0, le=1.0, description="classes in fewer train images than this share repeat"
    )


class CloseUpSpec(_Strict):
    """Extra train images, each zoomed in on one object of the photo it is cut from.

    The source photos show vehicles mostly small and far away; a street camera or a dashcam also sees
    them large and close. For each train photo, the largest box of `classes` whose area is between
    min_area and max_area of the photo gets one close-up: a window of the photo's aspect ratio, centred
    on the box (moved inside the photo where needed), sized so that the box covers `fill` of it. Every
    label of the photo is carried into the window; a box cut by the window's edge keeps its visible
    part when at least `min_visible` of it is inside (ultralytics' own rule for its random crops).
    """

    classes: list[str] = Field(min_length=1, description="the kinds to zoom in on")
    min_area: float = Field(gt=0.0, lt=1.0, description="smallest box, as a share of the photo's area")
    max_area: float = Field(gt=0.0, le=1.0, description="largest box, as a share of the photo's area")
    fill: float = Field(gt=0.0, lt=1.0, description="share of the close-up's area the box covers")
    min_visible: float = Field(0.1, gt=0.0, le=1.0, description="of a box cut by the window's edge")
    min_side_px: int = Field(96, ge=16, description="close-ups narrower or lower than this are skipped")

    @model_validator(mode="after")
    def _check_areas(self) -> CloseUpSpec:
        if self.min_area >= self.max_area:
            raise ValueError("min_area must be below max_area")
        if self.max_area >= self.fill:
            raise ValueError("max_area must be below fill (a close-up must zoom in)")
        return self


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    classes: list[str] = Field(min_length=1, description="the trained model's classes, in id order")
    sources: list[SourceSpec] = Field(min_length=1)
    pseudo_labels: PseudoLabelSpec | None = None
    repeat_factor: RepeatFactorSpec | None = None
    close_ups: CloseUpSpec | None = None

    @model_validator(mode="after")
    def _check_names(self) -> Recipe:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes: a class is named twice")
        known = set(self.classes)
        for i, source in enumerate(self.sources):
            for src, dst in source.remap.items():
                if dst not in known:
                    raise ValueError(f"sources.{i}.remap.{src}: '{dst}' is not in classes")
        if len({s.name for s in self.sources}) != len(self.sources):
            raise ValueError("sources: two sources share a name")
        if self.pseudo_labels is not None:
            for src, dst in self.pseudo_labels.classes.items():
                if dst not in known:
                    raise ValueError(f"pseudo_labels.classes.{src}: '{dst}' is not in classes")
            for i, source in enumerate(self.sources):
                if not source.pseudo_label:
                    continue
                both = set(source.remap.values()) & set(self.pseudo_labels.classes.values())
                if both:
                    raise ValueError(
                        f"pseudo_labels.classes: {sorted(both)} are labelled by a source already"
                        f" (sources.{i}; set its pseudo_label: false if its labels cover them)"
                    )
        if self.close_ups is not None:
            unknown = [c for c in self.close_ups.classes if c not in known]
            if unknown:
                raise ValueError(f"close_ups.classes: {unknown} are not in classes")
        return self


@dataclass(frozen=True, slots=True)
class LoadedRecipe:
    """A validated recipe with its relative paths resolved against the recipe file's folder."""

    recipe: Recipe
    path: Path
    sha256: str

    def source_root(self, source: SourceSpec) -> Path:
        return (self.path.parent / source.root).resolve()

    def pseudo_model(self) -> Path | None:
        if self.recipe.pseudo_labels is None:
            return None
        return (self.path.parent / self.recipe.pseudo_labels.model).resolve()


@dataclass(frozen=True, slots=True)
class LabelBox:
    """One box in YOLO form: class id, centre x, centre y, width, height (all normalised to 0..1)."""

    cls: int
    x: float
    y: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.cls} {self.x:.6f} {self.y:.6f} {self.w:.6f} {self.h:.6f}"


@dataclass(frozen=True, slots=True)
class Prediction:
    """A cached raw prediction: the model's class name, score, normalised centre x, y, width, height."""

    name: str
    score: float
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class BuildResult:
    out_dir: Path
    data_yaml: Path
    manifest: dict[str, Any]


def load_recipe(path: str | os.PathLike[str]) -> LoadedRecipe:
    """Read and validate a recipe; DatasetError names the file and the key on any problem."""
    recipe, raw = load_yaml_model(Path(path), Recipe, "dataset recipe")
    return LoadedRecipe(recipe=recipe, path=Path(path).resolve(), sha256=hashlib.sha256(raw).hexdigest())


def load_yaml_model(path: Path, model: type[_M], what: str) -> tuple[_M, bytes]:
    """A YAML file validated as `model`, with its raw bytes; DatasetError names the file and the key."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(data), raw
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise DatasetError(f"{path}: {problems}") from exc


def source_names(root: Path) -> list[str]:
    """The class names of a YOLO-format source, in id order, from its data.yaml."""
    from detect.model.evaluation import read_dataset_yaml

    data_yaml = root / "data.yaml"
    if not data_yaml.is_file():
        raise DatasetError(f"source has no data.yaml: {data_yaml}")
    return read_dataset_yaml(data_yaml, DatasetError)[1]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (the order every build walks them in)."""
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_problem(path: Path) -> str | None:
    """Why ultralytics could not read an image file (None when it can): missing, not a file, not
    decodable, or cut short. Checked as it reads a listed image: OpenCV, then Pillow, which loads the
    whole image (a truncated JPEG that OpenCV decodes in part fails there)."""
    import cv2
    from PIL import Image

    if not path.is_file():
        return "not a file" if path.exists() else "no such file"
    if cv2.imread(str(path)) is None:
        return "not a decodable image"
    try:
        with Image.open(path) as image:
            image.load()
    except OSError as exc:
        return f"cannot be decoded ({exc})"
    return None


def read_yolo_labels(path: Path, class_map: dict[int, int]) -> list[LabelBox]:
    """Boxes of one YOLO label file, with source class ids mapped through class_map (others dropped).

    A missing file means no boxes (YOLO's convention for a background image).
    """
    if not path.exists():
        return []
    boxes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetError(f"{path}:{number}: expected 'class x y w h', got {line!r}")
        try:
            src = int(parts[0])
            x, y, w, h = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not numbers: {line!r}") from exc
        if src in class_map:
            boxes.append(LabelBox(class_map[src], x, y, w, h))
    return boxes


class PseudoLabelCache:
    """Raw predictions of one model per image, on disk, keyed by image sha256.

    The folder name holds the model's sha256, the inference size and the score floor, so a
    different model or size never reads another's predictions.
    """

    def __init__(self, root: Path, model_sha256: str, imgsz: int, floor: float = CACHE_SCORE_FLOOR) -> None:
        self.folder = root / f"{model_sha256[:16]}-imgsz{imgsz}-floor{floor:g}"
        self.floor = floor

    def _path(self, image_sha256: str) -> Path:
        return self.folder / image_sha256[:2] / f"{image_sha256}.json"

    def get(self, image_sha256: str) -> list[Prediction] | None:
        path = self._path(image_sha256)
        if not path.exists():
            return None
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [Prediction(*row) for row in rows]

    def class_names(self) -> list[str] | None:
        """The model's class names, when an earlier build stored them (put_class_names)."""
        path = self.folder / "names.json"
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    def put_class_names(self, names: Sequence[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "names.json.tmp"
        tmp.write_text(json.dumps(list(names)), encoding="utf-8")
        tmp.replace(self.folder / "names.json")

    def put(self, image_sha256: str, predictions: Sequence[Prediction]) -> None:
        path = self._path(image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [[p.name, p.score, p.x, p.y, p.w, p.h] for p in predictions]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        tmp.replace(path)


def model_class_names(model_path: Path) -> list[str]:
    """The class names of the pseudo-labelling model, in id order."""
    from detect.yolo import ModelError, load_yolo

    try:
        model = load_yolo(model_path)
    except ModelError as exc:
        raise DatasetError(f"pseudo-label model: {exc}") from None
    return [model.names[i] for i in sorted(model.names)]


def predict_raw(
    model_path: Path, images: Sequence[Path], *, imgsz: int, iou: float, floor: float, batch: int = 8
) -> Iterator[list[Prediction]]:
    """Run the pseudo-labelling model on images (in order), yielding each image's predictions."""
    from detect.yolo import ModelError, load_yolo

    try:
        model = load_yolo(model_path)
    except ModelError as exc:
        raise DatasetError(f"pseudo-label model: {exc}") from None
    for start in range(0, len(images), batch):
        chunk = [str(p) for p in images[start : start + batch]]
        for boxes in model.predict(chunk, imgsz=imgsz, conf=floor, iou=iou, device="cpu"):
            yield [
                Prediction(
                    model.names[int(cls)],
                    round(float(score), 4),
                    *(round(float(v), 6) for v in xywhn),
                )
                for xywhn, score, cls in zip(boxes.xywhn, boxes.scores, boxes.cls, strict=True)
            ]


def _progress(iterable: Iterable[Any], **kwargs: Any) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def _link(target: Path, link: Path) -> None:
    """A symlink link -> target (absolute), replacing whatever is at link."""
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


@dataclass(frozen=True, slots=True)
class _Item:
    split: str
    source: str
    image: Path
    label: Path
    out_stem: str


def _items(loaded: LoadedRecipe) -> list[_Item]:
    items = []
    for split in sorted({s for source in loaded.recipe.sources for s in source.splits}):
        for source in loaded.recipe.sources:
            if split not in source.splits:
                continue
            root = loaded.source_root(source)
            folder = source.splits[split]
            for image in list_images(root / "images" / folder):
                label = root / "labels" / folder / f"{image.stem}.txt"
                items.append(_Item(split, source.name, image, label, f"{source.name}__{image.stem}"))
    return items


def build_dataset(
    recipe_path: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    *,
    cache_root: str | os.PathLike[str],
    limit: int | None = None,
) -> BuildResult:
    """Build the dataset a recipe describes into out_root/<recipe name>/.

    The build is written into a hidden sibling folder and put in place only once whole: a failed
    build leaves an earlier one as it was. An existing out_root/<recipe name>/ is replaced only when
    it is empty or an earlier build (its manifest.json); anything else there is refused.

    limit: at most this many images per split and source (for tests and quick looks).
    """
    loaded = load_recipe(recipe_path)
    recipe = loaded.recipe
    class_ids = {name: i for i, name in enumerate(recipe.classes)}
    out_dir = Path(out_root).resolve() / recipe.name
    _check_replaceable(out_dir)

    class_maps: dict[str, dict[int, int]] = {}
    for source in recipe.sources:
        root = loaded.source_root(source)
        names = source_names(root)
        unknown = sorted(set(source.remap) - set(names))
        if unknown:
            raise DatasetError(f"{loaded.path}: source {source.name} has no class {unknown} ({root})")
        class_maps[source.name] = {
            i: class_ids[source.remap[n]] for i, n in enumerate(names) if n in source.remap
        }

    items = _items(loaded)
    if limit is not None:
        kept: list[_Item] = []
        seen: Counter[tuple[str, str]] = Counter()
        for item in items:
            if seen[(item.split, item.source)] < limit:
                kept.append(item)
                seen[(item.split, item.source)] += 1
        items = kept
    log.info("%s: %d images from %d sources", recipe.name, len(items), len(recipe.sources))

    predictions: dict[Path, list[Prediction]] = {}
    pseudo = recipe.pseudo_labels
    model_sha = None
    model_path = loaded.pseudo_model()
    if pseudo is not None and model_path is not None:
        if not model_path.is_file():
            raise DatasetError(f"{loaded.path}: pseudo-label model not found: {model_path}")
        model_sha = sha256_file(model_path)
        if pseudo.model_sha256 and pseudo.model_sha256 != model_sha:
            raise DatasetError(
                f"{loaded.path}: pseudo_labels.model_sha256 does not match {model_path} (it is {model_sha})"
            )
        cache = PseudoLabelCache(Path(cache_root) / "pseudo-labels", model_sha, pseudo.imgsz)
        model_names = cache.class_names()
        if model_names is None:
            model_names = model_class_names(model_path)
            cache.put_class_names(model_names)
        unknown = sorted(set(pseudo.classes) - set(model_names))
        if unknown:
            raise DatasetError(
                f"{loaded.path}: pseudo_labels.classes: the model {model_path.name} has no class "
                f"{', '.join(map(repr, unknown))}"
            )
        unlabelled = {s.name for s in recipe.sources if s.pseudo_label}
        predictions = _pseudo_predictions(
            [it.image for it in items if it.source in unlabelled],
            model_path,
            model_sha,
            pseudo,
            Path(cache_root) / "pseudo-labels",
        )

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.building-", dir=out_dir.parent))
    except OSError as exc:
        reason = exc.strerror or exc
        raise DatasetError(f"{out_dir.parent}: cannot write the build there ({reason})") from None
    try:
        manifest = _write_build(loaded, items, class_maps, predictions, model_sha, limit, staging)
        _swap_in(staging, out_dir)
    except OSError as exc:
        raise DatasetError(f"{out_dir}: cannot write the build ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when swapped in
    data_yaml = out_dir / "data.yaml"
    log.info("%s: wrote %s", recipe.name, data_yaml)
    return BuildResult(out_dir=out_dir, data_yaml=data_yaml, manifest=manifest)


def _write_build(
    loaded: LoadedRecipe,
    items: Sequence[_Item],
    class_maps: dict[str, dict[int, int]],
    predictions: dict[Path, list[Prediction]],
    model_sha: str | None,
    limit: int | None,
    work: Path,
) -> dict[str, Any]:
    """Write the build into the empty folder work; its manifest."""
    recipe = loaded.recipe
    class_ids = {name: i for i, name in enumerate(recipe.classes)}
    pseudo = recipe.pseudo_labels
    model_path = loaded.pseudo_model()
    counts: dict[str, Counter[str]] = {}
    train_classes: list[tuple[str, set[int]]] = []  # (image file name, class ids) of the train split
    images_per_split: Counter[str] = Counter()
    sweep: dict[str, Counter[str]] = {f"{t:g}": Counter() for t in SWEEP_THRESHOLDS}
    close_ups: Counter[str] = Counter()  # close-up images written, by the kind zoomed in on
    for item in _progress(items, desc=f"writing {recipe.name}", unit="img"):
        image_dir = work / "images" / item.split
        label_dir = work / "labels" / item.split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        boxes = read_yolo_labels(item.label, class_maps[item.source])
        if pseudo is not None and item.image in predictions:
            preds = predictions[item.image]
            boxes += pseudo_boxes(preds, pseudo.classes, class_ids, pseudo.conf)
            for key, counter in sweep.items():
                for p in preds:
                    if p.name in pseudo.classes and p.score >= float(key):
                        counter[pseudo.classes[p.name]] += 1
        image_name = f"{item.out_stem}{item.image.suffix.lower()}"
        _link(item.image, image_dir / image_name)
        if item.split == "train":
            train_classes.append((image_name, {b.cls for b in boxes}))
        written = [(item.out_stem, boxes)]
        spec = recipe.close_ups if item.split == "train" else None
        target = close_up_target(boxes, spec, class_ids) if spec is not None else None
        if spec is not None and target is not None:
            stem = f"{item.out_stem}__close-{recipe.classes[target.cls].replace(' ', '-')}"
            crop = _write_close_up(item.image, boxes, target, spec, image_dir / f"{stem}.jpg")
            if crop is not None:
                written.append((stem, crop))
                train_classes.append((f"{stem}.jpg", {b.cls for b in crop}))
                close_ups[recipe.classes[target.cls]] += 1
        split_counts = counts.setdefault(item.split, Counter())
        for stem, stem_boxes in written:
            text = "".join(f"{b.line()}\n" for b in stem_boxes)
            (label_dir / f"{stem}.txt").write_text(text, encoding="utf-8")
            split_counts.update(recipe.classes[b.cls] for b in stem_boxes)
            images_per_split[item.split] += 1

    data_yaml = work / "data.yaml"
    splits = sorted(images_per_split)
    data: dict[str, Any] = {s: f"images/{s}" for s in splits}
    repeats: dict[str, Any] | None = None
    if recipe.repeat_factor is not None and train_classes:
        repeats = write_repeated_list(
            work / "train.txt", train_classes, recipe.classes, recipe.repeat_factor.threshold
        )
        data["train"] = "train.txt"
    data["names"] = dict(enumerate(recipe.classes))
    header = (
        f"# Built by `gridpatrol dataset build` from {loaded.path.name} (sha256 {loaded.sha256[:16]}).\n"
        "# No `path:` key: ultralytics resolves the splits relative to this file's folder.\n"
    )
    data_yaml.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    manifest: dict[str, Any] = {
        "name": recipe.name,
        "recipe": loaded.path.name,
        "recipe_sha256": loaded.sha256,
        "classes": list(recipe.classes),
        "limit_per_split_and_source": limit,
        "images": dict(sorted(images_per_split.items())),
        "boxes": {s: {c: counts.get(s, Counter())[c] for c in recipe.classes} for s in splits},
    }
    if recipe.close_ups is not None:
        manifest["close_ups"] = {
            "images": sum(close_ups.values()),
            "by_class": {c: close_ups[c] for c in recipe.close_ups.classes},
        }
    if repeats is not None:
        manifest["repeat_factor"] = repeats
    if pseudo is not None and model_path is not None:
        manifest["pseudo_labels"] = {
            "model": model_path.name,
            "model_sha256": model_sha,
            "conf": pseudo.conf,
            "imgsz": pseudo.imgsz,
            "boxes_by_threshold": {
                key: {c: counter[c] for c in recipe.classes if c in pseudo.classes.values()}
                for key, counter in sweep.items()
            },
        }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _is_our_build(folder: Path) -> bool:
    """Whether folder holds a build of ours: a manifest.json naming its recipe's sha256."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and "recipe_sha256" in manifest


def _check_replaceable(out_dir: Path) -> None:
    """DatasetError unless out_dir is absent, an empty folder, or an earlier build (replaced on success)."""
    if out_dir.is_symlink():
        raise DatasetError(f"{out_dir}: is a symbolic link, not replaced; name another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: exists and is not a folder; name another --out")
    try:
        foreign = out_dir.is_dir() and any(out_dir.iterdir()) and not _is_our_build(out_dir)
    except OSError as exc:
        raise DatasetError(f"{out_dir}: cannot read the folder ({exc.strerror or exc})") from None
    if foreign:
        raise DatasetError(
            f"{out_dir}: the folder is not empty and holds no earlier build (manifest.json); "
            "move it away or name another --out"
        )


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished build staging where out_dir is, the earlier build removed only once it is there."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    old = staging.with_name(staging.name.replace(".building-", ".old-"))
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except OSError:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def close_up_window(box: LabelBox, width: int, height: int, fill: float) -> tuple[int, int, int, int] | None:
    """The close-up of one box in a width x height photo: (x0, y0, x1, y1) in pixels, x1/y1 exclusive.

    The window has the photo's aspect ratio and an area of box area / fill, grown where needed so the
    whole box fits; it is centred on the box and moved inside the photo. None when such a window would
    not be smaller than the photo (no zoom to gain).
    """
    box_w, box_h = box.w * width, box.h * height
    aspect = width / height
    win_h = max((box_w * box_h / fill / aspect) ** 0.5, box_h, box_w / aspect)
    win_w = win_h * aspect
    if win_w >= width or win_h >= height:
        return None
    w, h = round(win_w), round(win_h)
    x0 = min(max(round(box.x * width - w / 2), 0), width - w)
    y0 = min(max(round(box.y * height - h / 2), 0), height - h)
    return x0, y0, x0 + w, y0 + h


def boxes_in_window(
    boxes: Iterable[LabelBox], window: tuple[int, int, int, int], width: int, height: int, min_visible: float
) -> list[LabelBox]:
    """Boxes of a width x height photo in the coordinates of a window of it (normalised to the window).

    A box cut by the window's edge is clipped to it and kept when at least min_visible of its area is
    inside; boxes outside are dropped.
    """
    x0, y0, x1, y1 = window
    win_w, win_h = x1 - x0, y1 - y0
    out = []
    for b in boxes:
        left, right = (b.x - b.w / 2) * width, (b.x + b.w / 2) * width
        top, bottom = (b.y - b.h / 2) * height, (b.y + b.h / 2) * height
        cl, cr = max(left, x0), min(right, x1)
        ct, cb = max(top, y0), min(bottom, y1)
        if cr <= cl or cb <= ct:
            continue
        area = (right - left) * (bottom - top)
        if area <= 0 or (cr - cl) * (cb - ct) < min_visible * area:
            continue
        out.append(
            LabelBox(
                b.cls,
                ((cl + cr) / 2 - x0) / win_w,
                ((ct + cb) / 2 - y0) / win_h,
                (cr - cl) / win_w,
                (cb - ct) / win_h,
            )
        )
    return out


def close_up_target(
    boxes: Sequence[LabelBox], spec: CloseUpSpec, class_ids: dict[str, int]
) -> LabelBox | None:
    """The box a photo's close-up zooms in on: the largest of spec.classes within spec's area bounds."""
    wanted = {class_ids[c] for c in spec.classes}
    candidates = [b for b in boxes if b.cls in wanted and spec.min_area <= b.w * b.h <= spec.max_area]
    return max(candidates, key=lambda b: (b.w * b.h, -b.cls, b.x, b.y), default=None)


def _write_close_up(
    image_path: Path, boxes: Sequence[LabelBox], target: LabelBox, spec: CloseUpSpec, out_image: Path
) -> list[LabelBox] | None:
    """Cut the close-up of target out of the photo into out_image (JPEG); its labels, or None when the
    window would gain no zoom or be under spec.min_side_px."""
    import cv2

    image = cv2.imread(str(image_path))
    if image is None:
        raise DatasetError(f"cannot read image: {image_path}")
    height, width = image.shape[:2]
    window = close_up_window(target, width, height, spec.fill)
    if window is None or min(window[2] - window[0], window[3] - window[1]) < spec.min_side_px:
        return None
    x0, y0, x1, y1 = window
    if not cv2.imwrite(str(out_image), image[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise DatasetError(f"cannot write {out_image}")
    return boxes_in_window(boxes, window, width, height, spec.min_visible)


def repeat_factors(
    image_classes: Sequence[tuple[str, set[int]]], class_names: Sequence[str], threshold: float
) -> tuple[dict[int, float], list[int]]:
    """Per class r = max(1, sqrt(threshold / f)) (f: share of images with the class); per image the
    number of times it is listed: round(max r of its classes), at least 1."""
    total = len(image_classes)
    having: Counter[int] = Counter(c for _, classes in image_classes for c in classes)
    factor = {
        c: max(1.0, (threshold / (having[c] / total)) ** 0.5) if having[c] else 1.0
        for c in range(len(class_names))
    }
    times = [
        max(1, int(max((factor[c] for c in classes), default=1.0) + 0.5)) for _, classes in image_classes
    ]
    return factor, times


def write_repeated_list(
    path: Path, image_classes: Sequence[tuple[str, set[int]]], class_names: Sequence[str], threshold: float
) -> dict[str, Any]:
    """train.txt for ultralytics: each train image ("./images/train/<name>", relative to the list) as
    many times as its repeat factor says; returns what the manifest records about it."""
    factor, times = repeat_factors(image_classes, class_names, threshold)
    lines = [f"./images/train/{name}\n" * n for (name, _), n in zip(image_classes, times, strict=True)]
    path.write_text("".join(lines), encoding="utf-8")
    return {
        "threshold": threshold,
        "class_factor": {class_names[c]: round(f, 3) for c, f in factor.items()},
        "images": len(image_classes),
        "listed": sum(times),
    }


def pseudo_boxes(
    predictions: Iterable[Prediction], classes: dict[str, str], class_ids: dict[str, int], conf: float
) -> list[LabelBox]:
    """The predictions at or above conf of the classes the recipe maps, as boxes in a fixed order."""
    boxes = [
        LabelBox(class_ids[classes[p.name]], p.x, p.y, p.w, p.h)
        for p in predictions
        if p.name in classes and p.score >= conf
    ]
    return sorted(boxes, key=lambda b: (b.cls, b.x, b.y, b.w, b.h))


def _pseudo_predictions(
    images: Sequence[Path],
    model_path: Path,
    model_sha: str,
    spec: PseudoLabelSpec,
    cache_root: Path,
) -> dict[Path, list[Prediction]]:
    """Each image's raw predictions, from the cache where present, from the model otherwise.

    DatasetError naming an image to label that does not decode (to be fixed or removed in its source).
    """
    cache = PseudoLabelCache(cache_root, model_sha, spec.imgsz)
    digests = {
        image: sha256_file(image)
        for image in _progress(images, desc="hashing images", unit="img", leave=False)
    }
    out: dict[Path, list[Prediction]] = {}
    missing = []
    for image, digest in digests.items():
        cached = cache.get(digest)
        if cached is None:
            missing.append(image)
        else:
            out[image] = cached
    log.info("pseudo-labels: %d cached, %d to compute (%s)", len(out), len(missing), cache.folder)
    for image in missing:
        problem = image_problem(image)
        if problem is not None:
            raise DatasetError(f"cannot read image {image}: {problem} (fix or remove it)")
    if missing:
        stream = predict_raw(model_path, missing, imgsz=spec.imgsz, iou=spec.iou, floor=cache.floor)
        bar = _progress(
            zip(missing, stream, strict=True), total=len(missing), desc="pseudo-labels", unit="img"
        )
        for image, preds in bar:
            cache.put(digests[image], preds)
            out[image] = preds
    return out
