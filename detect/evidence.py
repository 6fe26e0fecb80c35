"""Evidence images for an incident: the best frame annotated, a crop of the object, the raw frame.

Each file is JPEG, written atomically (temp file, then rename) under
`<out_dir>/evidence/<incident id>/<role>-f<frame index>.jpg`, and described by an EvidenceFile with
its SHA-256 so the case service can verify it was not altered on the way.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from detect.values import Box, EvidenceFile

BOX_COLOUR = (0, 0, 255)  # BGR red
TEXT_COLOUR = (255, 255, 255)


def _encode(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _label_lines(label: str, ts: float, wall_time: datetime | None, camera: str) -> list[str]:
    when = wall_time.isoformat(timespec="seconds") if wall_time else f"t={ts:.1f}s"
    return [label, f"{camera}  {when}"]


def annotate(image: np.ndarray, box: Box, lines: list[str]) -> np.ndarray:
    """A copy of a BGR image with the box drawn and text lines in a banner above it."""
    out = image.copy()
    h, w = out.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thickness = max(2, round(min(h, w) / 300))
    cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
    scale = max(0.5, min(h, w) / 900)
    line_h = int(28 * scale) + 6
    top = y1 - line_h * len(lines) if y1 - line_h * len(lines) >= 0 else min(y2, h - line_h * len(lines))
    top = max(0, top)
    for i, text in enumerate(lines):
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y = top + i * line_h
        x = min(max(0, x1), max(0, w - tw - 6))
        cv2.rectangle(out, (x, y), (x + tw + 6, y + line_h), BOX_COLOUR, -1)
        cv2.putText(
            out, text, (x + 3, y + line_h - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, 1, cv2.LINE_AA
        )
    return out


def crop(image: np.ndarray, box: Box, margin_ratio: float) -> np.ndarray:
    """The box grown by margin_ratio of its size on each side, clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin_ratio, (y2 - y1) * margin_ratio
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(round(x2 + mx))), min(h, int(round(y2 + my)))
    if right <= left or bottom <= top:
        return image.copy()
    return image[top:bottom, left:right].copy()


def write_evidence(
    out_dir: Path,
    incident_id: str,
    image: np.ndarray,
    box: Box,
    *,
    label: str,
    ts: float,
    wall_time: datetime | None,
    camera: str,
    jpeg_quality: int = 90,
    crop_margin_ratio: float = 0.15,
    frame_index: int = 0,
) -> tuple[EvidenceFile, ...]:
    """Write annotated, crop and raw JPEGs; paths in the result are relative to out_dir.

    File names carry the frame index, so an incident written when it fires and again, with a
    better frame, when it ends keeps both sets of files intact (each record's hashes stay true).
    """
    folder = Path("evidence") / incident_id
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    images = {
        "annotated": annotate(image, box, _label_lines(label, ts, wall_time, camera)),
        "crop": crop(image, box, crop_margin_ratio),
        "raw": image,
    }
    files = []
    for role, img in images.items():
        data = _encode(img, jpeg_quality)
        rel = folder / f"{role}-f{frame_index:06d}.jpg"
        _write(out_dir / rel, data)
        files.append(EvidenceFile(role=role, path=rel.as_posix(), sha256=hashlib.sha256(data).hexdigest()))
    return tuple(files)
