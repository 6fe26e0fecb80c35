"""Flat-ground projection (detect/ground.py, issue 12): a point placed on the road by hand, its pixel
computed here with the camera's own geometry (not with the module), comes back where it was; the
error the docs state for a pitch that is off by a degree holds; points beyond the range or above the
horizon have no position."""

from __future__ import annotations

import math

import pytest

from detect.ground import (
    GroundOffset,
    GroundTrack,
    Mounting,
    bearing_deg,
    distance_m,
    ground_offset,
    ground_position,
    offset_position,
)
from streams.frame import GeoPoint

W, H = 1280, 720


def pixel_of(ahead: float, right: float, m: Mounting) -> tuple[float, float]:
    """Where a road point `ahead` m along the camera's axis (yaw 0) and `right` m to its right shows:
    the point in the camera's frame (tilted down by the pitch) through a pinhole."""
    pitch = math.radians(m.pitch_deg)
    depth = ahead * math.cos(pitch) + m.height_m * math.sin(pitch)  # along the optical axis
    down = -ahead * math.sin(pitch) + m.height_m * math.cos(pitch)
    focal = (W / 2) / math.tan(math.radians(m.hfov_deg) / 2)
    return W / 2 + focal * right / depth, H / 2 + focal * down / depth


@pytest.mark.parametrize(
    ("height", "pitch", "hfov", "ahead", "right"),
    [
        (1.5, 10.0, 90.0, 10.0, 3.0),  # the case: 10 m ahead, 3 m right
        (1.3, 5.0, 120.0, 10.0, -3.0),  # a wide dashcam, a point on the left
        (2.5, 20.0, 70.0, 6.0, 1.0),  # a van's roof camera looking down
        (1.5, 0.0, 90.0, 25.0, 0.0),  # level camera, far ahead
    ],
)
def test_a_known_road_point_comes_back_within_a_metre(
    height: float, pitch: float, hfov: float, ahead: float, right: float
) -> None:
    m = Mounting(height_m=height, pitch_deg=pitch, hfov_deg=hfov)
    u, v = pixel_of(ahead, right, m)
    offset = ground_offset(u, v, W, H, m)
    assert offset is not None
    assert math.hypot(offset.ahead_m - ahead, offset.right_m - right) < 1.0
    assert offset.ahead_m == pytest.approx(ahead, abs=0.01)  # exact on flat ground, mounting known
    assert offset.right_m == pytest.approx(right, abs=0.01)


def test_in_wgs84_from_the_vehicles_position_and_heading() -> None:
    m = Mounting(height_m=1.5, pitch_deg=10.0, hfov_deg=90.0)
    vehicle = GeoPoint(30.2741, 120.1551)  # Hangzhou
    u, v = pixel_of(10.0, 3.0, m)
    box = (u - 40, v - 80, u + 40, v)  # the object's bottom-centre at (u, v)
    for heading in (0.0, 90.0, 225.0):  # 10 m ahead and 3 m right, whichever way the car drives
        place = ground_position(box, (W, H), m, vehicle, heading)
        assert place is not None
        assert distance_m(vehicle, place) == pytest.approx(math.hypot(10, 3), abs=0.05)
        expected = (heading + math.degrees(math.atan2(3, 10))) % 360
        assert bearing_deg(vehicle, place) == pytest.approx(expected, abs=0.1)


def test_a_side_camera_turns_with_its_yaw() -> None:
    ahead_cam, right_cam = 8.0, 0.0  # straight out of a camera looking right (yaw 90)
    m = Mounting(height_m=1.5, pitch_deg=10.0, hfov_deg=90.0, yaw_deg=90.0)
    u, v = pixel_of(ahead_cam, right_cam, Mounting(height_m=1.5, pitch_deg=10.0, hfov_deg=90.0))
    offset = ground_offset(u, v, W, H, m)
    assert offset is not None
    assert offset.ahead_m == pytest.approx(0.0, abs=0.01)
    assert offset.right_m == pytest.approx(8.0, abs=0.01)
    north = offset_position(GeoPoint(0.0, 0.0), 0.0, offset)  # heading north: 8 m east
    assert distance_m(GeoPoint(0.0, 0.0), north) == pytest.approx(8.0, abs=0.01)
    assert bearing_deg(GeoPoint(0.0, 0.0), north) == pytest.approx(90.0, abs=0.1)


