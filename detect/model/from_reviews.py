"""Operators' review decisions as a YOLO training set (`gridpatrol dataset from-reviews`, issue 13).

The case service replays each reviewed frame's decisions (api.cases.review_labels) into a
`ReviewFrame`: the raw frame (the whole best frame, privacy-blurred) with its labelled boxes
(confirmed detections, operators' corrected and added boxes) and its rejected ones (detections
rejected as false: hard negatives, left unlabelled). This module writes them as a dataset:

    <out>/images/<split>/<camera>-<sha16>.<ext>   the raw frame's bytes as stored
    <out>/labels/<split>/<camera>-<sha16>.txt     "class cx cy w h" (normalised), empty for a negative
    <out>/data.yaml                               names (the recipe's class order), train/val folders
    <out>/reviews.json                            every image: split, camera, case, sighting, decisions,
                                                  labels and the rejected boxes (normalised), so that a
                                                  merge can keep pseudo-labels off the rejected boxes

One frame, several cases (two objects in one picture, each its own case): their reviews of that raw
frame are one image whose labels are all of theirs (a box another case confirmed is never left as
background), its rejected boxes those of theirs no case labelled.

Deduplication (a camera looking at the same place gives near-identical frames, case after case): two
frames of the same camera are the same picture when they are at most PLACE_RADIUS_M apart (or both
have no position) and their difference hashes (DHASH_SIZE x DHASH_SIZE bits, over the grey image)
differ in at most DHASH_MAX_BITS bits; of those the one with the most boxes (labelled + rejected) is
kept, then the latest decided, then the lowest sighting id.

Split by camera, so that validation never sees a camera seen in training: a camera is in val when
sha256(camera id) read as a number is 0 modulo VAL_EVERY (about one camera in VAL_EVERY); with 2 or
more cameras at least one is in val (the one with the smallest hash when none fell there) and at
least one in train (the largest moves back when all fell in val). With one camera every frame is in
train and val is empty (the summary says so: a val split from the same camera would measure nothing
new). Frames without a camera count as the camera "unknown".
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from detect import SetupError

log = logging.getLogger(__name__)

PLACE_RADIUS_M = 10.0
DHASH_SIZE = 16
DHASH_MAX_BITS = 10  # of 256: about 4% of the bits
VAL_EVERY = 5
UNKNOWN_CAMERA = "unknown"
MANIFEST = "reviews.json"
SPLITS = ("train", "val")
_EXT = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"RIFF": ".webp"}


class FromReviewsError(SetupError):
    """The export cannot be written as asked (an output folder that is not ours or not writable,
    nothing to export); the message names the folder or the option."""


@dataclass(frozen=True, slots=True)
class ReviewBox:
    """A box on the frame in its pixels (x1, y1, x2, y2) with a model class name."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_name: str


@dataclass(frozen=True, slots=True)
class ReviewFrame:
    case_id: int
    sighting_id: int
    camera_id: str | None
    frame_sha256: str
    lat: float | None
    lon: float | None
    decided_at: datetime
    decisions: tuple[str, ...]
    labels: tuple[ReviewBox, ...]
    rejected: tuple[ReviewBox, ...]
    others: tuple[tuple[int, int], ...] = ()  # (case, sighting) of other reviews of this frame, merged in

    @property
    def camera(self) -> str:
        return self.camera_id or UNKNOWN_CAMERA


@dataclass(slots=True)
class Summary:
    out_dir: Path
    class_names: list[str]
    cameras: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    frames: Counter[str] = field(default_factory=Counter)  # split -> images written
    negatives: Counter[str] = field(default_factory=Counter)  # split -> images with no label
    boxes: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SPLITS})
    rejected: Counter[str] = field(default_factory=Counter)  # split -> rejected boxes (not labelled)
    duplicates: int = 0
    missing: int = 0  # frames whose image is not in the evidence store (or does not decode)
    unknown_classes: Counter[str] = field(default_factory=Counter)  # boxes of classes not in the list

    def format(self) -> str:
        lines = [f"{self.out_dir}/data.yaml"]
        for split in SPLITS:
            per_class = ", ".join(
                f"{n} {self.boxes[split][n]}" for n in self.class_names if self.boxes[split][n]
            )
            lines.append(
                f"  {split}: {self.frames[split]} frames from {len(self.cameras[split])} camera(s) "
                f"({', '.join(self.cameras[split]) or 'none'}); boxes: {per_class or 'none'}; "
                f"negatives (no label) {self.negatives[split]}, rejected boxes {self.rejected[split]}"
            )
        lines.append(f"  duplicates dropped (same camera and place, near-identical frame): {self.duplicates}")
        if self.missing:
            lines.append(f"  frames missing from the evidence store or not decodable: {self.missing}")
        if self.unknown_classes:
            dropped = ", ".join(f"{n} {c}" for n, c in sorted(self.unknown_classes.items()))
            lines.append(f"  boxes dropped, their class is not in the class list: {dropped}")
        if not self.cameras["val"]:
            lines.append(
                "  warning: no val split (one camera only): validation needs frames of a camera not "
                "seen in training"
            )
        return "\n".join(lines)


