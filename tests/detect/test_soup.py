"""Weight interpolation between the shipped weights and the COCO base (detect.model.soup)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.model.soup import SoupError, blend_batchnorm, class_rows, interpolate, trim

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "gridpatrol-n.pt"


@pytest.fixture(scope="module")
def coco(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "yolo26n-coco.pt"


@pytest.fixture(scope="module")
def photo(shared_dir: Path) -> object:
    """A real street photo (cn-garbage val), letterboxed to 480 as a 1x3x480x480 tensor in [0, 1]."""
    import torch

    path = sorted((shared_dir / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg"))[0]
    rgb = cv2.resize(cv2.imread(str(path)), (480, 480))[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0


def _raw(weights: Path, x: object) -> tuple[object, object, dict[int, str]]:
    """The one-to-one head's per-anchor class probabilities (N, classes, anchors) and boxes."""
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).float().eval()
    with torch.no_grad():
        head = model(x)[1]["one2one"]
    return head["scores"].sigmoid(), head["boxes"], dict(model.names)


def test_a_blended_batchnorm_computes_the_blend_of_the_two_functions() -> None:
    """Not the blend of the parameters: one side an identity BatchNorm (as the COCO checkpoints keep
    them), the other with real statistics, the result is (1 - alpha) * a(x) + alpha * b(x)."""
    import torch

    torch.manual_seed(0)
    a, b, into = (torch.nn.BatchNorm2d(8).eval() for _ in range(3))
    with torch.no_grad():
        a.running_mean.uniform_(-3, 3)
        a.running_var.uniform_(0.5, 4)
        a.weight.uniform_(0.5, 2)
        a.bias.uniform_(-1, 1)
        b.bias.uniform_(-1, 1)  # mean 0, var 1, weight 1: y = x / sqrt(1 + eps) + bias
    blend_batchnorm(a, b, 0.3, into=into)
    x = torch.randn(2, 8, 5, 5) * 3
    with torch.no_grad():
        expected = 0.7 * a(x) + 0.3 * b(x)
        assert torch.allclose(into(x), expected, atol=1e-5)
        assert torch.equal(into.running_mean, a.running_mean)  # real statistics kept for training


def test_its_ends_are_the_two_models_and_garbage_keeps_its_rows(
    tmp_path: Path, coco: Path, photo: object
) -> None:
    import torch

    start = interpolate(SHIPPED, coco, tmp_path / "a0.pt", alpha=0.0)
    assert start.shared_classes == (
        "person", "bicycle", "car", "motorcycle", "bus", "truck", "umbrella", "chair", "dining table",
    )  # fmt: skip
    shipped_scores, shipped_boxes, names = _raw(SHIPPED, photo)
    scores, boxes, soup_names = _raw(start.out, photo)
    assert soup_names == names
    assert torch.allclose(scores, shipped_scores, atol=0.01)
    assert torch.allclose(boxes, shipped_boxes, atol=0.5)  # pixels at 480

    end = interpolate(SHIPPED, coco, tmp_path / "a1.pt", alpha=1.0)
    coco_scores, coco_boxes, coco_names = _raw(coco, photo)
    scores, boxes, _ = _raw(end.out, photo)
    rows = {name: index for index, name in coco_names.items()}
    for ours, name in names.items():
        if name in rows:  # the COCO model's answer for the kinds both know
            assert torch.allclose(scores[0, ours], coco_scores[0, rows[name]], atol=0.01), name
    assert torch.allclose(boxes, coco_boxes, atol=0.5)
    shipped_model = torch.load(SHIPPED, weights_only=False)["model"]
    assert len(class_rows(shipped_model)) == 12  # weight and bias of 3 scales x 2 heads
    shipped_state = shipped_model.state_dict()
    end_state = torch.load(end.out, weights_only=False)["model"].state_dict()
    for key in ("model.23.one2one_cv3.0.2.weight", "model.23.cv3.2.2.bias"):
        assert torch.equal(end_state[key][9:], shipped_state[key][9:])  # garbage, garbage_bin, overflow

    half = interpolate(SHIPPED, coco, tmp_path / "half.pt", alpha=0.5, class_alpha=1.0)
    recorded = torch.load(half.out, weights_only=False)["soup"]
    assert recorded["alpha"] == 0.5 and recorded["class_alpha"] == 1.0
    assert len(recorded["current_sha256"]) == 64 and len(recorded["base_sha256"]) == 64


