"""Dataset build: remapped labels, thresholded pseudo-labels, cache, determinism, recipe errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import detect.model.dataset as dataset
from detect.backends import sha256_file
from detect.model.dataset import (
    DatasetError,
    LabelBox,
    Prediction,
    PseudoLabelCache,
    boxes_in_window,
    build_dataset,
    close_up_window,
    load_recipe,
)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "datasets" / "gridpatrol-street.yaml"

CLASSES = ["person", "car", "garbage", "overflow"]


def _source(root: Path) -> None:
    """A YOLO source with 3 classes (garbage, bin, overflow) and two photos per split."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n  0: garbage\n  1: garbage_bin\n  2: overflow\n")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            image = np.full((64, 64, 3), 40 * i + (split == "val") * 7, dtype=np.uint8)
            cv2.imwrite(str(root / "images" / split / f"p{i}.jpg"), image)
        (root / "labels" / split / "p0.txt").write_text(
            "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n2 0.3 0.3 0.2 0.4\n"
        )
        # p1 has no label file: a background photo


def _recipe(folder: Path, conf: float = 0.4, model: str = "fake.pt", **extra: object) -> Path:
    """The toy recipe; extra: more top-level keys (repeat_factor, close_ups, ...)."""
    recipe = {
        "name": "toy",
        "classes": CLASSES,
        "sources": [
            {
                "name": "src",
                "root": "src",
                "splits": {"train": "train", "val": "val"},
                "remap": {"garbage": "garbage", "overflow": "overflow"},  # garbage_bin dropped on purpose
            }
        ],
        "pseudo_labels": {"model": model, "conf": conf, "classes": {"person": "person", "car": "car"}},
        **extra,
    }
    path = folder / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A toy source and recipe whose 'model' is a dummy file and whose predictions are all cached."""
    _source(tmp_path / "src")
    (tmp_path / "fake.pt").write_bytes(b"not a model")
    cache = PseudoLabelCache(tmp_path / "cache" / "pseudo-labels", sha256_file(tmp_path / "fake.pt"), 640)
    preds = [
        Prediction("car", 0.9, 0.6, 0.6, 0.2, 0.1),
        Prediction("person", 0.35, 0.2, 0.7, 0.1, 0.3),
        Prediction("dog", 0.95, 0.5, 0.5, 0.1, 0.1),  # not in the recipe: never a label
    ]
    for image in sorted((tmp_path / "src" / "images").rglob("*.jpg")):
        cache.put(sha256_file(image), preds)
    cache.put_class_names(["person", "car", "dog"])  # what loading the model would tell

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model ran although every prediction was cached")

    monkeypatch.setattr(dataset, "predict_raw", no_model)
    return tmp_path


def _labels(out: Path, split: str, stem: str) -> list[str]:
    return (out / "labels" / split / f"{stem}.txt").read_text().splitlines()


def test_build_remaps_and_pseudo_labels_from_cache(toy: Path) -> None:
    result = build_dataset(_recipe(toy), toy / "out", cache_root=toy / "cache")
    out = result.out_dir
    # garbage (src 0) -> 2, overflow (src 2) -> 3, garbage_bin dropped;
    # car 0.9 kept as 1, person 0.35 < 0.4 dropped.
    assert _labels(out, "train", "src__p0") == [
        "2 0.500000 0.500000 0.200000 0.200000",
        "3 0.300000 0.300000 0.200000 0.400000",
        "1 0.600000 0.600000 0.200000 0.100000",
    ]
    assert _labels(out, "val", "src__p1") == ["1 0.600000 0.600000 0.200000 0.100000"]
    image = out / "images" / "train" / "src__p0.jpg"
    assert image.is_symlink() and image.resolve() == (toy / "src" / "images" / "train" / "p0.jpg").resolve()
    data = yaml.safe_load(result.data_yaml.read_text())
    assert (
        data["names"] == dict(enumerate(CLASSES)) and data["train"] == "images/train" and "path" not in data
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["boxes"]["train"] == {"person": 0, "car": 2, "garbage": 1, "overflow": 1}
    assert manifest["pseudo_labels"]["boxes_by_threshold"]["0.3"] == {"person": 4, "car": 4}


def test_threshold_is_applied_to_cached_predictions(toy: Path) -> None:
    result = build_dataset(_recipe(toy, conf=0.3), toy / "out", cache_root=toy / "cache")
    assert "0 0.200000 0.700000 0.100000 0.300000" in _labels(result.out_dir, "train", "src__p1")


def test_build_is_deterministic(toy: Path) -> None:
    first = build_dataset(_recipe(toy), toy / "a", cache_root=toy / "cache").out_dir
    second = build_dataset(_recipe(toy), toy / "b", cache_root=toy / "cache").out_dir
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and not p.is_symlink())
    assert files == sorted(
        p.relative_to(second) for p in second.rglob("*") if p.is_file() and not p.is_symlink()
    )
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["sources"][0]["remap"].update(garbage="rubbish"), "'rubbish' is not in classes"),
        (lambda r: r.update(colour="red"), "colour"),
        (lambda r: r["pseudo_labels"].update(conf=1.5), "pseudo_labels.conf"),
        (lambda r: r["pseudo_labels"]["classes"].update(dog="garbage"), "labelled by a source already"),
    ],
)
def test_bad_recipe_names_the_key(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    path = _recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    edit(recipe)
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(DatasetError, match=message):
        load_recipe(path)


def test_missing_pseudo_label_model_is_an_error(tmp_path: Path) -> None:
    _source(tmp_path / "src")
    with pytest.raises(DatasetError, match="pseudo-label model not found"):
        build_dataset(_recipe(tmp_path, model="missing.pt"), tmp_path / "out", cache_root=tmp_path / "cache")


def _human_source(root: Path) -> None:
    """A YOLO source labelled by people for person and car (COCO-like names), one photo per split."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n  0: person\n  1: car\n  2: dog\n")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / split / "h0.jpg"), np.full((64, 64, 3), 200, dtype=np.uint8))
        (root / "labels" / split / "h0.txt").write_text("0 0.4 0.4 0.2 0.5\n2 0.8 0.8 0.1 0.1\n")