def camera_split(cameras: Sequence[str]) -> dict[str, str]:
    """camera -> "train" or "val" (see the module's docstring)."""
    unique = sorted(set(cameras))
    score = {c: int(hashlib.sha256(c.encode()).hexdigest(), 16) for c in unique}
    split = {c: "val" if score[c] % VAL_EVERY == 0 and len(unique) >= 2 else "train" for c in unique}
    if len(unique) >= 2:
        if "val" not in split.values():
            split[min(unique, key=lambda c: score[c])] = "val"
        if "train" not in split.values():
            split[max(unique, key=lambda c: score[c])] = "train"
    return split


def dhash(grey: Any) -> int:
    """The difference hash of a grey image (a 2-D uint8 array): DHASH_SIZE rows of DHASH_SIZE bits, each
    whether a pixel is brighter than its right neighbour, on the image shrunk to (SIZE + 1) x SIZE."""
    import cv2
    import numpy as np

    small = cv2.resize(grey, (DHASH_SIZE + 1, DHASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance of two (lat, lon) WGS84 points, metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000.0 * math.asin(min(1.0, math.sqrt(h)))


def _same_place(a: ReviewFrame, b: ReviewFrame) -> bool:
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return (a.lat is None or a.lon is None) and (b.lat is None or b.lon is None)
    return metres_between((a.lat, a.lon), (b.lat, b.lon)) <= PLACE_RADIUS_M


YoloRow = tuple[int, float, float, float, float]  # class, cx, cy, w, h (normalised)


def _yolo(box: ReviewBox, width: int, height: int, class_id: int) -> YoloRow | None:
    """The box as YOLO's (class, cx, cy, w, h), normalised, clipped to the frame; None when < 1 px."""
    x1, x2 = max(0.0, min(box.x1, width)), max(0.0, min(box.x2, width))
    y1, y2 = max(0.0, min(box.y1, height)), max(0.0, min(box.y2, height))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height


def _line(row: YoloRow) -> str:
    return f"{row[0]} {row[1]:.6f} {row[2]:.6f} {row[3]:.6f} {row[4]:.6f}"


OUTPUTS = ("images", "labels", "data.yaml", MANIFEST)  # what an export writes in its folder


def _prepare(out: Path) -> Path:
    """A staging folder beside `out` to write the export in, after checking that `out` is new, empty, or
    an earlier export of this command (which stays as it is until `_install` replaces its outputs)."""
    staging = out.parent / f".{out.name}.partial"
    try:
        if out.exists() and not out.is_dir():
            raise FromReviewsError(f"--out {out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise FromReviewsError(
                f"--out {out}: the folder is not empty and holds no earlier export ({MANIFEST}); "
                "name a new or empty folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a stopped run's
        for kind in ("images", "labels"):
            for split in SPLITS:
                (staging / kind / split).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FromReviewsError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return staging


def _install(staging: Path, out: Path) -> None:
    """The finished export in `out`, in place of an earlier one's outputs (other files are left)."""
    for name in OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        (staging / name).rename(target)
    staging.rmdir()


def _preference(frame: ReviewFrame) -> tuple[int, float, int]:
    return (-(len(frame.labels) + len(frame.rejected)), -frame.decided_at.timestamp(), frame.sighting_id)


def one_per_frame(frames: Sequence[ReviewFrame]) -> list[ReviewFrame]:
    """The reviews of each raw frame (by camera and SHA-256) as one: the preferred review (_preference)
    with every review's labels and decisions, and the rejected boxes that no review labelled."""
    groups: dict[tuple[str, str], list[ReviewFrame]] = {}
    for frame in frames:
        groups.setdefault((frame.camera, frame.frame_sha256), []).append(frame)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        group.sort(key=_preference)
        labels = tuple(dict.fromkeys(box for f in group for box in f.labels))
        rejected = tuple(dict.fromkeys(box for f in group for box in f.rejected if box not in labels))
        merged.append(
            replace(
                group[0],
                decided_at=max(f.decided_at for f in group),
                decisions=tuple(d for f in group for d in f.decisions),
                labels=labels,
                rejected=rejected,
                others=tuple((f.case_id, f.sighting_id) for f in group[1:]),
            )
        )
    return merged


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or UNKNOWN_CAMERA


def write_dataset(
    frames: Sequence[ReviewFrame],
    *,
    read_image: Callable[[str], bytes | None],
    class_names: Sequence[str],
    out: Path,
    source: str = "",
) -> Summary:
    """Write the frames as a YOLO dataset in `out` (see the module's docstring). `read_image`: a raw
    frame's bytes by SHA-256 (None when missing). FromReviewsError when there is nothing to write or
    the folder cannot be written."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    if not frames:
        raise FromReviewsError("no reviewed frames to export")
    names = list(class_names)
    class_ids = {n: i for i, n in enumerate(names)}
    stage = _prepare(out)
    split_of = camera_split([f.camera for f in frames])
    summary = Summary(out_dir=out, class_names=names)
    for camera, split in sorted(split_of.items()):
        summary.cameras[split].append(camera)
    kept: dict[str, list[tuple[ReviewFrame, int]]] = {}  # camera -> (frame, dhash) written
    manifest: list[dict[str, Any]] = []
    try:
        ordered = sorted(one_per_frame(frames), key=lambda f: (f.camera, _preference(f)))
        for frame in tqdm(ordered, desc="reviewed frames", unit="frame", disable=None):
            data = read_image(frame.frame_sha256)
            grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
            if data is None or grey is None:
                summary.missing += 1
                log.warning(
                    "frame %s of sighting %s: missing or not an image",
                    frame.frame_sha256[:12],
                    frame.sighting_id,
                )
                continue
            code = dhash(grey)
            seen = kept.setdefault(frame.camera, [])
            if any(
                _same_place(frame, other) and bin(code ^ other_code).count("1") <= DHASH_MAX_BITS
                for other, other_code in seen
            ):
                summary.duplicates += 1
                continue
            seen.append((frame, code))
            height, width = grey.shape[:2]
            split = split_of[frame.camera]
            rows: list[YoloRow] = []
            for box in frame.labels:
                if box.class_name not in class_ids:
                    summary.unknown_classes[box.class_name] += 1
                    continue
                row = _yolo(box, width, height, class_ids[box.class_name])
                if row is not None:
                    rows.append(row)
                    summary.boxes[split][box.class_name] += 1
            rejected = [
                r
                for r in (_yolo(b, width, height, class_ids.get(b.class_name, -1)) for b in frame.rejected)
                if r is not None
            ]
            ext = next((e for magic, e in _EXT.items() if data.startswith(magic)), ".jpg")
            stem = f"{_safe(frame.camera)}-{frame.frame_sha256[:16]}"
            (stage / "images" / split / f"{stem}{ext}").write_bytes(data)
            (stage / "labels" / split / f"{stem}.txt").write_text(
                "".join(f"{_line(r)}\n" for r in rows), encoding="utf-8"
            )
            summary.frames[split] += 1
            summary.rejected[split] += len(rejected)
            summary.negatives[split] += not rows
            manifest.append(
                {
                    "image": f"images/{split}/{stem}{ext}",
                    "split": split,
                    "camera_id": frame.camera_id,
                    "case_id": frame.case_id,
                    "sighting_id": frame.sighting_id,
                    "also": [{"case_id": c, "sighting_id": i} for c, i in frame.others],
                    "frame_sha256": frame.frame_sha256,
                    "size": [width, height],
                    "decisions": list(frame.decisions),
                    "labels": [_line(r) for r in rows],
                    "rejected": [_line(r) for r in rejected],
                }
            )
        if not manifest:
            raise FromReviewsError("none of the reviewed frames could be read from the evidence store")
        data_yaml: dict[str, Any] = {
            "train": "images/train",
            "val": "images/val",
            "names": dict(enumerate(names)),
        }
        header = (
            f"# Written by `gridpatrol dataset from-reviews`{source}.\n"
            "# Operators' review decisions: confirmed and corrected boxes labelled, detections rejected as\n"
            f"# false left unlabelled (listed in {MANIFEST}). Split by camera. No `path:` key: ultralytics\n"
            "# resolves the splits relative to this file's folder.\n"
        )
        (stage / "data.yaml").write_text(
            header + yaml.safe_dump(data_yaml, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        (stage / MANIFEST).write_text(
            json.dumps({"class_names": names, "splits": split_of, "images": manifest}, indent=1) + "\n",
            encoding="utf-8",
        )
        _install(stage, out)
    except OSError as exc:
        raise FromReviewsError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already after a finished export
    return summary