def test_a_class_row_can_have_its_own_alpha(tmp_path: Path, coco: Path) -> None:
    """--row 'dining table=1': that row is the COCO model's (found by name: its row 60, ours 8); the
    other rows and every other weight follow alpha (here 0: the shipped weights)."""
    import torch

    made = interpolate(SHIPPED, coco, tmp_path / "t.pt", alpha=0.0, row_alphas={"dining table": 1.0})
    soup = torch.load(made.out, weights_only=False)
    assert soup["soup"]["row_alphas"] == {"dining table": 1.0}
    mixed = soup["model"].state_dict()
    shipped = torch.load(SHIPPED, weights_only=False)["model"].state_dict()
    base = torch.load(coco, weights_only=False)["model"].state_dict()
    key = "model.23.one2one_cv3.1.2.weight"
    assert torch.equal(mixed[key][8], base[key][60])
    assert torch.equal(mixed[key][:8], shipped[key][:8]) and torch.equal(mixed[key][9:], shipped[key][9:])
    with pytest.raises(SoupError, match="no class both models know is named garbage"):
        interpolate(SHIPPED, coco, tmp_path / "g.pt", alpha=0.2, row_alphas={"garbage": 1.0})
    with pytest.raises(SoupError, match="alpha of chair must be between 0 and 1, got 2"):
        interpolate(SHIPPED, coco, tmp_path / "c.pt", alpha=0.2, row_alphas={"chair": 2.0})


def test_layers_can_have_their_own_alpha(tmp_path: Path, coco: Path) -> None:
    """--layers 0-10=1: the backbone (weights and BatchNorm functions) is the COCO model's, the neck and
    the head are the shipped ones, and the class rows follow the head's alpha (here 0)."""
    import torch

    made = interpolate(
        SHIPPED, coco, tmp_path / "b.pt", alpha=0.0, layer_alphas=dict.fromkeys(range(11), 1.0)
    )
    assert made.class_alpha == 0.0
    soup = torch.load(made.out, weights_only=False)
    assert soup["soup"]["layer_alphas"] == dict.fromkeys(range(11), 1.0)
    mixed = soup["model"].float()
    shipped = torch.load(SHIPPED, weights_only=False)["model"].float()
    base = torch.load(coco, weights_only=False)["model"].float()
    assert torch.allclose(mixed.model[5].conv.weight, base.model[5].conv.weight)
    assert torch.equal(mixed.model[13].cv1.conv.weight, shipped.model[13].cv1.conv.weight)
    key = "model.23.one2one_cv3.1.2.weight"
    assert torch.equal(mixed.state_dict()[key], shipped.state_dict()[key])
    x = torch.randn(1, 32, 8, 8)  # a backbone BatchNorm computes the COCO model's function
    with torch.no_grad():
        assert torch.allclose(mixed.model[1].bn.eval()(x), base.model[1].bn.eval()(x), atol=0.01)  # fp16
        y = torch.randn(1, 64, 8, 8)  # and a neck one the shipped weights'
        assert torch.allclose(mixed.model[17].bn.eval()(y), shipped.model[17].bn.eval()(y), atol=0.01)

    head = interpolate(SHIPPED, coco, tmp_path / "h.pt", alpha=0.0, layer_alphas={23: 1.0})
    assert head.class_alpha == 1.0  # the rows are the head's: they move with it
    with pytest.raises(SoupError, match="has layers 0-23: no layer 24"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=0.0, layer_alphas={24: 1.0})
    with pytest.raises(SoupError, match="alpha of layer 3 must be between 0 and 1, got 2"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=0.0, layer_alphas={3: 2.0})


def test_trim_keeps_the_largest_changes_and_puts_the_rest_back() -> None:
    import torch

    base = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    current = base + torch.tensor([[0.5, -3.0], [0.1, -0.2]])
    assert torch.equal(trim(current, base, 0.25), torch.tensor([[1.0, -1.0], [3.0, 4.0]]))
    assert torch.equal(trim(current, base, 0.5), torch.tensor([[1.5, -1.0], [3.0, 4.0]]))
    assert torch.equal(trim(current, base, 1.0), current)
    assert torch.equal(trim(current, base, 0.0), base)
    assert torch.equal(trim(current, base, 0.1), trim(current, base, 0.25))  # at least one entry


