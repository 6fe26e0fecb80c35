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

from datetime import timedelta
from pathlib import Path

import pytest

from detect.ground import GroundOffset, distance_m, offset_position
from streams.frame import GeoPoint
from streams.gps import Fix, GpsTrack
from tests.drive_by import (
    DRIVE_BY_MOUNTING,
    FPS,
    RIGHT,
    SAMPLES,
    START,
    T0,
    Z0,
    drive_by,
    drive_by_track,
    patrol_site,
    samples_dir,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def samples() -> Path:
    return samples_dir()


@pytest.fixture(scope="module")
def detector():
    from detect.config import load_config
    from detect.pipeline import build_detector

    return build_detector(load_config(SAMPLES.parents[1] / "configs" / "site.yaml"))


@pytest.mark.parametrize("parked", [True, False], ids=["parked", "travelling-with-the-patrol"])
def test_a_parked_car_seen_from_a_driving_patrol_car_is_suspected_and_traffic_is_not(
    samples: Path, detector, tmp_path: Path, parked: bool
) -> None:
    from detect.pipeline import detect_footage

    site = patrol_site(tmp_path, DRIVE_BY_MOUNTING)
    folder = tmp_path / "frames"
    frames = drive_by(samples, detector, folder, parked=parked)
    seen = sum(any(d.kind == "car" for d in detector.detect(f)) for f in frames)
    assert seen >= len(frames) // 2  # the model finds the car in both: only its motion differs
    incidents = list(
        detect_footage(
            folder, site, out_dir=tmp_path / "out", image_fps=FPS, track=drive_by_track(), detector=detector
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
    site = patrol_site(tmp_path, {"height_m": 1.3, "pitch_deg": 2.0, "hfov_deg": 90.0})
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