def test_a_source_with_human_labels_is_not_pseudo_labelled(toy: Path) -> None:
    """pseudo_label: false keeps a source's own boxes for the pseudo-labelled kinds, and only them:
    the cached car at 0.9 is added to the garbage photos but not to the human-labelled one."""
    _human_source(toy / "human")
    path = _recipe(toy)
    recipe = yaml.safe_load(path.read_text())
    recipe["sources"].append(
        {
            "name": "human",
            "root": "human",
            "splits": {"train": "train"},
            "pseudo_label": False,
            "remap": {"person": "person", "car": "car"},
        }
    )
    path.write_text(yaml.safe_dump(recipe))
    out = build_dataset(path, toy / "out", cache_root=toy / "cache").out_dir
    assert _labels(out, "train", "human__h0") == ["0 0.400000 0.400000 0.200000 0.500000"]
    assert "1 0.600000 0.600000 0.200000 0.100000" in _labels(out, "train", "src__p0")
    assert not (out / "labels" / "val" / "human__h0.txt").exists()  # only the splits it names

    recipe["sources"][1]["pseudo_label"] = True  # then its person/car would get pseudo boxes too
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(DatasetError, match=r"labelled by a source already \(sources.1"):
        load_recipe(path)


def test_shipped_recipe_is_valid() -> None:
    recipe = load_recipe(RECIPE).recipe
    assert recipe.classes[-3:] == ["garbage", "garbage_bin", "overflow"]
    assert len(recipe.classes) == 12
    assert recipe.pseudo_labels is not None and recipe.pseudo_labels.conf == pytest.approx(0.4)


def test_close_up_recipe_is_the_street_recipe_plus_close_ups() -> None:
    """The last training stage's recipe differs from the first stages' only by its name and close-ups."""
    street = load_recipe(RECIPE).recipe
    close = load_recipe(RECIPE.with_name("gridpatrol-street-closeups.yaml")).recipe
    assert close.close_ups is not None and street.close_ups is None
    assert close.model_copy(update={"name": street.name, "close_ups": None}) == street


def test_replay_recipe_is_the_close_up_recipe_plus_coco_train_photos() -> None:
    """The replay stage adds COCO's human-labelled train2017 photos, never its val2017 ones (the held-out
    set, datasets/coco-val128.yaml), and changes nothing else."""
    close = load_recipe(RECIPE.with_name("gridpatrol-street-closeups.yaml")).recipe
    replay = load_recipe(RECIPE.with_name("gridpatrol-street-replay.yaml")).recipe
    held_out = load_recipe(RECIPE.with_name("coco-val128.yaml")).recipe
    coco = replay.sources[-1]
    assert coco.splits == {"train": "train2017"} and not coco.pseudo_label
    assert held_out.sources[0].splits == {"val": "val2017"} and held_out.sources[0].root == coco.root
    assert held_out.classes == replay.classes and held_out.pseudo_labels is None
    assert set(coco.remap.values()) == set(close.pseudo_labels.classes.values())  # type: ignore[union-attr]
    assert replay.model_copy(update={"name": close.name, "sources": replay.sources[:-1]}) == close


