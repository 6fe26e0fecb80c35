"""Importing COCO photos with human labels from a git folder of their repository (a real git repository
built here with the repository's layout: images/, object_detection/labels, object_detection/config.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detect.model.coco_subset import import_coco128
from detect.model.dataset import DatasetError, build_dataset, load_recipe

REPO = Path(__file__).resolve().parents[2]
COCO_KINDS = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck", 25: "umbrella"}
COCO_NAMES = {i: f"class{i}" for i in range(80)} | COCO_KINDS | {56: "chair", 60: "dining table"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def snapshot(tmp_path: Path) -> tuple[Path, str]:
    """A git repository laid out like lightly-ai/coco128_yolo with two photos per split; its commit."""
    repo = tmp_path / "coco128_yolo"
    for split in ("train2017", "val2017"):
        (repo / "images" / split).mkdir(parents=True)
        (repo / "object_detection" / "labels" / split).mkdir(parents=True)
        for i in range(2):
            name = f"{split[:-4]}{i}"
            cv2.imwrite(str(repo / "images" / split / f"{name}.jpg"), np.full((48, 64, 3), 90, np.uint8))
            (repo / "object_detection" / "labels" / split / f"{name}.txt").write_text(
                "60 0.5 0.5 0.4 0.3\n0 0.2 0.3 0.1 0.4\n13 0.9 0.9 0.1 0.1\n"
            )
    (repo / "object_detection" / "config.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train2017", "names": COCO_NAMES})
    )
    (repo / "README.md").write_text("not imported\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "coco128")
    return repo, _git(repo, "rev-parse", "HEAD")


def test_import_writes_the_layout_the_recipes_read(snapshot: tuple[Path, str], tmp_path: Path) -> None:
    repo, commit = snapshot
    out = tmp_path / "shared" / "coco128"
    result = import_coco128(repo, out, commit=commit)
    assert result.imported and result.images == {"train2017": 2, "val2017": 2}
    assert yaml.safe_load((out / "data.yaml").read_text())["names"][60] == "dining table"
    assert commit in (out / "SOURCE.md").read_text() and "CC BY 4.0" in (out / "SOURCE.md").read_text()
    assert sorted(p.name for p in (out / "labels" / "val2017").iterdir()) == ["val0.txt", "val1.txt"]
    assert not (out / "README.md").exists()

    again = import_coco128(repo / ".git", out, commit=commit)  # the bare git folder works as well
    assert not again.imported and again.images == result.images

    # The held-out recipe, pointed at this import, keeps the nine kinds and drops the rest (class 13).
    recipe = yaml.safe_load((REPO / "datasets" / "coco-val128.yaml").read_text())
    recipe["sources"][0]["root"] = str(out)
    path = tmp_path / "coco-val128.yaml"
    path.write_text(yaml.safe_dump(recipe))
    built = build_dataset(load_recipe(path).path, tmp_path / "build", cache_root=tmp_path / "cache").out_dir
    assert (built / "labels" / "val" / "coco128__val1.txt").read_text().splitlines() == [
        "8 0.500000 0.500000 0.400000 0.300000",
        "0 0.200000 0.300000 0.100000 0.400000",
    ]


def test_a_wrong_folder_or_commit_is_named(snapshot: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = snapshot
    with pytest.raises(DatasetError, match="snapshot not found"):
        import_coco128(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(DatasetError, match=f"holding commit {'0' * 40}"):
        import_coco128(repo, tmp_path / "out", commit="0" * 40)
    with pytest.raises(DatasetError, match="not a git folder"):
        import_coco128(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
