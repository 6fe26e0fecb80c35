"""Training mechanics on a toy set: a killed run resumes where it stopped; shipping strips it small."""

from __future__ import annotations

import csv
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from detect.model.training import (
    TrainingError,
    TrainSettings,
    last_checkpoint,
    read_checkpoint,
    resume,
    run_progress,
    train,
)
from tests.detect.training_kit import GARBAGE_NAMES, toy_set

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "gridpatrol-n.pt"


@pytest.fixture
def toy_data(tmp_path: Path, shared_dir: Path) -> Path:
    """Six cn-garbage val photos with their labels, as a train and a val split."""
    return toy_set(tmp_path, shared_dir, count=6, names=GARBAGE_NAMES)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", "-q", "train", *args]


def _epochs_in_results(run: Path) -> list[int]:
    with (run / "results.csv").open() as fh:
        return [int(float(row["epoch"])) for row in csv.DictReader(fh)]


def test_new_run_refuses_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="dataset yaml not found"):
        train(TrainSettings(data=tmp_path / "none.yaml"))
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        last_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "weights").mkdir(parents=True)
    (tmp_path / "run" / "weights" / "last.pt").write_bytes(b"\x80\x02")  # cut short while saving
    with pytest.raises(TrainingError, match="last.pt is truncated .*: start a new run"):
        resume(tmp_path / "run")


