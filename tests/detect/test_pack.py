"""`gridpatrol dataset pack`: a built set as one self-contained folder of shrunk WebP photos."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from detect.model.dataset import DatasetError
from detect.model.pack import pack_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path: Path, shared_dir: Path) -> Path:
    """A set laid out as `dataset build` writes one: photos symlinked, a train list with a repeat."""
    source = shared_dir / "datasets" / "cn-garbage"
    photos = sorted((source / "images" / "val").glob("*.jpg"))[:4]
    root = tmp_path / "built"
    for split, chosen in (("train", photos[:3]), ("val", photos[3:])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for photo in chosen:
            (root / "images" / split / photo.name).symlink_to(photo)
            shutil.copyfile(
                source / "labels" / "val" / f"{photo.stem}.txt", root / "labels" / split / f"{photo.stem}.txt"
            )
    listed = [f"./images/train/{p.name}" for p in photos[:3]] + [f"./images/train/{photos[0].name}"]
    (root / "train.txt").write_text("\n".join(listed) + "\n")
    (root / "data.yaml").write_text(
        "train: train.txt\nval: images/val\nnames:\n  0: garbage\n  1: garbage_bin\n  2: overflow\n"
    )
    return root / "data.yaml"


def test_pack_shrinks_the_photos_and_keeps_labels_and_repeats(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "packed"
    summary = pack_dataset(built, out, max_side=320, quality=60)
    assert summary.images == {"train": 3, "val": 1}
    train_list = (out / "train.txt").read_text().split()
    assert len(train_list) == 4 and train_list[0] == train_list[3]  # the repeat survives
    for entry in train_list:
        photo = out / entry
        frame = cv2.imread(str(photo))
        assert photo.suffix == ".webp" and frame is not None and max(frame.shape[:2]) == 320
        label = out / "labels" / "train" / f"{photo.stem}.txt"
        original = built.parent / "labels" / "train" / f"{photo.stem}.txt"
        assert label.read_text() == original.read_text()
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {
        "names": {0: "garbage", 1: "garbage_bin", 2: "overflow"},
        "train": "train.txt",
        "val": "images/val",
    }
    assert not any(p.is_symlink() for p in out.rglob("*"))  # nothing points back to ../shared


def test_pack_names_what_it_cannot_use(built: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset yaml not found: .*missing.yaml"):
        pack_dataset(tmp_path / "missing.yaml", tmp_path / "a", max_side=320, quality=60)
    with pytest.raises(DatasetError, match="quality 1-100, got 320 and 0"):
        pack_dataset(built, tmp_path / "b", max_side=320, quality=0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(DatasetError, match="is not empty"):
        pack_dataset(built, tmp_path / "c", max_side=320, quality=60)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "dataset",
            "pack",
            str(tmp_path / "nope.yaml"),
            "--out",
            str(tmp_path / "d"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "dataset yaml not found" in done.stderr and "Traceback" not in done.stderr
