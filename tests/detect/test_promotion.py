"""`gridpatrol evaluate` and `model promote|rollback` on bad input and a damaged site folder: each is refused
by name before the site's model changes, and current.pt is always the weights promotions.jsonl says.

Real files throughout: a two-photo val set (ultralytics' bus.jpg and zidane.jpg, hand-labelled), the shipped
weights and a candidate that is the same network saved again (another SHA-256, the same scores), at 64 px."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from api.cli.main import main
from detect.model.promotion import PromotionError, PromotionRule, SiteModels, Verdict
from detect.yolo import SHIPPED_WEIGHTS

NAMES = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "umbrella", "chair", "dining table",
    "garbage", "garbage_bin", "overflow",
)  # fmt: skip
LABELS = {
    "bus": "4 0.5 0.55 0.98 0.5\n0 0.18 0.65 0.22 0.47\n",
    "zidane": "0 0.74 0.52 0.35 0.95\n",
}


def _val_set(folder: Path, *, labelled: bool) -> Path:
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    (folder / "images" / "val").mkdir(parents=True)
    for stem, rows in LABELS.items():
        shutil.copyfile(assets / f"{stem}.jpg", folder / "images" / "val" / f"{stem}.jpg")
        if labelled:
            (folder / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (folder / "labels" / "val" / f"{stem}.txt").write_text(rows)
    names = ", ".join(f"{i}: {name}" for i, name in enumerate(NAMES))
    data = folder / "data.yaml"
    data.write_text(f"path: .\ntrain: images/val\nval: images/val\nnames: {{{names}}}\n")
    return data


@pytest.fixture(scope="module")
def val_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _val_set(tmp_path_factory.mktemp("labelled"), labelled=True)


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped network saved again with another date: another file, the same scores."""
    import torch

    ckpt = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=False)
    ckpt["date"] = "2026-12-01T00:00:00"
    path = tmp_path_factory.mktemp("candidate") / "candidate.pt"
    torch.save(ckpt, path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _promote(candidate: Path, data: Path, site: Path, *extra: str) -> int:
    return main(["-q", "model", "promote", str(candidate), "--data", str(data), "--imgsz", "64",
                 "--site-dir", str(site), *extra])  # fmt: skip


@pytest.mark.parametrize("imgsz", ["0", "-32", "100", "100000"])
def test_an_input_size_no_model_can_be_scored_at_is_refused(
    imgsz: str, tmp_path: Path, val_set: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At 0 both models score 0 and compare equal: the promotion rule would pass anything."""
    site = tmp_path / "site"
    assert main(["-q", "evaluate", "--data", str(val_set), "--imgsz", imgsz]) == 1
    assert f"error: --imgsz {imgsz}: must be a multiple of 32 from 32 to 4096" in capsys.readouterr().err
    args = ["-q", "model", "promote", str(candidate), "--data", str(val_set), "--site-dir", str(site)]
    assert main([*args, "--imgsz", imgsz]) == 1
    assert f"error: --imgsz {imgsz}: must be a multiple of 32" in capsys.readouterr().err
    assert not (site / "current.pt").exists()


def test_a_set_without_labels_measures_nothing_and_promotes_nothing(
    tmp_path: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unlabelled = _val_set(tmp_path / "unlabelled", labelled=False)
    site = tmp_path / "site"
    assert _promote(candidate, unlabelled, site) == 1
    assert f"shipped val: nothing measured ({unlabelled} [val] has no labels" in capsys.readouterr().err
    assert not (site / "current.pt").exists()
    assert [json.loads(line)["action"] for line in (site / "promotions.jsonl").read_text().splitlines()] == [
        "refused"
    ]


def test_a_damaged_history_copy_is_copied_again_not_installed(
    tmp_path: Path, val_set: Path, candidate: Path
) -> None:
    site = tmp_path / "site"
    kept = site / "history" / f"{_sha(candidate)[:16]}.pt"
    kept.parent.mkdir(parents=True)
    kept.write_text("garbage\n")
    assert _promote(candidate, val_set, site) == 0
    assert _sha(site / "current.pt") == _sha(kept) == _sha(candidate)
    record = json.loads((site / "promotions.jsonl").read_text().splitlines()[-1])
    assert record["after_sha256"] == _sha(candidate)


def test_rollback_refuses_a_damaged_copy_of_the_previous_weights(
    tmp_path: Path, val_set: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    assert _promote(candidate, val_set, site) == 0
    previous = site / "history" / f"{_sha(SHIPPED_WEIGHTS)[:16]}.pt"
    previous.write_text("garbage\n")
    capsys.readouterr()
    assert main(["-q", "model", "rollback", "--site-dir", str(site)]) == 1
    assert f"the previous weights' copy {previous} is damaged" in capsys.readouterr().err
    assert _sha(site / "current.pt") == _sha(candidate)
    assert [json.loads(line)["action"] for line in (site / "promotions.jsonl").read_text().splitlines()] == [
        "promote"
    ]


def test_a_missing_config_is_named_before_anything_is_promoted(
    tmp_path: Path, val_set: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    assert _promote(candidate, val_set, site, "--config", str(tmp_path / "none.yaml")) == 1
    assert f"{tmp_path / 'none.yaml'}: no such config file" in capsys.readouterr().err
    assert not (site / "current.pt").exists() and not (site / "promotions.jsonl").exists()


def test_a_record_that_cannot_be_written_is_named_before_scoring(
    tmp_path: Path, val_set: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    (site / "promotions.jsonl").mkdir(parents=True)
    assert _promote(candidate, val_set, site) == 1
    assert f"{site / 'promotions.jsonl'}: not a file" in capsys.readouterr().err
    assert not (site / "current.pt").exists()


@pytest.mark.parametrize("promoted_before", [False, True])
def test_a_promotion_whose_record_fails_is_undone(
    tmp_path: Path, candidate: Path, promoted_before: bool
) -> None:
    """The record cannot be written (here: promotions.jsonl turned into a folder after the check): the
    weights that were in effect come back, so current.pt never differs from what the record says."""
    site = SiteModels(tmp_path / "site")
    accepted = Verdict(accepted=True)
    if promoted_before:
        site.promote(candidate, [], PromotionRule(), accepted)
        (tmp_path / "site" / "promotions.jsonl").unlink()
    before = _sha(site.current())
    (tmp_path / "site" / "promotions.jsonl").mkdir(parents=True)
    new = SHIPPED_WEIGHTS if promoted_before else candidate
    with pytest.raises(PromotionError, match=r"cannot write .*promotions.jsonl.*nothing changed"):
        site.promote(new, [], PromotionRule(), accepted)
    assert site.current_path.is_file() is promoted_before
    assert _sha(site.current()) == before


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"action": "promote", broken', "not JSON"),
        ('{"action": "promote"}', "a promote record without a SHA-256 before_sha256"),
        ("[1, 2]", "not a record"),
    ],
)
def test_rollback_names_a_bad_line_of_the_record(
    line: str, reason: str, tmp_path: Path, candidate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = SiteModels(tmp_path / "site")
    site.promote(candidate, [], PromotionRule(), Verdict(accepted=True))
    with site.log_path.open("a") as fh:
        fh.write(line + "\n")
    assert main(["-q", "model", "rollback", "--site-dir", str(site.folder)]) == 1
    assert f"error: {site.log_path} line 2: {reason}" in capsys.readouterr().err
    assert _sha(site.current_path) == _sha(candidate)