@pytest.mark.slow
def test_killed_run_resumes_and_ships(toy_data: Path, tmp_path: Path, shared_dir: Path) -> None:
    project = tmp_path / "runs"
    run = project / "toy"
    common = ["--project", str(project), "--name", "toy", "--workers", "0"]
    start = _cli(
        "--data", str(toy_data), "--imgsz", "64", "--epochs", "30", "--batch", "2", "--no-cache", *common
    )
    proc = subprocess.Popen(start, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # last.pt is written in place: wait until it is whole
        while read_checkpoint(run / "weights" / "last.pt") is None:
            assert proc.poll() is None, "training stopped before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = run_progress(run)["epoch_done"]
    assert 1 <= done < 30
    # Killed while writing best.pt (ultralytics writes it after last.pt, in place): cut it short.
    best = run / "weights" / "best.pt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2] if best.exists() else b"\x80\x02")

    # A second start on the same folder is refused: the run must be resumed, not overwritten.
    again = subprocess.run(start, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 1 and "--resume" in again.stderr

    # Resume with a shorter plan: it picks up after the last saved epoch and trains up to the new end.
    ship = tmp_path / "shipped.pt"
    resumed = subprocess.run(
        _cli("--resume", "--epochs", str(done + 1), "--ship", str(ship), *common),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run / "weights" / "best.pt.truncated").exists()  # set aside, not validated at the end

    # The run has finished: resuming it again is refused in one line (ultralytics would try a download).
    finished = subprocess.run(
        _cli("--resume", "--epochs", "9", *common), cwd=REPO, capture_output=True, text=True
    )
    assert finished.returncode == 1 and "toy has finished" in finished.stderr and "--base" in finished.stderr
    assert "Traceback" not in finished.stderr
    epochs = _epochs_in_results(run)
    assert epochs[-1] == done + 1
    # Epoch 1 was saved before the kill, so it is not trained again (results.csv may hold a row of an
    # epoch that ran but was killed before its checkpoint; that epoch is rerun).
    assert epochs.count(1) == 1
    assert sorted(set(epochs)) == list(range(1, done + 2))
    assert ship.stat().st_size < 20 * 1024 * 1024
    from detect.yolo import YoloDetector

    assert set(YoloDetector(ship, imgsz=64).names.values()) == {"garbage", "garbage_bin", "overflow"}


def test_distillation_refuses_a_missing_teacher(toy_data: Path, tmp_path: Path) -> None:
    settings = TrainSettings(data=toy_data, teacher=tmp_path / "teacher.pt", project=tmp_path / "runs")
    with pytest.raises(TrainingError, match="teacher weights not found: .*teacher.pt"):
        train(settings)
    with pytest.raises(TrainingError, match="--distill-weight must be a number > 0"):
        train(TrainSettings(data=toy_data, distill_weight=0, project=tmp_path / "runs"))
    no_teacher = "--distill logits needs a teacher to distil from: give --teacher WEIGHTS"
    with pytest.raises(TrainingError, match=no_teacher):
        train(TrainSettings(data=toy_data, distill="logits", project=tmp_path / "runs"))
    with pytest.raises(TrainingError, match="--distill-weight 2 needs a teacher"):
        train(TrainSettings(data=toy_data, distill_weight=2, project=tmp_path / "runs"))
    refused = subprocess.run(
        _cli("--data", str(toy_data), "--distill", "logits", "--project", str(tmp_path / "runs")),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "--distill logits needs a teacher" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "runs").exists()
    with pytest.raises(TrainingError, match="scale must be in \\[0, 1\\), got 1.5"):
        train(TrainSettings(data=toy_data, scale=1.5, project=tmp_path / "runs"))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--imgsz", "0"], "--imgsz must be a positive multiple of 32, got 0"),
        (["--imgsz", "-32"], "--imgsz must be a positive multiple of 32, got -32"),
        (["--hours", "nan"], "--hours must be a number > 0, got nan"),
        (["--hours", "inf"], "--hours must be a number > 0, got inf"),
        (["--distill-weight", "nan"], "--distill-weight must be a number > 0, got nan"),
        (["--scale", "nan"], "--scale must be in [0, 1), got nan"),
    ],
)
def test_train_refuses_sizes_and_numbers_out_of_range_before_starting(
    toy_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    from api.cli.main import main

    project = tmp_path / "runs"
    code = main(
        ["train", "--data", str(toy_data), "--project", str(project), "--teacher", str(toy_data), *option]
    )
    assert code == 1
    assert f"error: {message}" in capsys.readouterr().err
    assert not project.exists()


@pytest.mark.slow
def test_distilled_run_trains_against_the_teacher_and_ships_the_student_alone(
    toy_data: Path, tmp_path: Path, shared_dir: Path
) -> None:
    project = tmp_path / "runs"
    ship = tmp_path / "shipped.pt"
    teacher = shared_dir / "weights" / "yolo26n-coco.pt"
    common = ["--project", str(project), "--name", "kd", "--workers", "0", "--no-cache"]
    done = subprocess.run(
        _cli(
            "--data",
            str(toy_data),
            "--imgsz",
            "64",
            "--epochs",
            "1",
            "--batch",
            "2",
            "--teacher",
            str(teacher),
            "--scale",
            "0.9",
            "--ship",
            str(ship),
            *common,
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with (project / "kd" / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["train/dis_loss"]) > 0  # the teacher's features were part of the loss
    run_args = yaml.safe_load((project / "kd" / "args.yaml").read_text())
    assert run_args["scale"] == 0.9 and run_args["distill_model"] == str(teacher.resolve())
    assert ship.stat().st_size < 20 * 1024 * 1024  # the student alone: no teacher, no projector
    from detect.yolo import YoloDetector

    detector = YoloDetector(ship, imgsz=64, backend="pytorch")
    assert set(detector.names.values()) == {"garbage", "garbage_bin", "overflow"}


@pytest.mark.slow
def test_batchnorm_calibration_keeps_the_function_and_fixes_train_mode(
    tmp_path: Path, shared_dir: Path
) -> None:
    import copy

    import cv2
    import numpy as np
    import torch

    from detect.backends import import_ultralytics
    from detect.model.training import calibrate_batchnorms, identity_batchnorms

    import_ultralytics()
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.torch_utils import torch_load

    base = shared_dir / "weights" / "yolo26n-coco.pt"
    photos = sorted((shared_dir / "datasets" / "cn-garbage" / "images" / "train").glob("*.jpg"))[:24]
    out = calibrate_batchnorms(base, photos[:16], tmp_path / "calibrated.pt", imgsz=320)

    def load(path: Path) -> torch.nn.Module:
        ckpt = torch_load(path, map_location="cpu")
        return (ckpt.get("ema") or ckpt["model"]).float().eval()

    before, after = load(base), load(out)
    assert len(identity_batchnorms(before)) > 100
    assert identity_batchnorms(after) == []
    boxed = [LetterBox((320, 320), auto=False)(image=cv2.imread(str(p)))[:, :, ::-1] for p in photos[16:]]
    x = torch.from_numpy(np.ascontiguousarray(np.stack(boxed).transpose(0, 3, 1, 2))).float() / 255.0

    def neck(model: torch.nn.Module, train_mode: bool) -> torch.Tensor:
        model = copy.deepcopy(model).train(train_mode)
        seen: dict[str, torch.Tensor] = {}
        model.model[22].register_forward_hook(lambda _m, _i, o: seen.setdefault("out", o))
        with torch.no_grad():
            model(x)
        return seen["out"]

    reference = neck(before, False)

    def drift(y: torch.Tensor) -> float:
        return float((y - reference).abs().mean() / reference.abs().mean())

    assert drift(neck(after, False)) < 0.01  # the same network at inference (fp16 rounding aside)
    # In train mode (batch statistics) the uncalibrated copy is another network; the calibrated one is close.
    uncalibrated = drift(neck(before, True))
    assert uncalibrated > 0.8
    assert drift(neck(after, True)) < 0.5 * uncalibrated


def _with_coco_names(toy_data: Path) -> Path:
    """toy_data whose class list also holds two COCO kinds (no labels of them): the teacher shares those."""
    data = toy_data.parent / "data-coco.yaml"
    names = ["garbage", "garbage_bin", "overflow", "person", "car"]
    data.write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "names": dict(enumerate(names))})
    )
    return data


