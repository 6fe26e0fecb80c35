"""A patrol car's camera on real pixels, with the shipped model (issue 12): parked or moving, seen from a
driving car.

1. A synthetic drive-by built from real stills (datasets/street-samples.yaml, not in ../shared, never
   trained on): the rear of a real car (car-rear-motion-blur.jpg) pasted on an empty real street
   (cobbled-street.jpg) and the frames zoomed into the image centre, as a forward-looking camera with
   no pitch sees the road coming closer while its vehicle drives straight ahead. A zoom by s moves a
   road point at distance Z to where the same point shows from Z / s, so the patrol car driving
   straight on at SPEED (15 km/h) matches the pasted car standing still when the frame at time t is
   zoomed by Z0 / (Z0 - SPEED t). The same
   frames with the car pasted at one place in every frame are a car travelling with the patrol car
   (where the parked car shows halfway through: the model sees it at the sizes it sees the parked
   one). The first must be a suspected parking sighting where the car stands; the second nothing.
   What this proves: the model finds the car while it grows in the image, the ground projection and
   the stationary test separate the two motions on real detections (their box jitter included), and
   the suspected sighting comes out of the pipeline with its evidence and ground position. What it
   does not: the background is a flat picture (its houses zoom as if they were painted on the road);
   real roads, camera pitch and GPS noise are not in it (their errors are in detect/ground.py).
2. The shared highway dashcam clip with a synthetic straight track at two assumed speeds (the clip has
   no track) and a no-parking geofence over the whole road: every vehicle moves, so no parking
   sighting at all.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.ground import GroundOffset, distance_m, offset_position
from streams.frame import GeoPoint
from streams.gps import Fix, GpsTrack

REPO = Path(__file__).resolve().parents[2]
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def samples() -> Path:
    from detect.model.samples import load_sample_recipe, missing_samples

    missing = missing_samples(load_sample_recipe(REPO / "datasets" / "street-samples.yaml"), SAMPLES)
    if missing:
        pytest.skip(f"street samples not fetched ({', '.join(missing)}): run `gridpatrol dataset samples`")
    return SAMPLES


def _fences(tmp: Path) -> Path:
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


def _site(tmp: Path, mounting: dict):
    """The embedded default site (shipped model, rules) with a patrol camera of this mounting."""
    from detect.config import load_config, parse_config

    base = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    base["geofences"] = str(_fences(tmp))
    base["cameras"].append({"id": "patrol-test", "mounting": mounting, "zones": []})
    base["default_camera"] = "patrol-test"
    return parse_config(base, base_dir=REPO / "configs")


@pytest.fixture(scope="module")
def detector():
    from detect.config import load_config
    from detect.pipeline import build_detector

    return build_detector(load_config(REPO / "configs" / "site.yaml"))


def _zoom(image: np.ndarray, s: float) -> np.ndarray:
    """The image seen s times closer: its centre W/s x H/s, scaled back to W x H."""
    cw, ch = W / s, H / s
    x0, y0 = (W - cw) / 2, (H - ch) / 2
    matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, (W, H), flags=cv2.INTER_LINEAR)


def _paste(image: np.ndarray, car: np.ndarray, u: float, v: float, width: float) -> np.ndarray:
    """The car's picture `width` px wide with its bottom centre at (u, v)."""
    height = width * car.shape[0] / car.shape[1]
    x1, y1 = round(u - width / 2), round(v - height)
    scaled = cv2.resize(car, (round(u + width / 2) - x1, round(v) - y1), interpolation=cv2.INTER_AREA)
    out = image.copy()
    out[y1 : y1 + scaled.shape[0], x1 : x1 + scaled.shape[1]] = scaled
    return out


