"""Added class branches beside the COCO model's own (detect.model.twin): the kinds it knows stay its own
outputs, and training moves the added branches only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.model.twin import TwinBranch, TwinError, add_branches, frozen_layers
from tests.detect.training_kit import GARBAGE_NAMES, toy_set

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "gridpatrol-n.pt"
KINDS = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "umbrella", "chair", "dining table")


@pytest.fixture(scope="module")
def coco(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "yolo26n-coco.pt"


@pytest.fixture(scope="module")
def twin(coco: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = add_branches(SHIPPED, coco, tmp_path_factory.mktemp("twin") / "twin.pt")
    assert made.kept == KINDS and made.added == GARBAGE_NAMES
    return made.out


def _model(weights: Path) -> object:
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().eval()


def _train(twin: Path, data: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`gridpatrol train` of the twin on data: 1 epoch at 64 px, run folder under tmp_path."""
    command = [
        sys.executable, "-m", "api.cli", "-q", "train", "--data", str(data), "--base", str(twin),
        "--no-calibrate-bn", "--imgsz", "64", "--epochs", "1", "--workers", "0", "--no-cache",
        "--project", str(tmp_path / "runs"), "--name", "twin", *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def _photo(shared_dir: Path) -> object:
    """A real street photo (cn-garbage val) as a 1x3x480x480 tensor in [0, 1]."""
    import torch

    path = sorted((shared_dir / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg"))[0]
    rgb = cv2.resize(cv2.imread(str(path)), (480, 480))[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0


def test_the_kinds_it_knows_are_the_base_s_own_outputs(twin: Path, coco: Path, shared_dir: Path) -> None:
    import torch

    x = _photo(shared_dir)
    base, made = _model(coco), _model(twin)
    assert list(made.names.values()) == [*KINDS, *GARBAGE_NAMES]
    rows = [list(base.names.values()).index(kind) for kind in KINDS]
    with torch.no_grad():
        expected, got = base(x)[1], made(x)[1]
    for head in ("one2one", "one2many"):
        assert torch.allclose(got[head]["boxes"], expected[head]["boxes"], atol=1e-3)
        assert torch.allclose(got[head]["scores"][:, :9], expected[head]["scores"][:, rows], atol=1e-3)
        assert got[head]["scores"].shape[1] == 12
        # New score rows start as ultralytics starts them (random weights, the prior bias): near zero.
        assert float(got[head]["scores"][:, 9:].sigmoid().mean()) < 0.01
    heads = [m for m in made.modules() if isinstance(m, TwinBranch)]
    assert len(heads) == 6  # three scales, both heads


def test_added_branches_may_start_from_the_model_s_own(coco: Path, tmp_path: Path) -> None:
    """init "current": each added branch a copy of the shipped model's class branch, with its garbage
    rows; the kept side still the base's."""
    import torch

    made = add_branches(SHIPPED, coco, tmp_path / "twin.pt", init="current")
    assert made.init == "current"
    twin, shipped, base = _model(made.out).model[-1], _model(SHIPPED).model[-1], _model(coco).model[-1]
    for attr in ("cv3", "one2one_cv3"):
        for i in range(3):
            added, kept = getattr(twin, attr)[i].added, getattr(twin, attr)[i].kept
            own, theirs = getattr(shipped, attr)[i], getattr(base, attr)[i]
            assert torch.equal(added[-1].weight, own[-1].weight[9:])
            assert torch.equal(added[0][0].conv.weight, own[0][0].conv.weight)
            assert torch.equal(kept[0][0].conv.weight, theirs[0][0].conv.weight)
            assert kept[-1].out_channels == 9 and added[-1].out_channels == 3


def test_training_moves_the_added_branches_only(twin: Path, tmp_path: Path, shared_dir: Path) -> None:
    """A real (tiny) run through `gridpatrol train`: every weight and BatchNorm statistic outside the added
    branches is the base's to the bit afterwards, the added ones have learned, and the result loads."""
    import torch

    data = toy_set(tmp_path, shared_dir, count=4, names=(*KINDS, *GARBAGE_NAMES), offset=len(KINDS))
    ship = tmp_path / "trained.pt"
    done = _train(twin, data, tmp_path, "--batch", "2", "--ship", str(ship))
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = _model(twin).state_dict(), _model(ship).state_dict()
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert moved and all(".added." in k for k in moved), sorted(moved)[:5]
    from detect.yolo import YoloDetector

    detector = YoloDetector(ship, imgsz=64, backend="pytorch")
    assert tuple(detector.names.values())[9:] == GARBAGE_NAMES


def test_training_refuses_data_naming_other_classes(twin: Path, tmp_path: Path, shared_dir: Path) -> None:
    data = toy_set(tmp_path, shared_dir, count=1, names=GARBAGE_NAMES)
    refused = _train(twin, data, tmp_path)
    assert refused.returncode == 1
    assert "the data's classes ['garbage', 'garbage_bin', 'overflow'] are not the weights'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_frozen_layers_leave_only_the_added_branches(twin: Path) -> None:
    model = _model(twin)
    frozen = [f"model.{entry}." for entry in frozen_layers(model)]
    training = [name for name, _ in model.named_parameters() if not any(f in name for f in frozen)]
    assert training and all(".added." in name for name in training)
    assert "23.cv3.0.kept" in frozen_layers(model) and "22" in frozen_layers(model)


def test_refusals_name_the_weights(tmp_path: Path, coco: Path) -> None:
    with pytest.raises(TwinError, match="unknown init 'x'"):
        add_branches(SHIPPED, coco, tmp_path / "a.pt", init="x")
    with pytest.raises(TwinError, match=r"base weights .*none\.pt: no such file"):
        add_branches(SHIPPED, tmp_path / "none.pt", tmp_path / "a.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TwinError, match=r"current weights .*junk\.pt: not ultralytics detection weights"):
        add_branches(tmp_path / "junk.pt", coco, tmp_path / "a.pt")
    with pytest.raises(TwinError, match="every class is one the base knows"):
        add_branches(coco, coco, tmp_path / "a.pt")
    assert not (tmp_path / "a.pt").exists()


def test_cli_writes_it_and_says_how_to_train_it(tmp_path: Path, coco: Path) -> None:
    out = tmp_path / "twin.pt"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", "model", "twin", "--base", str(coco), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        out.is_file()
        and "--no-calibrate-bn" in done.stdout
        and "garbage, garbage_bin, overflow" in done.stdout
    )
    refused = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", "model", "twin", "--model", str(coco), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (
        refused.returncode == 1 and "nothing to add" in refused.stderr and "Traceback" not in refused.stderr
    )