def test_logit_distillation_is_zero_against_itself_and_grows_with_the_gap(shared_dir: Path) -> None:
    import torch

    from detect.backends import import_ultralytics
    from detect.model.logit_distill import LogitDistillation, load_teacher

    import_ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    weights = shared_dir / "weights" / "yolo26n-coco.pt"
    student, _ = load_checkpoint(str(weights), device="cpu")
    student = student.float().train()
    teacher, pairs = load_teacher(weights, student, "cpu")
    assert pairs.names == tuple(student.names.values())  # the same 80 kinds
    kd = LogitDistillation(inner=None, teacher=teacher, pairs=pairs, weight=1.0)
    img = torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = teacher(img)[1]
        term = kd.term(same["one2many"], same["one2many"])
        assert float(term) == pytest.approx(0.0, abs=1e-4)  # KL of a distribution with itself, no box gap
        shifted = {**same["one2many"], "scores": same["one2many"]["scores"] + 1.0}
        moved = {**same["one2many"], "boxes": same["one2many"]["boxes"] + 0.5}
        assert float(kd.term(shifted, same["one2many"])) > 0.01
        # every box 0.5 off on each of its 4 sides, weighted by the teacher's best shared-kind score
        seen = same["one2many"]["scores"].sigmoid().max(dim=1).values.sum()
        expected = 2.0 * float(seen) / max(float(seen), 1.0)
        assert float(kd.term(moved, same["one2many"])) == pytest.approx(expected, rel=1e-3)
        assert expected > 0.1


def test_logit_distillation_refuses_a_teacher_sharing_no_class(
    toy_data: Path, tmp_path: Path, shared_dir: Path
) -> None:
    settings = TrainSettings(
        data=toy_data,
        teacher=shared_dir / "weights" / "yolo26n-coco.pt",
        distill="logits",
        imgsz=64,
        epochs=1,
        batch=2,
        workers=0,
        cache=None,
        project=tmp_path / "runs",
    )
    with pytest.raises(
        TrainingError, match="share no name with the model's \\(garbage, garbage_bin, overflow\\)"
    ):
        train(settings)


