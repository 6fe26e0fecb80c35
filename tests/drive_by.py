"""A synthetic drive-by from real stills, and the patrol site that sees it (tests/detect/test_drive_by.py
says what it proves and what it does not); shared by the detector tests and the end-to-end chalking test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.config import SiteConfig
from detect.ground import GroundOffset, offset_position
from streams.frame import GeoPoint
from streams.gps import Fix, GpsTrack

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "build" / "street-samples"
W, H = 640, 480
HEIGHT_M, HFOV = 1.4, 35.0
FOCAL = (W / 2) / np.tan(np.radians(HFOV / 2))
Z0, RIGHT = 22.0, 1.0  # the parked car: metres ahead at the first frame, metres right of the camera
CAR_WIDTH_M = 1.8
FPS, SECONDS, ZOOM = 5, 5.0, 3.5
MID = (1 + ZOOM) / 2
SPEED = Z0 * (1 - 1 / ZOOM) / SECONDS  # m/s: the patrol car's, up to Z0 / ZOOM from the parked car
START = GeoPoint(30.2600, 120.1500)
T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)


def samples_dir() -> Path:
    """The street samples (datasets/street-samples.yaml); the calling test is skipped when they are not
    fetched."""
    import pytest

    from detect.model.samples import load_sample_recipe, missing_samples

    missing = missing_samples(load_sample_recipe(REPO / "datasets" / "street-samples.yaml"), SAMPLES)
    if missing:
        pytest.skip(f"street samples not fetched ({', '.join(missing)}): run `gridpatrol dataset samples`")
    return SAMPLES


def fences(tmp: Path) -> Path:
    """A no-parking geofence 2 km a side around START: the whole road is no-parking."""
    d = 0.01
    ring = [[START.lon + x, START.lat + y] for x, y in ((-d, -d), (d, -d), (d, d), (-d, d), (-d, -d))]
    path = tmp / "fences.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "whole-road", "kind": "no_parking"},
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                    }
                ],
            }
        )
    )
    return path


def patrol_site_data(tmp: Path, mounting: dict[str, float]) -> dict[str, Any]:
    """The embedded default site (shipped model, rules) with a patrol camera of this mounting, the
    default camera, and the whole road no-parking; weights and fences as absolute paths."""
    from detect.config import load_config

    base = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    base["geofences"] = str(fences(tmp))
    base["cameras"].append({"id": "patrol-test", "mounting": mounting, "zones": []})
    base["default_camera"] = "patrol-test"
    return base


def patrol_site(tmp: Path, mounting: dict[str, float]) -> SiteConfig:
    from detect.config import parse_config

    return parse_config(patrol_site_data(tmp, mounting), base_dir=REPO / "configs")


DRIVE_BY_MOUNTING = {"height_m": HEIGHT_M, "pitch_deg": 0.0, "hfov_deg": HFOV}


def zoom(image: np.ndarray, s: float) -> np.ndarray:
    """The image seen s times closer: its centre W/s x H/s, scaled back to W x H."""
    cw, ch = W / s, H / s
    x0, y0 = (W - cw) / 2, (H - ch) / 2
    matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, (W, H), flags=cv2.INTER_LINEAR)


def paste(image: np.ndarray, car: np.ndarray, u: float, v: float, width: float) -> np.ndarray:
    """The car's picture `width` px wide with its bottom centre at (u, v)."""
    height = width * car.shape[0] / car.shape[1]
    x1, y1 = round(u - width / 2), round(v - height)
    scaled = cv2.resize(car, (round(u + width / 2) - x1, round(v) - y1), interpolation=cv2.INTER_AREA)
    out = image.copy()
    out[y1 : y1 + scaled.shape[0], x1 : x1 + scaled.shape[1]] = scaled
    return out


def drive_by(samples: Path, detector: Any, folder: Path, *, parked: bool) -> list[np.ndarray]:
    """The drive-by's frames (also written to `folder` as PNGs, one per 1/FPS s): the car parked, or
    keeping pace with the patrol car."""
    street = cv2.resize(cv2.imread(str(samples / "cobbled-street.jpg")), (W, H), interpolation=cv2.INTER_AREA)
    rear = cv2.imread(str(samples / "car-rear-motion-blur.jpg"))
    box = max((d for d in detector.detect(rear) if d.kind == "car"), key=lambda d: d.score).box
    car = rear[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
    u0, v0 = W / 2 + FOCAL * RIGHT / Z0, H / 2 + FOCAL * HEIGHT_M / Z0  # where the car stands at first
    width0 = FOCAL * CAR_WIDTH_M / Z0
    still = paste(street, car, u0, v0, width0)
    # the travelling car: where the parked one shows halfway, every frame (Z0 / MID ahead, keeping pace)
    um, vm, widthm = W / 2 + MID * (u0 - W / 2), H / 2 + MID * (v0 - H / 2), MID * width0
    folder.mkdir()
    frames = []
    for i in range(int(SECONDS * FPS) + 1):
        s = scale(i / FPS)
        image = zoom(still, s) if parked else paste(zoom(street, s), car, um, vm, widthm)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
        frames.append(image)
    return frames


def scale(t: float) -> float:
    """The zoom at time t: the parked car Z0 - SPEED t ahead instead of Z0."""
    return Z0 / (Z0 - SPEED * t)


def drive_by_track(start: datetime = T0) -> GpsTrack:
    """Due north at SPEED from START, from `start`: what makes the zoom a drive."""
    fixes = []
    for i in range(int(SECONDS * FPS) + 1):
        p = offset_position(START, 0.0, GroundOffset(SPEED * i / FPS, 0.0))
        fixes.append(Fix(start + timedelta(seconds=i / FPS), p.lat, p.lon, heading_deg=0.0))
    return GpsTrack(fixes, name="drive-by")


def drive_by_gpx(start: datetime) -> str:
    """drive_by_track as a GPX file's text (with the receiver's course)."""
    points = "".join(
        f'<trkpt lat="{f.lat:.8f}" lon="{f.lon:.8f}"><time>{f.time.isoformat().replace("+00:00", "Z")}</time>'
        f"<course>{f.heading_deg}</course></trkpt>"
        for f in drive_by_track(start)
    )
    return (
        '<?xml version="1.0"?><gpx version="1.1" creator="tests" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><trkseg>{points}</trkseg></trk></gpx>"
    )


def write_video(frames: list[np.ndarray], path: Path) -> Path:
    """The frames as an MJPG AVI at FPS (OpenCV's wheels carry no H.264 encoder)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (W, H))
    for image in frames:
        writer.write(image)
    writer.release()
    return path
