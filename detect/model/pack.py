"""A built training set as one compact, self-contained folder, to train where ../shared is not.

A built set (`gridpatrol dataset build`) symlinks its photos from ../shared and the repository's
shared/. A GPU machine that gets only what is copied to it needs the photos themselves, and small:
`gridpatrol dataset pack` writes each photo shrunk to the training size (ultralytics shrinks it to
that on loading anyway, so nothing the model sees is lost but the re-encoding) as WebP, with its labels
and the train list's repeats, and a data.yaml that names only paths inside the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from detect.model.dataset import DatasetError

log = logging.getLogger(__name__)

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True, slots=True)
class PackSummary:
    out: Path
    images: dict[str, int]  # per split, distinct photos written
    bytes: int  # of the photos written

    def format(self) -> str:
        split = ", ".join(f"{name} {n}" for name, n in sorted(self.images.items()))
        return f"{self.out / 'data.yaml'}: {split} photos, {self.bytes / 2**20:.1f} MiB of photos"


def pack_dataset(data: Path, out: Path, *, max_side: int, quality: int) -> PackSummary:
    """Write data's splits into out as WebP photos no larger than max_side (quality 1-100)."""
    import cv2
    import yaml

    if not Path(data).is_file():
        raise DatasetError(f"dataset yaml not found: {data}")
    if not 32 <= max_side <= 4096 or not 1 <= quality <= 100:
        raise DatasetError(f"max side must be 32-4096 and quality 1-100, got {max_side} and {quality}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty: pack into a new folder")
    root = Path(data).resolve().parent
    spec = yaml.safe_load(Path(data).read_text())
    packed: dict[str, object] = {"names": spec["names"]}
    counts: dict[str, int] = {}
    total = 0
    for split in ("train", "val", "test"):
        if split not in spec:
            continue
        listing = root / spec[split]
        if listing.is_dir():
            entries = sorted(p for p in listing.iterdir() if p.suffix.lower() in SUFFIXES)
        elif listing.is_file():
            entries = [root / line.strip() for line in listing.read_text().splitlines() if line.strip()]
        else:
            raise DatasetError(f"{data}: {split} split {listing} not found")
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        written: dict[Path, str] = {}
        for image in entries:
            if image in written:
                continue
            name = f"{image.stem}.webp"
            frame = cv2.imread(str(image))
            if frame is None:
                raise DatasetError(f"{data}: {image} cannot be read as an image")
            height, width = frame.shape[:2]
            scale = max_side / max(height, width)
            if scale < 1:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            ok, encoded = cv2.imencode(".webp", frame, [cv2.IMWRITE_WEBP_QUALITY, quality])
            if not ok:
                raise DatasetError(f"{image}: WebP encoding failed")
            (out / "images" / split / name).write_bytes(encoded.tobytes())
            total += len(encoded)
            label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
            if label.is_file():
                shutil.copyfile(label, out / "labels" / split / f"{image.stem}.txt")
            written[image] = f"./images/{split}/{name}"
            if len(written) % 500 == 0:
                log.info("pack %s: %d photos", split, len(written))
        counts[split] = len(written)
        if listing.is_file():  # keep the list's repeats (repeat-factor sampling)
            (out / f"{split}.txt").write_text("".join(written[image] + "\n" for image in entries))
            packed[split] = f"{split}.txt"
        else:
            packed[split] = f"images/{split}"
    source_sha = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    header = (
        f"# Packed by `gridpatrol dataset pack` from {Path(data).resolve()} (sha256 {source_sha[:16]}):\n"
        f"# photos shrunk to at most {max_side} px a side, WebP quality {quality}.\n"
    )
    (out / "data.yaml").write_text(header + yaml.safe_dump(packed, allow_unicode=True, sort_keys=False))
    (out / "pack.json").write_text(
        json.dumps(
            {
                "source": str(Path(data).resolve()),
                "source_sha256": source_sha,
                "max_side": max_side,
                "quality": quality,
                "images": counts,
                "bytes": total,
            },
            indent=2,
        )
        + "\n"
    )
    return PackSummary(out=out, images=counts, bytes=total)
