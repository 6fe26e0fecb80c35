"""A toy training set of real photos for the training tests: cn-garbage val photos with their labels."""

from __future__ import annotations

import os
from pathlib import Path

GARBAGE_NAMES = ("garbage", "garbage_bin", "overflow")


def toy_set(root: Path, shared_dir: Path, *, count: int, names: tuple[str, ...], offset: int = 0) -> Path:
    """The first `count` cn-garbage val photos (symlinked) with their labels, each class id + offset, as
    a train and a val split under root; its data.yaml naming `names`."""
    source = shared_dir / "datasets" / "cn-garbage"
    photos = sorted((source / "images" / "val").glob("*.jpg"))[:count]
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for photo in photos:
            os.symlink(photo, root / "images" / split / photo.name)
            lines = (source / "labels" / "val" / f"{photo.stem}.txt").read_text().split("\n")
            rows = [line.split(" ", 1) for line in lines if line.strip()]
            shifted = [f"{int(cls) + offset} {rest}" for cls, rest in rows]
            (root / "labels" / split / f"{photo.stem}.txt").write_text("".join(f"{row}\n" for row in shifted))
    data = root / "data.yaml"
    listed = "".join(f"  {i}: {name}\n" for i, name in enumerate(names))
    data.write_text(f"train: images/train\nval: images/val\nnames:\n{listed}")
    return data