@pytest.mark.slow
def test_logit_distilled_run_trains_against_the_teacher_and_ships_the_student_alone(
    toy_data: Path, tmp_path: Path, shared_dir: Path
) -> None:
    data = _with_coco_names(toy_data)
    project = tmp_path / "runs"
    ship = tmp_path / "shipped.pt"
    teacher = shared_dir / "weights" / "yolo26n-coco.pt"
    done = subprocess.run(
        _cli(
            *("--data", str(data), "--imgsz", "64", "--epochs", "2", "--batch", "2"),
            *("--teacher", str(teacher), "--distill", "logits", "--ship", str(ship)),
            *("--project", str(project), "--name", "lkd", "--workers", "0", "--no-cache"),
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with (project / "lkd" / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(row["train/kd_loss"]) > 0 for row in rows)
    recorded = yaml.safe_load((project / "lkd" / "logit-distillation.json").read_text())
    assert recorded == {"teacher": str(teacher.resolve()), "weight": 1.0}  # what a resumed run reads back
    assert ship.stat().st_size < 20 * 1024 * 1024  # the student alone: the teacher is not in it
    from detect.yolo import YoloDetector

    detector = YoloDetector(ship, imgsz=64, backend="pytorch")
    assert list(detector.names.values()) == ["garbage", "garbage_bin", "overflow", "person", "car"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_with_last(tmp_path: Path, last: Path | None) -> Path:
    """A run folder P/run whose weights/last.pt is a copy of last (garbage when None)."""
    weights = tmp_path / "P" / "run" / "weights"
    weights.mkdir(parents=True)
    if last is None:
        (weights / "last.pt").write_text("garbage\n")
    else:
        shutil.copyfile(last, weights / "last.pt")
    return tmp_path / "P"


@pytest.mark.parametrize("existing", [True, False])
def test_shipping_a_damaged_checkpoint_is_refused_and_keeps_the_target(
    tmp_path: Path, existing: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli.main import main

    project = _run_with_last(tmp_path, None)
    ship = tmp_path / "ship.pt"
    if existing:
        shutil.copyfile(SHIPPED, ship)
    args = ["-q", "train", "--ship-only", "--ship", str(ship), "--project", str(project), "--name", "run"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"error: {project / 'run' / 'weights' / 'last.pt'}: not an ultralytics detector checkpoint" in err
    assert ship.is_file() is existing and (not existing or _sha(ship) == _sha(SHIPPED))
    assert sorted(p.name for p in tmp_path.iterdir()) == (["P", "ship.pt"] if existing else ["P"])


def test_shipping_weights_over_the_limit_keeps_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detect.model import training

    project = _run_with_last(tmp_path, SHIPPED)
    ship = tmp_path / "ship.pt"
    ship.write_text("the weights shipped before\n")
    monkeypatch.setattr(training, "MAX_SHIPPED_BYTES", 1_000_000)
    with pytest.raises(TrainingError, match=r"MB stripped, over the 1 MB limit; .*ship.pt left as it was"):
        training.export_weights(project / "run" / "weights" / "last.pt", ship)
    assert ship.read_text() == "the weights shipped before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P", "ship.pt"]


def test_shipping_to_a_new_file_or_nowhere(tmp_path: Path) -> None:
    from detect.model.training import export_weights

    project = _run_with_last(tmp_path, SHIPPED)
    ship = export_weights(project / "run" / "weights" / "last.pt", tmp_path / "new" / "ship.pt")
    assert read_checkpoint(ship)["model"].names == read_checkpoint(SHIPPED)["model"].names  # type: ignore[index]
    with pytest.raises(TrainingError, match="cannot write /proc/nope.pt: No such file or directory"):
        export_weights(project / "run" / "weights" / "last.pt", "/proc/nope.pt")
    with pytest.raises(TrainingError, match="new: a folder, not a .pt file"):
        export_weights(project / "run" / "weights" / "last.pt", tmp_path / "new")
