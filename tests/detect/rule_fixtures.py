"""Builders shared by the rule and pipeline tests: a small site config and scripted frames."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from detect.config import SiteConfig, parse_config
from detect.values import Detection
from streams.frame import Frame

WIDTH, HEIGHT = 1000, 1000
BLANK = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)


def make_config(
    *,
    zones: list[dict[str, Any]] | None = None,
    grace_s: float = 10.0,
    categories: dict[str, dict[str, Any]] | None = None,
    extra_kinds: dict[str, str] | None = None,
) -> SiteConfig:
    """A config with one camera 'cam' whose default zone is the left half of the image."""
    if zones is None:
        zones = [{"id": "left", "kind": "no_parking", "points_norm": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]
    if categories is None:
        categories = {
            "illegal_parking": {
                "kinds": ["car", "truck"],
                "zone_kind": "no_parking",
                "min_dwell_s": 10,
                "min_median_conf": 0.4,
                "min_observations": 3,
            }
        }
    return parse_config(
        {
            "model": {"weights": "unused.pt"},
            "grace_s": grace_s,
            "kinds": {
                "car": "car",
                "truck": "truck",
                "umbrella": "umbrella",
                "dining table": "table",
                "chair": "chair",
                "garbage": "garbage",
                **(extra_kinds or {}),
            },
            "categories": categories,
            "cameras": [{"id": "cam", "zones": zones}],
        },
        base_dir=__import__("pathlib").Path("."),
    )


def car(
    box: tuple[float, float, float, float], track_id: int | None = 1, score: float = 0.8, kind: str = "car"
) -> Detection:
    return Detection(box=box, score=score, class_name=kind, kind=kind, track_id=track_id)


def frame(ts: float, index: int = 0, wall_time: datetime | None = None) -> Frame:
    return Frame(image=BLANK, ts=ts, source_id="cam", index=index, wall_time=wall_time)


def timeline(times: Iterable[float]) -> list[Frame]:
    return [frame(t, i) for i, t in enumerate(times)]
