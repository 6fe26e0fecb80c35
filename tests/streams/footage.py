"""Small footage made in tmp_path for the stream tests: videos, images, truncated copies."""

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frame_count: int, fps: float = 30.0, fourcc: str = "MJPG") -> Path:
    """A small video (160x90) whose frame i is filled with gray level 2 * i, written with OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (160, 90))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(frame_count):
        writer.write(np.full((90, 160, 3), 2 * i % 256, dtype=np.uint8))
    writer.release()
    return path


def write_image(path: Path, value: int, size: tuple[int, int] = (32, 24)) -> Path:
    """An image of size (width, height) filled with gray level `value`."""
    width, height = size
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, dtype=np.uint8))
    return path


def truncated_copy(source: Path, target: Path, keep: float) -> Path:
    """The first `keep` share of the bytes of `source`, as a camera's interrupted recording leaves it."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target