@pytest.mark.slow
def test_shipped_recipe_on_a_few_real_photos(tmp_path: Path, shared_dir: Path) -> None:
    """Three cn-garbage photos per split through the real recipe and the real COCO model."""
    result = build_dataset(RECIPE, tmp_path / "out", cache_root=tmp_path / "cache", limit=3)
    out = result.out_dir
    recipe = load_recipe(RECIPE).recipe
    garbage_ids = {recipe.classes.index(n) for n in ("garbage", "garbage_bin", "overflow")}
    source = shared_dir / "datasets" / "cn-garbage"
    for split in ("train", "val"):
        stems = sorted(p.stem for p in (source / "images" / split).glob("*.jpg"))[:3]
        for stem in stems:
            ours = _labels(out, split, f"cn-garbage__{stem}")
            theirs = (source / "labels" / split / f"{stem}.txt").read_text().split("\n")
            theirs = [line for line in theirs if line.strip()]
            remapped = [line for line in ours if int(line.split()[0]) in garbage_ids]
            # Every hand label is kept, id shifted by 9 (garbage 0 -> 9, bin 1 -> 10, overflow 2 -> 11).
            assert len(remapped) == len(theirs)
            for a, b in zip(remapped, theirs, strict=True):
                assert int(a.split()[0]) == int(b.split()[0]) + 9
                assert [float(v) for v in a.split()[1:]] == pytest.approx(
                    [float(v) for v in b.split()[1:]], abs=1e-6
                )
    assert result.manifest["images"] == {"train": 3, "val": 3}
    pseudo = sum(
        result.manifest["boxes"]["train"][c] + result.manifest["boxes"]["val"][c] for c in recipe.classes[:9]
    )
    assert pseudo == sum(result.manifest["pseudo_labels"]["boxes_by_threshold"]["0.4"].values())
    # A rebuild reads every prediction from the cache.
    cache = tmp_path / "cache" / "pseudo-labels"
    cached = sorted(p for p in cache.rglob("*.json") if p.name != "names.json")
    assert len(cached) == 6
    again = build_dataset(RECIPE, tmp_path / "out2", cache_root=tmp_path / "cache", limit=3)
    assert again.manifest["boxes"] == result.manifest["boxes"]


def test_repeat_factors_follow_the_lvis_rule() -> None:
    from detect.model.dataset import repeat_factors

    # 100 images: class 0 in 50, class 1 in 1, class 2 in 4, class 3 in none
    images = [(f"{i}.jpg", {0}) for i in range(45)]
    images += [("rare.jpg", {0, 1})] + [(f"s{i}.jpg", {0, 2}) for i in range(4)]
    images += [(f"bg{i}.jpg", set()) for i in range(50)]
    factor, times = repeat_factors(images, ["common", "rare", "scarce", "absent"], threshold=0.1)
    assert factor[0] == 1.0 and factor[3] == 1.0
    assert factor[1] == pytest.approx((0.1 / 0.01) ** 0.5) and factor[2] == pytest.approx((0.1 / 0.04) ** 0.5)
    by_name = dict(zip([n for n, _ in images], times, strict=True))
    assert by_name["rare.jpg"] == 3 and by_name["s0.jpg"] == 2  # round(3.16), round(1.58)
    assert by_name["0.jpg"] == 1 and by_name["bg0.jpg"] == 1


def test_repeat_factor_recipe_writes_a_train_list(toy: Path) -> None:
    path = _recipe(toy, repeat_factor={"threshold": 0.9})
    result = build_dataset(path, toy / "out", cache_root=toy / "cache")
    data = yaml.safe_load(result.data_yaml.read_text())
    assert data["train"] == "train.txt" and data["val"] == "images/val"
    # garbage and overflow are in 1 of the 2 train photos: r = sqrt(0.9 / 0.5) = 1.34, listed once
    # (the repeating itself is in the test above); the list is in ultralytics' "./" relative form
    lines = (result.out_dir / "train.txt").read_text().splitlines()
    assert lines == ["./images/train/src__p0.jpg", "./images/train/src__p1.jpg"]
    for line in lines:
        assert (result.out_dir / line).is_symlink()
    assert json.loads((result.out_dir / "manifest.json").read_text())["repeat_factor"]["listed"] == 2


# --- close-ups -------------------------------------------------------------------------------------

W, H = 400, 300  # a 4:3 photo


