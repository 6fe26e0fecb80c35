"""The street-vending rule on a real street-level photo of a stall, through the real model.

cn-garbage val holds one photo of a vendor's stall on a Chinese pavement (000692, in ../shared, never
trained on): a red umbrella over a table with a scale and goods under a blue cover, a chair beside it and
a white umbrella of the next stall at the right edge, next to two garbage bins. Read off the photo by
eye (640 x 640 px), not from a model's output. The photo stands for a still camera watching that
pavement: the same frame every 5 s for longer than the rule's dwell (300 s, the default site's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PHOTO = "datasets/cn-garbage/images/val/000692_jpg.rf.e0c72b3d035bf891fa119aaac5cb1302.jpg"
UMBRELLA = (380.0, 197.0, 605.0, 290.0)  # by eye: the red umbrella's canopy over the stall
FRAMES = 70  # one every 5 s: 345 s, over the 300 s dwell


def _zone(zone_id: str, kind: str, x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"id": zone_id, "kind": kind, "points_norm": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]}


def _site(zones: list[dict]):  # noqa: ANN202
    """The embedded default site (shipped model, its size, backend and rules) with one camera."""
    from detect.config import load_config, parse_config

    base = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    base["cameras"].append({"id": "pavement-cam", "zones": zones})
    return parse_config(base, base_dir=REPO / "configs")


@pytest.fixture(scope="module")
def footage(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    photo = shared_dir / PHOTO
    if not photo.is_file():
        pytest.skip(f"{photo} is missing")
    folder = tmp_path_factory.mktemp("still-camera")
    for i in range(FRAMES):
        (folder / f"frame_{i:03d}.jpg").symlink_to(photo)
    return folder


def _inside(box: tuple[float, ...], outer: tuple[float, ...]) -> float:
    """The share of box's area inside outer."""
    w = max(0.0, min(box[2], outer[2]) - max(box[0], outer[0]))
    h = max(0.0, min(box[3], outer[3]) - max(box[1], outer[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


def _stalls(footage: Path, zones: list[dict], out: Path) -> list:
    from detect.pipeline import detect_footage

    site = _site(zones)
    incidents = detect_footage(footage, site, out_dir=out, camera_id="pavement-cam", image_fps=0.2)
    return [i for i in incidents if i.category == "street_vending"]


@pytest.mark.slow
def test_a_stall_on_a_no_vending_pavement_is_an_incident(footage: Path, tmp_path: Path) -> None:
    (stall,) = _stalls(footage, [_zone("pavement", "no_vending", 0.5, 0.25, 1.0, 0.8)], tmp_path)
    assert stall.zone_id == "pavement"
    assert stall.object_kind == "stall"  # a cluster of cues (this model has no stall class)
    assert _inside(UMBRELLA, stall.box) >= 0.9
    assert stall.last_seen_ts - stall.first_seen_ts >= 300.0
    assert stall.evidence and all((tmp_path / e.path).is_file() for e in stall.evidence)


@pytest.mark.slow
def test_the_same_stall_outside_a_no_vending_zone_is_not(footage: Path, tmp_path: Path) -> None:
    """Only the bins' corner is a no-vending zone: the stall stands outside it."""
    assert _stalls(footage, [_zone("bins", "no_vending", 0.0, 0.3, 0.5, 1.0)], tmp_path) == []