def _drive_by(samples: Path, detector, folder: Path, *, parked: bool) -> list[np.ndarray]:
    street = cv2.resize(cv2.imread(str(samples / "cobbled-street.jpg")), (W, H), interpolation=cv2.INTER_AREA)
    rear = cv2.imread(str(samples / "car-rear-motion-blur.jpg"))
    box = max((d for d in detector.detect(rear) if d.kind == "car"), key=lambda d: d.score).box
    car = rear[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
    u0, v0 = W / 2 + FOCAL * RIGHT / Z0, H / 2 + FOCAL * HEIGHT_M / Z0  # where the car stands at first
    width0 = FOCAL * CAR_WIDTH_M / Z0
    still = _paste(street, car, u0, v0, width0)
    # the travelling car: where the parked one shows halfway, every frame (Z0 / MID ahead, keeping pace)
    um, vm, widthm = W / 2 + MID * (u0 - W / 2), H / 2 + MID * (v0 - H / 2), MID * width0
    folder.mkdir()
    frames = []
    for i in range(int(SECONDS * FPS) + 1):
        s = _scale(i / FPS)
        image = _zoom(still, s) if parked else _paste(_zoom(street, s), car, um, vm, widthm)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
        frames.append(image)
    return frames


def _scale(t: float) -> float:
    """The zoom at time t: the parked car Z0 - SPEED t ahead instead of Z0."""
    return Z0 / (Z0 - SPEED * t)


def _track() -> GpsTrack:
    """Due north at SPEED from START: what makes the zoom a drive."""
    fixes = []
    for i in range(int(SECONDS * FPS) + 1):
        p = offset_position(START, 0.0, GroundOffset(SPEED * i / FPS, 0.0))
        fixes.append(Fix(T0 + timedelta(seconds=i / FPS), p.lat, p.lon, heading_deg=0.0))
    return GpsTrack(fixes, name="drive-by")


@pytest.mark.parametrize("parked", [True, False], ids=["parked", "travelling-with-the-patrol"])
def test_a_parked_car_seen_from_a_driving_patrol_car_is_suspected_and_traffic_is_not(
    samples: Path, detector, tmp_path: Path, parked: bool
) -> None:
    from detect.pipeline import detect_footage

    site = _site(tmp_path, {"height_m": HEIGHT_M, "pitch_deg": 0.0, "hfov_deg": HFOV})
    folder = tmp_path / "frames"
    frames = _drive_by(samples, detector, folder, parked=parked)
    seen = sum(any(d.kind == "car" for d in detector.detect(f)) for f in frames)
    assert seen >= len(frames) // 2  # the model finds the car in both: only its motion differs
    incidents = list(
        detect_footage(
            folder, site, out_dir=tmp_path / "out", image_fps=FPS, track=_track(), detector=detector
        )
    )
    parking = [i for i in incidents if i.category == "illegal_parking"]
    if not parked:
        assert parking == []
        return
    assert len(parking) == 1
    sighting = parking[0]
    assert sighting.suspected and sighting.zone_id == "whole-road"
    assert sighting.position is not None
    where = offset_position(START, 0.0, GroundOffset(Z0, RIGHT))
    assert distance_m(GeoPoint(*sighting.position), where) < 2.0
    assert {e.role for e in sighting.evidence} >= {"annotated", "crop", "raw"}


@pytest.mark.parametrize("kmh", [80.0, 120.0])
def test_no_parking_sighting_on_the_highway_clip(
    shared_dir: Path, detector, tmp_path: Path, kmh: float
) -> None:
    """Every vehicle in the shared highway clip moves; with the whole road a no-parking geofence and the
    patrol car driving straight at an assumed speed (the clip has no track), none is a sighting."""
    from detect.pipeline import detect_footage

    clip = shared_dir / "footage" / "highway-dashcam-1.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} missing")
    site = _site(tmp_path, {"height_m": 1.3, "pitch_deg": 2.0, "hfov_deg": 90.0})
    fixes = []
    for i in range(0, 17):  # a fix a second over the 14 s clip
        p = offset_position(START, 0.0, GroundOffset(kmh / 3.6 * i, 0.0))
        fixes.append(Fix(T0 + timedelta(seconds=i), p.lat, p.lon))
    incidents = list(
        detect_footage(
            clip, site, out_dir=tmp_path / "out", track=GpsTrack(fixes, name="highway"), detector=detector
        )
    )
    assert [i for i in incidents if i.category == "illegal_parking"] == []