@pytest.mark.parametrize(
    ("box", "fill", "window"),
    [
        # 40x30 px box in the middle, fill 0.25: a 4:3 window of 4x its area = 80x60, centred
        (LabelBox(0, 0.5, 0.5, 0.1, 0.1), 0.25, (160, 120, 240, 180)),
        # the same box at the top-left corner: the window moves inside the photo
        (LabelBox(0, 0.05, 0.05, 0.1, 0.1), 0.25, (0, 0, 80, 60)),
        # ... and at the bottom-right
        (LabelBox(0, 0.95, 0.95, 0.1, 0.1), 0.25, (320, 240, 400, 300)),
        # a long, low box (a bus side on: 200x30 px): the window grows to hold its width
        (LabelBox(0, 0.5, 0.5, 0.5, 0.1), 0.9, (100, 75, 300, 225)),
        # a box that would need a window as large as the photo: no close-up
        (LabelBox(0, 0.5, 0.5, 0.6, 0.6), 0.3, None),
    ],
)
def test_close_up_window(box: LabelBox, fill: float, window: tuple[int, int, int, int] | None) -> None:
    assert close_up_window(box, W, H, fill) == window


@pytest.mark.parametrize(
    ("box", "kept"),
    [
        # inside the window (100..300 x 75..225): renormalised to it
        (LabelBox(2, 0.5, 0.5, 0.1, 0.1), LabelBox(2, 0.5, 0.5, 0.2, 0.2)),
        # half of it left of the window: clipped to the visible half
        (LabelBox(9, 0.25, 0.5, 0.1, 0.1), LabelBox(9, 0.05, 0.5, 0.1, 0.2)),
        # 5% of it inside (under min_visible 0.1): dropped
        (LabelBox(9, 0.2, 0.5, 0.1, 0.1), None),
        # wholly outside: dropped
        (LabelBox(9, 0.1, 0.1, 0.1, 0.1), None),
    ],
)
def test_boxes_in_window(box: LabelBox, kept: LabelBox | None) -> None:
    got = boxes_in_window([box], (100, 75, 300, 225), W, H, min_visible=0.1)
    if kept is None:
        assert got == []
    else:
        assert len(got) == 1 and got[0].cls == kept.cls
        assert (got[0].x, got[0].y, got[0].w, got[0].h) == pytest.approx((kept.x, kept.y, kept.w, kept.h))


def _close_up_recipe(toy: Path, **close_ups: object) -> Path:
    spec = {"classes": ["car"], "min_area": 0.01, "max_area": 0.1, "fill": 0.3, **close_ups}
    return _recipe(toy, close_ups=spec)


def test_close_ups_are_cut_from_train_photos(toy: Path) -> None:
    # the toy car (centre 0.6, 0.6; 0.2 x 0.1 of a 64 px photo, 2% of it) at fill 0.3: a square window
    # of 0.02 / 0.3 of the photo, 17 px a side
    result = build_dataset(_close_up_recipe(toy, min_side_px=16), toy / "out", cache_root=toy / "cache")
    out = result.out_dir
    close = out / "images" / "train" / "src__p0__close-car.jpg"
    assert close.is_file() and not close.is_symlink()
    assert cv2.imread(str(close)).shape[:2] == (17, 17)
    lines = _labels(out, "train", "src__p0__close-car")
    # the garbage box (25.6-38.4 px) is 43% inside the window (30-47 px): kept, clipped to its top-left
    # quarter; the overflow box is outside it; the car in the middle, 64/17 times larger
    rows = sorted(tuple(float(v) for v in line.split()) for line in lines)
    assert [r[0] for r in rows] == [1, 2]
    assert rows[0][1:] == pytest.approx((0.5, 0.5, 0.2 * 64 / 17, 0.1 * 64 / 17), abs=0.04)
    assert rows[1][1:] == pytest.approx((0.25, 0.25, 0.5, 0.5), abs=0.04)
    assert not list((out / "images" / "val").glob("*close*"))  # val stays as it is
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["close_ups"] == {"images": 2, "by_class": {"car": 2}}
    assert manifest["images"] == {"train": 4, "val": 2} and manifest["boxes"]["train"]["car"] == 4


def test_close_ups_skip_small_windows_and_other_sizes(toy: Path) -> None:
    # the default smallest close-up is 96 px: none from a 64 px photo
    small = build_dataset(_close_up_recipe(toy), toy / "a", cache_root=toy / "cache")
    # a car outside [min_area, max_area] is never zoomed on
    other = build_dataset(
        _close_up_recipe(toy, min_area=0.03, min_side_px=16), toy / "b", cache_root=toy / "cache"
    )
    for result in (small, other):
        assert not list(result.out_dir.rglob("*close*"))
        assert json.loads((result.out_dir / "manifest.json").read_text())["close_ups"]["images"] == 0


