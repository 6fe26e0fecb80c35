"""The review -> retrain loop (issue 13): a review export merged into the recipe's set with pseudo-labels kept
off the boxes operators spoke about, a candidate trained, compared with the current model, promoted or
refused by the rule, rolled back, every decision in the site folder's promotions.jsonl.

The end-to-end test runs on real frames (three of the shared dashcam clip, ultralytics' bus.jpg and
zidane.jpg) with scripted decisions, at 64 px for one epoch: it proves the plumbing, not that the loop
improves a model (no real district reviews exist yet to measure that on)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from api.cli.main import main
from detect.model.commands import DEFAULT_RECIPE
from detect.model.dataset import LabelBox, build_dataset, load_recipe
from detect.model.evaluation import ClassMetrics, EvaluationReport, box_iou
from detect.model.from_reviews import FromReviewsError, ReviewBox, ReviewFrame, write_dataset
from detect.model.promotion import PromotionError, PromotionRule, SetComparison, SiteModels, judge
from detect.model.training import TrainingError, merge_review_sets, pseudo_labels_to_add
from detect.yolo import SHIPPED_WEIGHTS


def _box(x1: float, y1: float, x2: float, y2: float, cls: int = 0) -> LabelBox:
    """A LabelBox from normalised corners."""
    return LabelBox(cls, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


@pytest.mark.parametrize(
    ("pseudo", "operator", "rejected", "kept"),
    [
        ([_box(0.1, 0.1, 0.3, 0.3)], [], [], 1),  # nobody spoke about it: kept
        (
            [_box(0.1, 0.1, 0.3, 0.3)],
            [_box(0.1, 0.1, 0.3, 0.3, cls=5)],
            [],
            0,
        ),  # an operator's box, other class
        (
            [_box(0.1, 0.1, 0.3, 0.3)],
            [],
            [_box(0.11, 0.1, 0.31, 0.3, cls=-1)],
            0,
        ),  # rejected there (IoU 0.82)
        ([_box(0.1, 0.1, 0.3, 0.3)], [_box(0.2, 0.1, 0.4, 0.3)], [], 1),  # IoU 1/3: another object
        ([_box(0.1, 0.1, 0.3, 0.3), _box(0.6, 0.6, 0.9, 0.9)], [_box(0.6, 0.6, 0.9, 0.9)], [], 1),
    ],
)
def test_pseudo_labels_stay_off_boxes_operators_spoke_about(
    pseudo: list[LabelBox], operator: list[LabelBox], rejected: list[LabelBox], kept: int
) -> None:
    assert len(pseudo_labels_to_add(pseudo, operator, rejected)) == kept


def _report(map_by_class: dict[str, float | None]) -> EvaluationReport:
    classes = [
        ClassMetrics(name, 1 if ap is not None else 0, 1 if ap is not None else 0, ap, ap, None, None)
        for name, ap in map_by_class.items()
    ]
    return EvaluationReport("m.pt", "data.yaml", "val", 64, 0.25, 4, classes)


@pytest.mark.parametrize(
    ("current", "candidate", "accepted", "reason"),
    [
        ({"car": 0.60, "bus": 0.40}, {"car": 0.60, "bus": 0.40}, True, ""),
        ({"car": 0.60, "bus": 0.40}, {"car": 0.62, "bus": 0.36}, True, ""),  # bus -0.04, mAP -0.01: within
        (
            {"car": 0.60, "bus": 0.40},
            {"car": 0.70, "bus": 0.30},
            False,
            "bus AP50 0.300 < current 0.400 -0.05",
        ),
        ({"car": 0.60, "bus": 0.40}, {"car": 0.58, "bus": 0.38}, False, "mAP50 0.480 < current 0.500 -0.01"),
        ({"car": 0.60, "bus": None}, {"car": 0.60, "bus": None}, True, ""),  # no bus labels: not judged
    ],
)
def test_promotion_rule(
    current: dict[str, float | None], candidate: dict[str, float | None], accepted: bool, reason: str
) -> None:
    verdict = judge([SetComparison("reviews val", _report(current), _report(candidate))], PromotionRule())
    assert verdict.accepted is accepted
    assert reason in "; ".join(verdict.reasons)


def test_a_candidate_without_a_class_the_site_model_has_is_refused() -> None:
    """A COCO model has no garbage class: with no garbage labels in the set its AP50 is not measured,
    yet promoting it would stop the site finding garbage."""
    current = _report({"car": 0.60, "garbage": None})
    candidate = dataclasses.replace(_report({"car": 0.65, "garbage": None}), lacks=["garbage"])
    verdict = judge([SetComparison("reviews val", current, candidate)], PromotionRule())
    assert not verdict.accepted
    assert verdict.reasons == ["reviews val: the candidate has no class garbage (the current model has)"]


def test_promoting_into_a_site_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    blocked = tmp_path / "site"
    blocked.write_text("not a folder")
    with pytest.raises(PromotionError, match=f"{blocked}: not a folder"):
        SiteModels(blocked).check()


def test_rollback_with_nothing_promoted_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PromotionError, match="nothing to roll back"):
        SiteModels(tmp_path / "site").rollback()


def test_a_comparison_names_missing_weights_before_scoring_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--model", str(tmp_path / "none.pt"), "--against", str(SHIPPED_WEIGHTS)]) == 1
    assert f"candidate weights not found: {tmp_path / 'none.pt'}" in capsys.readouterr().err


def test_merge_refuses_an_export_in_another_class_order(tmp_path: Path) -> None:
    data = tmp_path / "set" / "data.yaml"
    (tmp_path / "set" / "images" / "train").mkdir(parents=True)
    data.write_text("train: images/train\nval: images/train\nnames: {0: person, 1: car}\n")
    export = tmp_path / "export"
    export.mkdir()
    (export / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: car, 1: person}\n")
    with pytest.raises(TrainingError, match="class 0 is 'car' there, 'person' in"):
        merge_review_sets(
            data, [export], tmp_path / "out", pseudo_model=SHIPPED_WEIGHTS, cache_root=tmp_path / "cache"
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{bad", "not a review export's JSON"),
        (b"\xff\xfe\x00\x81", "not a review export's JSON"),
        (b"[1, 2]", "expected an object with an 'images' list"),
        (b'{"images": 5}', "expected an object with an 'images' list"),
        (b'{"images": [{"split": "train"}]}', r"images\[0\]: expected an object with 'image' and 'split'"),
        (b'{"images": [1]}', r"images\[0\]: expected an object with 'image' and 'split'"),
    ],
)
def test_merge_names_a_bad_reviews_json(tmp_path: Path, content: bytes, message: str) -> None:
    data = tmp_path / "set" / "data.yaml"
    (tmp_path / "set" / "images" / "train").mkdir(parents=True)
    data.write_text("train: images/train\nval: images/train\nnames: {0: person, 1: car}\n")
    export = tmp_path / "export"
    export.mkdir()
    (export / "data.yaml").write_text("names: {0: person, 1: car}\n")
    (export / "reviews.json").write_bytes(content)
    with pytest.raises(TrainingError, match=rf"{export / 'reviews.json'}: {message}"):
        merge_review_sets(
            data, [export], tmp_path / "out", pseudo_model=SHIPPED_WEIGHTS, cache_root=tmp_path / "cache"
        )


def _dashcam_frames(shared_dir: Path, indices: tuple[int, ...]) -> list[bytes]:
    import cv2

    capture = cv2.VideoCapture(str(shared_dir / "footage" / "highway-dashcam-1.mp4"))
    out: dict[int, bytes] = {}
    index = 0
    while len(out) < len(indices):
        ok, frame = capture.read()
        assert ok, f"the clip ended before frame {index}"
        if index in indices:
            out[index] = cv2.imencode(".jpg", frame)[1].tobytes()
        index += 1
    capture.release()
    return [out[i] for i in indices]


def _review_export(shared_dir: Path, out: Path, class_names: list[str]) -> None:
    """Five reviewed frames written by the export's own writer. Camera highway-1 (train): frame 60 a
    confirmed car and a car rejected as false; frame 240 a car corrected to a truck (an operator's box of
    another class over the model's car); frame 390 a garbage detection rejected (a hard negative). Camera
    square-2 (val): bus.jpg a confirmed bus and a person, zidane.jpg a confirmed person."""
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    images = dict(
        zip(("f60", "f240", "f390"), _dashcam_frames(shared_dir, (60, 240, 390)), strict=True),
        bus=(assets / "bus.jpg").read_bytes(),
        zidane=(assets / "zidane.jpg").read_bytes(),
    )
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    by_sha = {sha[name]: data for name, data in images.items()}

    def frame(
        n: int,
        camera: str,
        name: str,
        decisions: tuple[str, ...],
        labels: list[ReviewBox],
        rejected: list[ReviewBox],
    ) -> ReviewFrame:
        return ReviewFrame(
            case_id=n,
            sighting_id=n,
            camera_id=camera,
            frame_sha256=sha[name],
            lat=31.2 + n * 0.001,  # 100 m apart: never the same place
            lon=121.4,
            decided_at=datetime(2026, 12, 1, 9, n),
            decisions=decisions,
            labels=tuple(labels),
            rejected=tuple(rejected),
        )

    frames = [
        frame(
            1,
            "highway-1",
            "f60",
            ("confirm",),
            [ReviewBox(82, 169, 196, 240, "car")],
            [ReviewBox(226, 171, 269, 201, "car")],
        ),
        frame(2, "highway-1", "f240", ("confirm", "boxes"), [ReviewBox(285, 153, 463, 315, "truck")], []),
        frame(
            3, "highway-1", "f390", ("reject:false_positive",), [], [ReviewBox(500, 250, 600, 340, "garbage")]
        ),
        frame(
            4,
            "square-2",
            "bus",
            ("confirm",),
            [ReviewBox(2, 221, 810, 775, "bus"), ReviewBox(51, 398, 239, 905, "person")],
            [],
        ),
        frame(5, "square-2", "zidane", ("confirm",), [ReviewBox(741, 34, 1148, 720, "person")], []),
    ]
    summary = write_dataset(frames, read_image=by_sha.get, class_names=class_names, out=out)
    assert summary.frames["train"] == 3 and summary.frames["val"] == 2, summary.format()


def test_an_export_that_fails_leaves_the_earlier_one_as_it_was(tmp_path: Path, shared_dir: Path) -> None:
    classes = list(load_recipe(DEFAULT_RECIPE).recipe.classes)
    export = tmp_path / "reviews"
    _review_export(shared_dir, export, classes)
    before = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    frame = ReviewFrame(1, 1, "cam", "0" * 64, None, None, datetime(2026, 12, 1), ("confirm",), (), ())
    with pytest.raises(FromReviewsError, match="none of the reviewed frames could be read"):
        write_dataset([frame], read_image=lambda sha: None, class_names=classes, out=export)
    after = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert after == before and len(before) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["reviews"]  # no staging folder left behind


def _lines(path: Path) -> np.ndarray:
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows).reshape(-1, 5)


def _xyxy(rows: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [
            rows[:, 1] - rows[:, 3] / 2,
            rows[:, 2] - rows[:, 4] / 2,
            rows[:, 1] + rows[:, 3] / 2,
            rows[:, 2] + rows[:, 4] / 2,
        ]
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_review_loop_end_to_end(tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = list(load_recipe(DEFAULT_RECIPE).recipe.classes)
    # the recipe's own set, four photos a split (its COCO kinds pseudo-labelled as always)
    built = build_dataset(DEFAULT_RECIPE, tmp_path / "datasets", cache_root=tmp_path / "cache", limit=4)
    export = tmp_path / "reviews"
    _review_export(shared_dir, export, classes)
    site = tmp_path / "site"
    runs = tmp_path / "runs"
    candidate = tmp_path / "candidate.pt"

    # 1. train on the recipe's set merged with the reviews, from the current model
    common = ["--imgsz", "64", "--site-dir", str(site)]
    code = main(
        [
            "-q",
            "train",
            "--data",
            str(built.data_yaml),
            "--add-dataset",
            str(export),
            "--pseudo-cache",
            str(tmp_path / "cache" / "review-pseudo-labels"),
            "--base",
            str(SHIPPED_WEIGHTS),
            "--no-calibrate-bn",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--workers",
            "0",
            "--no-cache",
            "--project",
            str(runs),
            "--name",
            "loop",
            "--ship",
            str(candidate),
            *common,
        ]
    )
    assert code == 0
    merged = runs / "loop" / "dataset"
    record = json.loads((merged / "merge.json").read_text())
    assert record["images"] == {"train": 3, "val": 2}
    assert record["pseudo_added"] >= 1 and record["pseudo_dropped"] >= 1, record
    import yaml

    spec = yaml.safe_load((merged / "data.yaml").read_text())
    assert list(spec["names"].values()) == classes
    assert spec["train"][0].endswith("reviews-0/images/train") and spec["train"][1] == str(
        built.out_dir / "train.txt"
    )
    assert spec["val"] == [
        str(merged / "reviews-0" / "images" / "val"),
        str(built.out_dir / "images" / "val"),
    ]
    # no kept pseudo-label overlaps a rejected box; the operators' boxes come first, as given
    manifest = json.loads((export / "reviews.json").read_text())
    for entry in manifest["images"]:
        stem = Path(entry["image"]).stem
        rows = _lines(merged / "reviews-0" / "labels" / entry["split"] / f"{stem}.txt")
        operator = _lines(export / "labels" / entry["split"] / f"{stem}.txt")
        assert np.allclose(rows[: len(operator)], operator)
        pseudo = rows[len(operator) :]
        spoken = np.vstack([operator, _lines_of(entry["rejected"])])
        if len(pseudo) and len(spoken):
            assert box_iou(_xyxy(pseudo), _xyxy(spoken)).max() < 0.5, entry["image"]
    f60 = next(e for e in manifest["images"] if e["decisions"] == ["confirm"] and e["split"] == "train")
    assert f60["rejected"], "the rejected car is listed"
    assert candidate.is_file()
    # the run trained on the merged set, kept inside the run folder: a resumed run finds it there
    args = yaml.safe_load((runs / "loop" / "args.yaml").read_text())
    assert args["data"] == str(merged / "data.yaml")

    # 2. compare: both models, both sets, side by side, with the verdict
    capsys.readouterr()
    compare = ["--data", str(built.data_yaml), "--reviews", str(export), "--imgsz", "64"]
    assert (
        main(["-q", "evaluate", "--model", str(candidate), "--against", str(SHIPPED_WEIGHTS), *compare]) == 0
    )
    table = capsys.readouterr().out
    assert "shipped val:" in table and "reviews val:" in table and "rule: promote only when" in table
    assert "verdict:" in table and "bus" in table and "mAP50" in table

    # 3. promote: refused by a rule no candidate can meet, then accepted by a permissive one
    strict = ["--map50-tolerance", "-1", "--class-ap50-drop", "0"]
    assert main(["-q", "model", "promote", str(candidate), *compare[:4], *common, *strict]) == 1
    assert "verdict: refused" in capsys.readouterr().out
    assert not (site / "current.pt").exists()
    permissive = ["--map50-tolerance", "1", "--class-ap50-drop", "1"]
    assert main(["-q", "model", "promote", str(candidate), *compare[:4], *common, *permissive]) == 0
    assert _sha(site / "current.pt") == _sha(candidate)
    assert SiteModels(site).current() == site / "current.pt"

    # 4. rollback: the shipped weights again; a second rollback has nothing left to undo
    assert main(["-q", "model", "rollback", "--site-dir", str(site)]) == 0
    assert _sha(site / "current.pt") == _sha(SHIPPED_WEIGHTS)
    assert main(["-q", "model", "rollback", "--site-dir", str(site)]) == 1

    records = [json.loads(line) for line in (site / "promotions.jsonl").read_text().splitlines()]
    assert [r["action"] for r in records] == ["refused", "promote", "rollback"]
    shipped, trained = _sha(SHIPPED_WEIGHTS), _sha(candidate)
    assert (records[0]["before_sha256"], records[0]["after_sha256"]) == (shipped, shipped)
    assert (records[1]["before_sha256"], records[1]["after_sha256"]) == (shipped, trained)
    assert (records[2]["before_sha256"], records[2]["after_sha256"]) == (trained, shipped)
    for r in records:
        assert r["who"] and datetime.fromisoformat(r["time"]).tzinfo is not None
    figures = records[1]["figures"]
    assert set(figures) == {"shipped val", "reviews val"}
    assert figures["reviews val"]["images"] == 2
    assert {"current", "candidate"} <= set(figures["reviews val"])
    assert records[1]["rule"] == {"map50_tolerance": 1.0, "class_ap50_drop": 1.0}


def _lines_of(lines: list[str]) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in lines]).reshape(-1, 5)


def test_exports_adding_different_classes_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "set" / "data.yaml"
    (tmp_path / "set" / "images" / "train").mkdir(parents=True)
    data.write_text("train: images/train\nval: images/train\nnames: {0: person, 1: car}\n")
    exports = []
    for extra in ("stall", "cart"):
        export = tmp_path / extra
        export.mkdir()
        (export / "data.yaml").write_text(f"names: {{0: person, 1: car, 2: {extra}}}\n")
        (export / "reviews.json").write_text('{"images": []}\n')
        exports.append(export)
    with pytest.raises(TrainingError, match=r"adds the classes \['cart'\], an earlier export \['stall'\]"):
        merge_review_sets(
            data, exports, tmp_path / "out", pseudo_model=SHIPPED_WEIGHTS, cache_root=tmp_path / "cache"
        )


@pytest.mark.slow
def test_a_class_operators_drew_grows_the_model(tmp_path: Path, shared_dir: Path) -> None:
    """Operators drew `stall` boxes, a class the shipped model lacks (the site maps it in `kinds`); the
    export made with --new-class stall keeps them as class 12, the merge and the training grow the model by
    it, and the comparison scores it (the current model has no such class)."""
    import ultralytics
    import yaml
    from ultralytics import YOLO

    classes = list(load_recipe(DEFAULT_RECIPE).recipe.classes)
    built = build_dataset(DEFAULT_RECIPE, tmp_path / "datasets", cache_root=tmp_path / "cache", limit=2)
    assets = Path(ultralytics.__file__).parent / "assets"
    images = {"bus": (assets / "bus.jpg").read_bytes(), "zidane": (assets / "zidane.jpg").read_bytes()}
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    frames = [
        ReviewFrame(
            case_id=n,
            sighting_id=n,
            camera_id=camera,
            frame_sha256=sha[name],
            lat=31.2 + n * 0.001,
            lon=121.4,
            decided_at=datetime(2026, 12, 1, 9, n),
            decisions=("confirm", "boxes"),
            labels=(ReviewBox(*box, "stall"),),
            rejected=(),
        )
        for n, camera, name, box in [
            (1, "street-1", "bus", (0.0, 600.0, 300.0, 1000.0)),
            (2, "street-2", "zidane", (100.0, 400.0, 600.0, 720.0)),
        ]
    ]
    export = tmp_path / "reviews"
    write_dataset(
        frames,
        read_image={sha[n]: d for n, d in images.items()}.get,
        class_names=[*classes, "stall"],
        out=export,
    )
    candidate, runs = tmp_path / "candidate.pt", tmp_path / "runs"
    code = main(
        ["-q", "train", "--data", str(built.data_yaml), "--add-dataset", str(export),
         "--pseudo-cache", str(tmp_path / "cache" / "review-pseudo-labels"), "--base", str(SHIPPED_WEIGHTS),
         "--no-calibrate-bn", "--epochs", "1", "--batch", "4", "--workers", "0", "--no-cache",
         "--imgsz", "64", "--project", str(runs), "--name", "grow", "--ship", str(candidate),
         "--site-dir", str(tmp_path / "site")]
    )  # fmt: skip
    assert code == 0
    merged = runs / "grow" / "dataset"
    assert list(yaml.safe_load((merged / "data.yaml").read_text())["names"].values()) == [*classes, "stall"]
    labels = [
        line.split()
        for p in (merged / "reviews-0" / "labels").rglob("*.txt")
        for line in p.read_text().splitlines()
    ]
    assert sum(row[0] == "12" for row in labels) == 2
    assert list(YOLO(str(candidate)).names.values()) == [*classes, "stall"]


def test_the_simulated_operator_labels_every_human_box(tmp_path: Path) -> None:
    """benchmarks/review_loop.py (the loop's effect with a simulated operator): every labelled box of the
    reviewed photos is in the export, as the model's confirmed box (IoU >= 0.5, same class) or drawn as
    labelled; a named error for a dataset that is not there."""
    import subprocess
    import sys

    from detect.model.evaluation import load_data, read_labels

    built = build_dataset(DEFAULT_RECIPE, tmp_path / "datasets", cache_root=tmp_path / "cache", limit=6)
    export = tmp_path / "reviews"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "review_loop.py"
    command = [sys.executable, str(script), "--data", str(built.data_yaml), "--out", str(export)]
    run = subprocess.run(
        [*command, "--cameras", "3", "--imgsz", "320"], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "simulated operator on 6 photos" in run.stdout and "val: " in run.stdout
    names, images = load_data(built.data_yaml, "val")
    manifest = json.loads((export / "reviews.json").read_text())
    by_sha = {e["frame_sha256"]: e for e in manifest["images"]}
    checked = 0
    for image in images:
        entry = by_sha.get(hashlib.sha256(image.read_bytes()).hexdigest())
        if entry is None:
            continue
        width, height = entry["size"]
        truth = read_labels(image, width, height)
        rows = _lines(export / "labels" / entry["split"] / f"{Path(entry['image']).stem}.txt")
        given = _xyxy(rows) * np.array([width, height, width, height])
        for j in range(len(truth.xyxy)):
            same = rows[:, 0] == truth.cls[j]
            assert same.any() and box_iou(truth.xyxy[j : j + 1], given[same]).max() >= 0.5, image.name
            checked += 1
    assert checked >= 1

    missing = subprocess.run([*command[:3], str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert missing.returncode == 1 and "dataset yaml not found" in missing.stderr
    assert "Traceback" not in missing.stderr
