"""Evaluation: hand-checked matching and AP cases, then a real model on labels made from its own output."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from detect.model.evaluation import (
    EvaluationError,
    ImageBoxes,
    box_iou,
    evaluate,
    format_table,
    label_path,
    match,
    score,
)

NAMES = ["car", "garbage"]


def test_box_iou_hand_checked() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    assert box_iou(a, b) == pytest.approx(np.array([[1.0, 50 / 150, 0.0]]), abs=1e-6)


@pytest.mark.parametrize(
    ("pred_box", "expected_hits"),
    [
        ((0, 0, 10, 10), 10),  # IoU 1.0: a hit at every threshold 0.50..0.95
        ((0, 0, 10, 6.2), 3),  # IoU 0.62: hits at 0.50, 0.55 and 0.60
        ((0, 0, 10, 4), 0),  # IoU 0.4: a miss everywhere
    ],
)
def test_match_counts_thresholds(pred_box: tuple[float, float, float, float], expected_hits: int) -> None:
    labels = ImageBoxes.of([(0, 0, 0, 10, 10, 1.0)])
    preds = ImageBoxes.of([(0, *pred_box, 0.9)])
    assert int(match(labels, preds).sum()) == expected_hits


def test_match_ignores_other_class_and_claims_once() -> None:
    labels = ImageBoxes.of([(0, 0, 0, 10, 10, 1.0)])
    preds = ImageBoxes.of([(1, 0, 0, 10, 10, 0.95), (0, 0, 0, 10, 10, 0.9), (0, 0, 0, 10, 10, 0.8)])
    correct = match(labels, preds)
    assert correct[:, 0].tolist() == [False, True, False]  # wrong class; the hit; a duplicate


def test_score_hand_checked_case() -> None:
    # Image 1: a car found exactly (0.9) plus a false car (0.8); a garbage pile found at IoU 0.62 (0.7).
    # Image 2: a car missed; a low-score false garbage (0.1).
    labels = [
        ImageBoxes.of([(0, 0, 0, 10, 10, 1.0), (1, 20, 20, 30, 30, 1.0)]),
        ImageBoxes.of([(0, 50, 50, 60, 60, 1.0)]),
    ]
    preds = [
        ImageBoxes.of([(0, 0, 0, 10, 10, 0.9), (0, 100, 100, 110, 110, 0.8), (1, 20, 20, 30, 26.2, 0.7)]),
        ImageBoxes.of([(1, 0, 0, 5, 5, 0.1)]),
    ]
    car, garbage = score(labels, preds, NAMES, conf=0.5)
    assert (car.instances, car.images) == (2, 2)
    # car: one hit of two at P=1 then a false one: AP50 ~ 0.5 (area under the envelope up to recall 0.5)
    assert car.ap50 == pytest.approx(0.5, abs=0.02)
    assert car.precision == pytest.approx(0.5)  # 2 predictions >= 0.5, 1 right
    assert car.recall == pytest.approx(0.5)
    # garbage: the only label found at IoU 0.62 first in score order: AP = 1 at 0.50/0.55/0.60, 0 above.
    assert garbage.ap50 == pytest.approx(1.0, abs=0.01)
    assert garbage.ap50_95 == pytest.approx(0.3, abs=0.01)
    assert garbage.precision == pytest.approx(1.0)  # the 0.1 box is under the operating threshold
    assert garbage.recall == pytest.approx(1.0)


def test_score_class_without_labels_is_left_out_of_the_mean() -> None:
    labels = [ImageBoxes.of([(0, 0, 0, 10, 10, 1.0)])]
    preds = [ImageBoxes.of([(0, 0, 0, 10, 10, 0.9), (1, 40, 40, 50, 50, 0.9)])]
    car, garbage = score(labels, preds, NAMES, conf=0.25)
    assert garbage.ap50 is None and garbage.instances == 0
    assert garbage.precision == 0.0
    assert car.ap50 == pytest.approx(1.0, abs=0.01)


def test_label_path_follows_ultralytics() -> None:
    assert label_path(Path("/d/images/val/a.b.jpg")) == Path("/d/labels/val/a.b.txt")


@pytest.fixture
def own_labels_set(tmp_path: Path, shared_dir: Path) -> tuple[Path, Path]:
    """Five cn-garbage val photos labelled with the COCO model's own detections at score >= 0.5."""
    from detect.backends import import_ultralytics

    weights = shared_dir / "weights" / "yolo26n-coco.pt"
    photos = sorted((shared_dir / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg"))[:5]
    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    photos.append(Path(ASSETS) / "bus.jpg")
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    model = YOLO(str(weights))
    for photo in photos:
        shutil.copyfile(photo, tmp_path / "images" / "val" / photo.name)
        result = model.predict(str(photo), imgsz=416, conf=0.5, verbose=False)[0]
        lines = [
            f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}"
            for c, (x, y, w, h) in zip(result.boxes.cls.tolist(), result.boxes.xywhn.tolist(), strict=True)
        ]
        (tmp_path / "labels" / "val" / f"{photo.stem}.txt").write_text("\n".join(lines))
    names = "\n".join(f"  {i}: {n}" for i, n in model.names.items())
    data = tmp_path / "data.yaml"
    data.write_text(f"val: images/val\nnames:\n{names}\n")
    return data, weights


@pytest.mark.slow
def test_model_scores_about_one_on_its_own_output(own_labels_set: tuple[Path, Path]) -> None:
    data, weights = own_labels_set
    report = evaluate(weights, data, imgsz=416, conf=0.5)
    scored = [c for c in report.classes if c.instances]
    assert any(c.name == "bus" for c in scored) and any(c.name == "person" for c in scored)
    for c in scored:
        assert c.ap50 is not None and c.ap50 > 0.95, c
        assert c.precision == pytest.approx(1.0) and c.recall == pytest.approx(1.0), c
    assert report.map50 > 0.95
    assert not math.isnan(report.map50_95)
    assert "bus" in format_table(report)

    # The same labels at another image size no longer match exactly: the numbers must move.
    other = evaluate(weights, data, imgsz=160, conf=0.5)
    assert other.map50_95 < report.map50_95


# --- bad datasets: named errors, never tracebacks ---------------------------------------------------


def _tiny_set(root: Path) -> Path:
    """One 64 x 64 val photo with one car label; its data.yaml."""
    import cv2

    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # a JPEG of many blocks
    cv2.imwrite(str(root / "images" / "val" / "a.jpg"), noise)
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = root / "data.yaml"
    data.write_text("names: {0: car, 1: garbage}\nval: images/val\n")
    return data


def _nothing_found(images: Sequence[Path]) -> list[tuple[ImageBoxes, tuple[int, int]]]:
    return [(ImageBoxes.empty(), (64, 64)) for _ in images]


def _evaluate(data: Path) -> None:
    evaluate("fake.pt", data, predictor=_nothing_found)


def test_the_tiny_set_evaluates(tmp_path: Path) -> None:
    report = evaluate("fake.pt", _tiny_set(tmp_path), predictor=_nothing_found)
    assert (report.images, report.by_name()["car"].instances, report.by_name()["car"].recall) == (1, 1, 0.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"- val\n", "not a dataset yaml"),
        (b"images/val\n", "not a dataset yaml"),
        (b"names: {a: car}\nval: images/val\n", "names: the keys must be the class ids"),
        (b"names: [car]\nval: 5\n", "val: expected a folder or a .txt list"),
        (b"names: [car]\nval: {a: 1}\n", "val: expected a folder or a .txt list"),
        (b"names: [car]\npath: 7\nval: images/val\n", "path: expected a folder, got 7"),
        (b"\xff\xfe\x00\x81binary", "cannot read it as text"),
        (b"names: [car]\nval: val.txt\n", r"val.txt:2: no such image: .*missing.jpg"),
    ],
)
def test_a_bad_data_yaml_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    data = _tiny_set(tmp_path)
    data.write_bytes(content)
    (tmp_path / "val.txt").write_text("./images/val/a.jpg\n./images/val/missing.jpg\n")
    with pytest.raises(EvaluationError, match=rf"data.yaml: {message}|{message}"):
        _evaluate(data)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"x 0.5 0.5 0.2 0.2", r"a.txt:2: expected 'class x y w h'"),
        (b"2.0 0.5 0.5 0.2 0.2", r"a.txt:2: expected 'class x y w h'"),
        (b"0 0.5 0.5 0.2", r"a.txt:2: expected 'class x y w h'"),
        (
            b"99 0.5 0.5 0.2 0.2",
            r"a.txt:2: class 99 is not a class of the dataset \(the dataset has classes 0-1\)",
        ),
        (b"-1 0.5 0.5 0.2 0.2", r"a.txt:2: class -1 is not a class of the dataset"),
        (b"0 nan 0.5 0.2 0.2", r"a.txt:2: coordinates must be finite numbers"),
        (b"\xff\xfe\x00\x81", r"a.txt: cannot read it as text"),
    ],
)
def test_a_bad_label_line_is_named_with_its_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    data = _tiny_set(tmp_path)
    (tmp_path / "labels" / "val" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\n" + line + b"\n")
    with pytest.raises(EvaluationError, match=message):
        _evaluate(data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not an image"), "not a decodable image"),
        (lambda p: p.write_bytes(b""), "not a decodable image"),
        (
            lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
            "cannot be decoded .*truncated",
        ),
        (lambda p: p.with_name("dir.jpg").mkdir(), "dir.jpg: not a file"),
    ],
)
def test_an_image_that_cannot_be_read_stops_the_evaluation_by_name(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    data = _tiny_set(tmp_path)
    make(tmp_path / "images" / "val" / "a.jpg")
    with pytest.raises(EvaluationError, match=message):
        _evaluate(data)


def test_json_that_cannot_be_written_is_refused_before_evaluating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli.main import main

    data = _tiny_set(tmp_path)
    (tmp_path / "afile").write_text("a file")
    missing_model = str(tmp_path / "none.pt")  # evaluating would fail on it: the --json check comes first
    for target, message in [
        (tmp_path, "is a folder; name a file"),
        (tmp_path / "afile" / "x.json", f"{tmp_path / 'afile'} is not a folder"),
    ]:
        code = main(["evaluate", "--data", str(data), "--model", missing_model, "--json", str(target)])
        assert code == 1
        assert f"error: --json {target}: {message}" in capsys.readouterr().err