def test_a_trimmed_layer_keeps_part_of_its_change(tmp_path: Path, coco: Path) -> None:
    """--trim 5-10=0.3: in those layers 30% of each weight tensor's entries are the shipped weights' (the
    largest changes), the others the COCO model's; other layers and the BatchNorm functions are untouched."""
    import torch

    made = interpolate(
        SHIPPED, coco, tmp_path / "t.pt", alpha=0.0, layer_keeps=dict.fromkeys(range(5, 11), 0.3)
    )
    soup = torch.load(made.out, weights_only=False)
    assert soup["soup"]["layer_keeps"] == dict.fromkeys(range(5, 11), 0.3)
    mixed, shipped, base = (
        torch.load(path, weights_only=False)["model"].float() for path in (made.out, SHIPPED, coco)
    )
    weight = mixed.model[6].cv1.conv.weight
    ours, theirs = shipped.model[6].cv1.conv.weight, base.model[6].cv1.conv.weight
    from_ours = (weight == ours) & (ours != theirs)
    assert 0.29 < from_ours.float().mean() < 0.31 and torch.equal(weight[~from_ours], theirs[~from_ours])
    smallest_kept = (ours - theirs)[from_ours].abs().min()
    assert (ours - theirs)[~from_ours].abs().max() <= smallest_kept
    assert torch.equal(mixed.model[13].cv1.conv.weight, shipped.model[13].cv1.conv.weight)
    x = torch.randn(1, mixed.model[6].cv1.bn.num_features, 8, 8)
    with torch.no_grad():
        assert torch.allclose(mixed.model[6].cv1.bn.eval()(x), shipped.model[6].cv1.bn.eval()(x), atol=0.01)
    with pytest.raises(SoupError, match="part kept of layer 3 must be between 0 and 1, got 1.5"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=0.0, layer_keeps={3: 1.5})
    with pytest.raises(SoupError, match="has layers 0-23: no layer 30"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=0.0, layer_keeps={30: 0.5})


def test_a_soup_runs_through_the_product_s_detector(tmp_path: Path, coco: Path) -> None:
    """Loaded like any weights (YoloDetector, export cache included), it clears the floor the
    shipped weights must (tests/detect/test_model.py): two sure people and a bus or truck over the bus."""
    from ultralytics.utils import ASSETS

    from detect.yolo import YoloDetector

    made = interpolate(SHIPPED, coco, tmp_path / "soup.pt", alpha=0.2)
    detector = YoloDetector(made.out, imgsz=480, backend="pytorch")
    assert detector.names == YoloDetector(SHIPPED, imgsz=480, backend="pytorch").names
    found = detector.detect(cv2.imread(str(Path(ASSETS) / "bus.jpg")))
    assert sum(1 for d in found if d.class_name == "person" and d.score >= 0.5) >= 2
    vehicles = [d.box for d in found if d.class_name in {"bus", "truck"}]
    assert vehicles


def test_refusals_name_the_input(tmp_path: Path, coco: Path, shared_dir: Path) -> None:
    with pytest.raises(SoupError, match="alpha must be between 0 and 1, got 1.5"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=1.5)
    with pytest.raises(SoupError, match="class alpha must be between 0 and 1, got -0.1"):
        interpolate(SHIPPED, coco, tmp_path / "x.pt", alpha=0.2, class_alpha=-0.1)
    with pytest.raises(SoupError, match="base weights not found: .*nothing.pt"):
        interpolate(SHIPPED, tmp_path / "nothing.pt", tmp_path / "x.pt", alpha=0.2)
    other = shared_dir / "weights" / "yolo11n-coco.pt"
    with pytest.raises(SoupError, match="yolo11n-coco.pt are not the same network"):
        interpolate(SHIPPED, other, tmp_path / "x.pt", alpha=0.2)
    assert not (tmp_path / "x.pt").exists()