def test_a_degree_of_pitch_error_moves_a_point_10_m_ahead_by_about_the_stated_metre() -> None:
    true = Mounting(height_m=1.5, pitch_deg=10.0, hfov_deg=90.0)
    u, v = pixel_of(10.0, 0.0, true)
    for wrong_pitch in (9.0, 11.0):
        offset = ground_offset(u, v, W, H, Mounting(height_m=1.5, pitch_deg=wrong_pitch, hfov_deg=90.0))
        assert offset is not None
        assert 0.8 < abs(offset.ahead_m - 10.0) < 1.6  # the docstring says ~1.2 m


def test_no_position_above_the_horizon_or_beyond_the_range() -> None:
    m = Mounting(height_m=1.5, pitch_deg=0.0, hfov_deg=90.0, max_range_m=40.0)
    assert ground_offset(W / 2, H / 2 - 10, W, H, m) is None  # above the horizon
    assert ground_offset(W / 2, H / 2, W, H, m) is None  # on it
    u, v = pixel_of(60.0, 0.0, m)
    assert ground_offset(u, v, W, H, m) is None  # 60 m away: beyond the range
    u, v = pixel_of(30.0, 0.0, m)
    assert ground_offset(u, v, W, H, m) is not None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"height_m": 0.0}, "height_m"),
        ({"height_m": 25.0}, "height_m"),
        ({"pitch_deg": 95.0}, "pitch_deg"),
        ({"hfov_deg": 5.0}, "hfov_deg"),
        ({"hfov_deg": 180.0}, "hfov_deg"),
        ({"max_range_m": 0.0}, "max_range_m"),
    ],
)
def test_an_impossible_mounting_is_named(kwargs: dict[str, float], field: str) -> None:
    given = {"height_m": 1.5, "pitch_deg": 10.0, "hfov_deg": 90.0} | kwargs
    with pytest.raises(ValueError, match=field):
        Mounting(**given)


def _drive_by(object_speed_mps: float, patrol_speed_mps: float = 8.0) -> GroundTrack:
    """A patrol car driving north at patrol_speed_mps past an object 3 m to its right that starts 30
    m ahead and moves north at object_speed_mps: each second, the object's pixel as the camera sees
    it (computed here), projected back and placed from the car's position."""
    m = Mounting(height_m=1.5, pitch_deg=8.0, hfov_deg=100.0)
    start = GeoPoint(30.2600, 120.1500)
    track = GroundTrack()
    for t in range(4):
        car = offset_position(start, 0.0, GroundOffset(patrol_speed_mps * t, 0.0))
        ahead = 30.0 + (object_speed_mps - patrol_speed_mps) * t
        u, v = pixel_of(ahead, 3.0, m)
        place = ground_position((u - 30, v - 60, u + 30, v), (W, H), m, car, 0.0)
        assert place is not None
        track.add(float(t), car, place)
    return track


def test_a_parked_car_stays_put_on_the_ground_while_traffic_moves() -> None:
    parked = _drive_by(object_speed_mps=0.0)
    assert parked.stationary() is True
    assert (
        distance_m(parked.centre(), offset_position(GeoPoint(30.26, 120.15), 0.0, GroundOffset(30.0, 3.0)))
        < 0.1
    )
    assert _drive_by(object_speed_mps=6.0).stationary() is False  # traffic at 22 km/h
    assert _drive_by(object_speed_mps=10.0).stationary() is False  # overtaking the patrol
    assert _drive_by(object_speed_mps=0.0, patrol_speed_mps=1.0).stationary() is None  # 3 m: no verdict
    short = GroundTrack()
    short.add(0.0, GeoPoint(30.0, 120.0), GeoPoint(30.0001, 120.0))
    assert short.stationary() is None  # one sighting says nothing
