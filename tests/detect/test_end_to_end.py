"""The real model on real pixels, through the whole pipeline and the CLI (slow)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detect.config import load_config, parse_config
from detect.pipeline import detect_footage

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CLIP = SHARED / "footage" / "highway-dashcam-1.mp4"
WEIGHTS = SHARED / "weights" / "yolo26n-coco.pt"

pytestmark = pytest.mark.slow


def bus_jpg() -> Path:
    from detect.backends import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


def site(zone_points, min_dwell_s: float, analysis_fps: float | None = None):
    base = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    base["model"]["weights"] = str(WEIGHTS)
    base["analysis_fps"] = analysis_fps
    base["categories"]["illegal_parking"]["min_dwell_s"] = min_dwell_s
    base["default_camera"] = None
    base["cameras"] = [
        {"id": "fixed-cam", "zones": [{"id": "kerb", "kind": "no_parking", "points_norm": zone_points}]}
    ]
    return parse_config(base, base_dir=REPO)


AROUND_BUS = [[0.0, 0.15], [1.0, 0.15], [1.0, 0.78], [0.0, 0.78]]  # bus bottom-centre is at y = 0.72
ELSEWHERE = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.1], [0.0, 0.1]]


@pytest.fixture(scope="module")
def bus_sequence(tmp_path_factory) -> Path:
    """bus.jpg held as a fixed camera's image sequence: 16 frames, one a second (t = 0..15 s)."""
    folder = tmp_path_factory.mktemp("bus-seq")
    for i in range(16):
        shutil.copyfile(bus_jpg(), folder / f"frame_{i:03d}.jpg")
    return folder


@pytest.fixture(scope="module")
def detector():
    from detect.yolo import YoloDetector

    config = load_config(REPO / "configs" / "site.yaml")
    return YoloDetector(WEIGHTS, kinds=config.kinds, imgsz=640)


@pytest.mark.parametrize(
    ("zone", "min_dwell_s", "expected"),
    [
        (AROUND_BUS, 10.0, 1),  # the bus stands 15 s in the zone: one incident
        (AROUND_BUS, 20.0, 0),  # not yet: dwell not reached before the footage ends
        (ELSEWHERE, 10.0, 0),  # the zone is elsewhere
    ],
    ids=["dwell-passed", "dwell-not-reached", "zone-elsewhere"],
)
def test_bus_in_no_parking_zone(bus_sequence, detector, tmp_path, zone, min_dwell_s, expected):
    config = site(zone, min_dwell_s)
    incidents = list(detect_footage(bus_sequence, config, out_dir=tmp_path, image_fps=1.0, detector=detector))
    assert len(incidents) == expected
    if expected:
        inc = incidents[0]
        assert inc.category == "illegal_parking" and inc.object_kind == "bus"
        assert inc.first_seen_ts == 0.0 and inc.last_seen_ts == 15.0
        assert inc.confidence_median > 0.8
        x1, y1, x2, y2 = inc.box
        assert x1 < 50 and x2 > 750 and 180 < y1 < 260 and 740 < y2 < 800  # the bus, 810x1080 image
        assert all((tmp_path / e.path).stat().st_size > 1000 for e in inc.evidence)
        strip = [e for e in inc.evidence if e.role.startswith("dwell_")]
        assert [(e.role, e.ts) for e in strip] == [
            ("dwell_first", 0.0),
            ("dwell_middle", 8.0),
            ("dwell_last", 15.0),
        ]


def test_highway_dashcam_gives_no_parking_incidents(detector, tmp_path):
    """All traffic moves: a no_parking zone over the travel lanes with a 5 s dwell gives nothing."""
    lanes = [[0.05, 0.45], [0.95, 0.45], [0.95, 1.0], [0.05, 1.0]]
    config = site(lanes, 5.0, analysis_fps=5.0)
    incidents = list(detect_footage(CLIP, config, out_dir=tmp_path, detector=detector))
    assert incidents == []


def test_cli_detect_and_config_check(tmp_path, bus_sequence):
    config = site(AROUND_BUS, 10.0).model_dump(mode="json")
    import yaml

    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    gridpatrol = [sys.executable, "-m", "api.cli"]
    ok = subprocess.run(
        [*gridpatrol, "config", "check", str(cfg_path)], capture_output=True, text=True, cwd=REPO
    )
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "out"
    # the camera's GPS track (CSV, Unix seconds): 0.0001 degrees of latitude a second
    start = 1795136400  # 2026-11-20T01:00:00Z
    track = tmp_path / "track.csv"
    track.write_text(f"timestamp,lat,lon\n{start},30.2640,120.1480\n{start + 20},30.2660,120.1480\n")
    run = subprocess.run(
        [
            *gridpatrol,
            "detect",
            str(bus_sequence),
            "--config",
            str(cfg_path),
            "--out",
            str(out),
            "--image-fps",
            "1",
            "--track",
            str(track),
            "--start-time",
            "2026-11-20T09:00:02+08:00",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = (out / "incidents.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["category"] == "illegal_parking" and record["object_kind"] == "bus"
    lat, lon = record["position"]  # the track's position at the evidence frame, 2 s into the track
    assert lat == pytest.approx(30.2640 + 0.0001 * (2 + record["best_ts"])) and lon == pytest.approx(120.148)
    assert "incidents=1" in run.stderr  # the progress bar counts incidents

    config["categories"]["illegal_parking"]["min_dwel_s"] = 3  # a typo
    cfg_path.write_text(yaml.safe_dump(config))
    bad = subprocess.run(
        [*gridpatrol, "config", "check", str(cfg_path)], capture_output=True, text=True, cwd=REPO
    )
    assert bad.returncode != 0
    assert "categories.illegal_parking.min_dwel_s" in bad.stderr and "unknown key" in bad.stderr