def test_cli_writes_a_candidate_and_refuses_by_name(tmp_path: Path, coco: Path) -> None:
    cli = [sys.executable, "-m", "api.cli", "-q", "model", "soup"]
    ok = subprocess.run(
        [*cli, "--alpha", "0.2", "--base", str(coco), "--out", str(tmp_path / "c.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert f"wrote {tmp_path / 'c.pt'}: 0.2 of the way" in ok.stdout
    assert (tmp_path / "c.pt").is_file()
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    bad = subprocess.run(
        [*cli, "--alpha", "0.2", "--base", str(text), "--out", str(tmp_path / "d.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "notes.pt" in bad.stderr and "Traceback" not in bad.stderr
    rows = subprocess.run(
        [*cli, "--alpha", "0.2", "--base", str(coco), "--row", "chair=lots", "--out", str(tmp_path / "e.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert rows.returncode == 1 and "--row chair=lots: expected CLASS=ALPHA" in rows.stderr
    spans = subprocess.run(
        [*cli, "--alpha", "0", "--base", str(coco), "--layers", "0-4=0.75", "--layers", "23=1",
         "--out", str(tmp_path / "s.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert spans.returncode == 0, spans.stderr
    assert "0 of the way" in spans.stdout and "layers 0-4 at 0.75, layer 23 at 1 (" in spans.stdout
    for layers, reason in [("0-x=1", "expected FIRST-LAST=ALPHA"), ("5-2=1", "5 is after 2")]:
        bad_layers = subprocess.run(
            [*cli, "--alpha", "0", "--base", str(coco), "--layers", layers, "--out", str(tmp_path / "f.pt")],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        assert bad_layers.returncode == 1 and f"--layers {layers}: {reason}" in bad_layers.stderr
    trimmed = subprocess.run(
        [*cli, "--alpha", "0", "--base", str(coco), "--trim", "0-23=0.3", "--trim", "x=1",
         "--out", str(tmp_path / "t.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert trimmed.returncode == 1 and "--trim x=1: expected FIRST-LAST=KEEP, e.g. 0-23=0.3" in trimmed.stderr
    trimmed = subprocess.run(
        [*cli, "--alpha", "0", "--base", str(coco), "--trim", "0-23=0.3", "--out", str(tmp_path / "t.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert trimmed.returncode == 0, trimmed.stderr
    assert "layers 0-23 keeping 0.3 of their change" in trimmed.stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_output_that_is_an_input_or_a_site_s_model_is_refused(tmp_path: Path, coco: Path) -> None:
    model, base = tmp_path / "model.pt", tmp_path / "base.pt"
    shutil.copyfile(SHIPPED, model)
    shutil.copyfile(coco, base)
    site = tmp_path / "site"
    (site / "history").mkdir(parents=True)
    shutil.copyfile(SHIPPED, site / "current.pt")
    before = {path: _sha(path) for path in (model, base, site / "current.pt")}
    with pytest.raises(SoupError, match=f"output {model} is the current weights"):
        interpolate(model, base, model, alpha=0.2)
    with pytest.raises(SoupError, match=f"output {base} is the base weights"):
        interpolate(model, base, base, alpha=0.2)
    (tmp_path / "link.pt").symlink_to(base)
    with pytest.raises(SoupError, match="link.pt is the base weights"):
        interpolate(model, base, tmp_path / "link.pt", alpha=0.2)
    with pytest.raises(SoupError, match=f"output {site / 'current.pt'} is a site's model"):
        interpolate(model, base, site / "current.pt", alpha=0.2)
    assert {path: _sha(path) for path in before} == before


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("folder.pt", "a folder, not a .pt file"),
        ("notes.txt/x.pt", "notes.txt is a file, not a folder"),
        ("/proc/nope.pt", "cannot write /proc/nope.pt"),
    ],
)
def test_an_output_that_cannot_be_written_is_named(tmp_path: Path, coco: Path, out: str, reason: str) -> None:
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(SoupError, match=reason):
        interpolate(SHIPPED, coco, tmp_path / out, alpha=0.2)


def test_a_failed_write_keeps_the_earlier_file(tmp_path: Path, coco: Path) -> None:
    """A file-size limit (as a full disk) stops the write half-way: the earlier soup stays whole."""
    out = tmp_path / "soup.pt"
    interpolate(SHIPPED, coco, out, alpha=0.2)
    before = _sha(out)
    argv = ["-q", "model", "soup", "--alpha", "0.5", "--base", str(coco), "--out", str(out)]
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
        f"from api.cli.main import main; sys.exit(main({argv!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert run.returncode == 1, run.stderr
    assert f"error: cannot write {out}: File too large" in run.stderr and "Traceback" not in run.stderr
    assert _sha(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["soup.pt"]
