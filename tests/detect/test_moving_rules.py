"""A moving camera's rules (detect/rules.py on the ground, issue 12), over scripted drive-bys: a patrol
car drives north along a kerb with a no-parking geofence; what its camera sees is computed here with
the camera's own geometry (tests.detect.test_ground.pixel_of), not with the module under test.

Parked vehicles in the fence fire as suspected sightings where they stand; traffic, vehicles outside
the fence or in a bay, and a car that pulls out once seen do not; the next parked car along the kerb
is a violation of its own even where the tracker lost both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detect.config import SiteConfig, parse_config
from detect.geofences import parse_geofences
from detect.ground import GroundOffset, Mounting, distance_m, offset_position
from detect.rules import RuleEngine, Violation
from detect.values import Detection
from streams.frame import Frame, GeoPoint
from tests.detect.test_ground import H, W, pixel_of

MOUNTING = Mounting(height_m=1.5, pitch_deg=8.0, hfov_deg=100.0)
START = GeoPoint(30.2600, 120.1500)  # the patrol car's first position; it drives due north
IMAGE = np.zeros((H, W, 3), dtype=np.uint8)
FPS = 5


def at(ahead: float, right: float) -> GeoPoint:
    """A point `ahead` m north of START and `right` m east of it."""
    return offset_position(START, 0.0, GroundOffset(ahead, right))


def strip(
    fence_id: str, kind: str, east_from: float, east_to: float, north_from: float = -50, north_to: float = 500
):
    corners = [
        at(north_from, east_from),
        at(north_from, east_to),
        at(north_to, east_to),
        at(north_to, east_from),
    ]
    ring = [[p.lon, p.lat] for p in [*corners, corners[0]]]
    return {
        "type": "Feature",
        "properties": {"id": fence_id, "kind": kind},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


KERB = strip("east-kerb", "no_parking", 1.5, 5.0)  # the right-hand kerb lane


def config(**rule: Any) -> SiteConfig:
    return parse_config(
        {
            "model": {"weights": "unused.pt"},
            "grace_s": 5.0,
            "kinds": {"car": "car"},
            "categories": {
                "illegal_parking": {
                    "kinds": ["car"],
                    "zone_kind": "no_parking",
                    "min_dwell_s": 120,  # a fixed camera's dwell: never reached by a car passing
                    "min_observations": 5,
                    "chalk": True,
                    **rule,
                }
            },
            "cameras": [
                {
                    "id": "patrol",
                    "mounting": {"height_m": 1.5, "pitch_deg": 8.0, "hfov_deg": 100.0},
                    "zones": [],
                }
            ],
        },
        base_dir=__import__("pathlib").Path("."),
    )


class Thing:
    """An object on the road: where it is at time t (metres north of START, metres east)."""

    def __init__(
        self,
        north: float,
        east: float,
        speed: float = 0.0,
        track_id: int | None = 1,
        pull_out_at: float | None = None,
        seen: tuple[float, float] = (4.0, 35.0),
    ) -> None:
        self.north, self.east, self.speed, self.track_id = north, east, speed, track_id
        self.pull_out_at = pull_out_at
        self.seen = seen  # metres ahead of the patrol car between which the camera sees it

    def where(self, t: float) -> tuple[float, float]:
        if self.pull_out_at is not None:
            moving = max(0.0, t - self.pull_out_at)
            return self.north + 12.0 * moving, self.east
        return self.north + self.speed * t, self.east


def drive(
    things: list[Thing],
    *,
    seconds: float = 8.0,
    patrol_speed: float = 8.0,
    fences: list[dict] | None = None,
    heading: float | None = 0.0,
    **rule: Any,
):
    """Run the rules over the drive: fired and closed violations (after finish)."""
    engine = RuleEngine(
        config(**rule),
        config(**rule).cameras[0],
        "patrol-upload",
        geofences=parse_geofences(
            {"type": "FeatureCollection", "features": fences if fences is not None else [KERB]}
        ),
    )
    fired: list[Violation] = []
    closed: list[Violation] = []
    for i in range(int(seconds * FPS) + 1):
        t = i / FPS
        car_north = patrol_speed * t
        detections = []
        for thing in things:
            north, east = thing.where(t)
            ahead = north - car_north
            if not thing.seen[0] <= ahead <= thing.seen[1]:
                continue  # out of the camera's view, or hidden
            u, v = pixel_of(ahead, east, MOUNTING)
            half = 900.0 / ahead  # a car ~1.8 m wide at the focal length of this camera
            detections.append(
                Detection(
                    box=(u - half, v - half, u + half, v),
                    score=0.8,
                    class_name="car",
                    kind="car",
                    track_id=thing.track_id,
                )
            )
        frame = Frame(
            IMAGE, ts=t, source_id="patrol-upload", index=i, position=at(car_north, 0.0), heading=heading
        )
        result = engine.step(frame, detections, camera_static=False)
        fired += result.fired
        closed += result.closed
    closed += engine.finish()
    return fired, closed


def test_a_parked_car_in_the_fence_is_a_suspected_sighting_where_it_stands() -> None:
    fired, closed = drive([Thing(north=30.0, east=3.0)])
    assert len(fired) == 1 and len(closed) == 1
    v = closed[0]
    assert v.suspected and v.fence_id == "east-kerb" and v.fence_kind == "no_parking"
    centre = v.ground_centre()
    assert centre is not None and distance_m(centre, at(30.0, 3.0)) < 1.0


def test_without_chalk_a_single_pass_is_no_suspicion() -> None:
    _, closed = drive([Thing(north=30.0, east=3.0)], chalk=False)
    assert len(closed) == 1 and not closed[0].suspected


@pytest.mark.parametrize(
    ("thing", "why"),
    [
        (Thing(north=20.0, east=3.0, speed=6.0), "traffic at 22 km/h in the kerb lane"),
        (Thing(north=10.0, east=3.0, speed=11.0), "overtaking the patrol car"),
        (Thing(north=30.0, east=-3.0), "parked on the other side, outside the fence"),
        (Thing(north=30.0, east=3.0, pull_out_at=2.0), "seen parked, then pulls out"),
    ],
    ids=["traffic", "overtaking", "outside-fence", "pulls-out"],
)
def test_no_sighting(thing: Thing, why: str) -> None:
    _, closed = drive([thing])
    assert closed == [], why


def test_a_parking_bay_lifts_the_fence() -> None:
    bay = strip("bay-12", "parking_allowed", 1.5, 5.0, north_from=25.0, north_to=35.0)
    _, closed = drive(
        [Thing(north=30.0, east=3.0), Thing(north=45.0, east=3.0, track_id=2)], fences=[KERB, bay]
    )
    assert len(closed) == 1
    centre = closed[0].ground_centre()
    assert centre is not None and distance_m(centre, at(45.0, 3.0)) < 1.0


def test_the_next_car_along_the_kerb_is_its_own_violation_when_the_tracker_lost_both() -> None:
    # a van hides the first car once it is 18 m ahead; the next car, 10 m further on, comes out from
    # behind it there, at the pixels where the first was last seen, and the tracker gives neither an id
    first = Thing(north=30.0, east=3.0, track_id=None, seen=(18.0, 35.0))
    second = Thing(north=40.0, east=3.0, track_id=None, seen=(4.0, 18.0))
    _, closed = drive([first, second], seconds=9.0)
    assert len(closed) == 2
    centres = sorted(distance_m(START, v.ground_centre()) for v in closed)  # type: ignore[arg-type]
    assert centres[1] - centres[0] == pytest.approx(10.0, abs=1.0)


def test_a_standing_patrol_car_falls_back_to_the_image_zones() -> None:
    # no heading (the vehicle stands): not placed on the ground; this camera has no image zones
    fired, closed = drive([Thing(north=30.0, east=3.0)], heading=None, patrol_speed=0.0)
    assert fired == [] and closed == []