def test_close_ups_are_deterministic(toy: Path) -> None:
    first = build_dataset(_close_up_recipe(toy, min_side_px=16), toy / "a", cache_root=toy / "cache").out_dir
    second = build_dataset(_close_up_recipe(toy, min_side_px=16), toy / "b", cache_root=toy / "cache").out_dir
    written = sorted(p.relative_to(first) for p in first.rglob("*close*"))
    assert len(written) == 4  # two images, two label files
    for rel in written:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


@pytest.mark.parametrize(
    ("close_ups", "message"),
    [
        ({"classes": ["lorry"]}, "close_ups.classes"),
        ({"max_area": 0.5}, "max_area must be below fill"),
        ({"min_area": 0.2}, "min_area must be below max_area"),
    ],
)
def test_bad_close_ups_name_the_problem(toy: Path, close_ups: dict[str, object], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_recipe(_close_up_recipe(toy, **close_ups))


# --- replacing an earlier build --------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under folder: a file's bytes, a symlink's target."""
    return {
        str(p.relative_to(folder)): str(p.readlink()) if p.is_symlink() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def test_a_failed_build_leaves_the_earlier_build_as_it_was(toy: Path) -> None:
    recipe = _recipe(toy)
    out = build_dataset(recipe, toy / "out", cache_root=toy / "cache").out_dir
    before = _tree(out)
    (toy / "src" / "labels" / "val" / "p0.txt").write_text("0 0.5 0.5\n")  # found after train is written
    with pytest.raises(DatasetError, match=r"p0.txt:1: expected 'class x y w h'"):
        build_dataset(recipe, toy / "out", cache_root=toy / "cache")
    assert _tree(out) == before
    assert sorted(p.name for p in (toy / "out").iterdir()) == ["toy"]  # no half-written folder left

    (toy / "src" / "labels" / "val" / "p0.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    again = build_dataset(recipe, toy / "out", cache_root=toy / "cache").out_dir
    assert _labels(again, "val", "src__p0")[0] == "3 0.500000 0.500000 0.200000 0.200000"
    assert sorted(p.name for p in (toy / "out").iterdir()) == ["toy"]


def test_a_folder_that_is_not_a_build_is_never_replaced(toy: Path) -> None:
    notes = toy / "out" / "toy" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("not a dataset")
    with pytest.raises(DatasetError, match=r"out/toy: the folder is not empty and holds no earlier build"):
        build_dataset(_recipe(toy), toy / "out", cache_root=toy / "cache")
    assert notes.read_text() == "not a dataset"
    assert sorted(p.name for p in (toy / "out").iterdir()) == ["toy"]


# --- bad sources ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"- garbage\n- overflow\n", "not a dataset yaml"),
        (b"\xff\xfe\x00\x81binary", "cannot read it as text"),
        (b"names: [garbage\n", "not valid YAML"),
        (b"names: {a: garbage}\n", "names: the keys must be the class ids"),
    ],
)
def test_a_bad_source_data_yaml_is_named(toy: Path, content: bytes, message: str) -> None:
    (toy / "src" / "data.yaml").write_bytes(content)
    with pytest.raises(DatasetError, match=rf"src/data.yaml: {message}"):
        build_dataset(_recipe(toy), toy / "out", cache_root=toy / "cache")


def test_an_undecodable_source_image_is_named(toy: Path) -> None:
    broken = toy / "src" / "images" / "train" / "p2.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=rf"cannot read image {broken}: not a decodable image"):
        build_dataset(_recipe(toy), toy / "out", cache_root=toy / "cache")


def test_a_pseudo_label_class_the_model_lacks_is_named(toy: Path) -> None:
    path = _recipe(toy)
    recipe = yaml.safe_load(path.read_text())
    recipe["pseudo_labels"]["classes"]["nonexistentclass"] = "person"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(DatasetError, match=r"the model fake.pt has no class 'nonexistentclass'"):
        build_dataset(path, toy / "out", cache_root=toy / "cache")


@pytest.mark.parametrize("split", ["../evil", "a/b", "", "."])
def test_a_split_is_a_plain_name(tmp_path: Path, split: str) -> None:
    path = _recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["sources"][0]["splits"] = {split: "train"}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(DatasetError, match=r"sources.0.splits"):
        load_recipe(path)
