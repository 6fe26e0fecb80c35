"""The annotated evidence frame: the zone the incident was in is outlined, and the label stays inside."""

from __future__ import annotations

import numpy as np
import pytest

from detect.evidence import annotate

LINES = ["illegal_parking: car 0.91", "demo-cam-01  2026-12-03T08:15:02+08:00"]


def _white(image: np.ndarray) -> np.ndarray:
    return np.all(image > 200, axis=2)


def test_the_zone_is_outlined() -> None:
    image = np.zeros((180, 320, 3), np.uint8)
    out = annotate(
        image, (200.0, 100.0, 260.0, 150.0), LINES, [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    )
    b, g, r = (int(v) for v in out[120, 160])  # on the zone's right edge, x = 0.5 of the width
    assert b < 80 and g > 150 and r > 150  # yellow
    assert not out[120, 80].any()  # inside the zone: untouched
    assert not annotate(image, (200.0, 100.0, 260.0, 150.0), LINES)[120, 160].any()  # no zone, no outline


@pytest.mark.parametrize(("width", "height"), [(240, 120), (160, 90), (1920, 1080)])
@pytest.mark.parametrize("box", [(180.0, 60.0, 235.0, 110.0), (0.0, 0.0, 40.0, 30.0)])
def test_the_label_stays_inside_the_image(width: int, height: int, box: tuple[float, ...]) -> None:
    x1, y1, x2, y2 = box
    scaled = (x1 * width / 240, y1 * height / 120, x2 * width / 240, y2 * height / 120)
    out = annotate(np.zeros((height, width, 3), np.uint8), scaled, LINES)
    white = _white(out)
    assert white.any()
    assert not white[:, -2:].any() and not white[:, :2].any()  # text is never cut at the left or right edge
