from datetime import UTC, datetime, time

import pytest

from detect.config import Zone
from detect.zones import ZoneMap, in_span

SQUARE = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6)]


@pytest.mark.parametrize(
    ("point_px", "expected"),
    [
        ((400, 400), True),  # inside
        ((100, 100), False),  # outside, above-left
        ((700, 400), False),  # outside, right
        ((200, 400), True),  # on the left edge
        ((600, 600), True),  # on a corner
        ((400, 601), False),  # one pixel below the bottom edge
    ],
)
def test_point_in_zone_inside_outside_edge(point_px, expected):
    zones = ZoneMap([Zone(id="z", kind="no_parking", points_norm=SQUARE)])
    assert bool(zones.zones_at(point_px, (1000, 1000))) is expected


def test_zone_kind_filter():
    zones = ZoneMap([Zone(id="z", kind="no_vending", points_norm=SQUARE)])
    assert zones.zones_at((400, 400), (1000, 1000), kind="no_parking") == []
    assert [z.id for z in zones.zones_at((400, 400), (1000, 1000), kind="no_vending")] == ["z"]


def test_normalised_points_scale_with_image_size():
    zones = ZoneMap([Zone(id="z", kind="no_parking", points_norm=SQUARE)])
    assert zones.zones_at((160, 90), (400, 225))  # centre of a small frame
    assert not zones.zones_at((160, 90), (1000, 1000))


@pytest.mark.parametrize(
    ("t", "start", "end", "inside"),
    [
        (time(8, 0), time(7, 0), time(22, 0), True),
        (time(7, 0), time(7, 0), time(22, 0), True),  # start is inclusive
        (time(22, 0), time(7, 0), time(22, 0), False),  # end is exclusive
        (time(23, 30), time(22, 0), time(6, 0), True),  # wraps midnight
        (time(3, 0), time(22, 0), time(6, 0), True),
        (time(12, 0), time(22, 0), time(6, 0), False),
    ],
)
def test_hour_spans(t, start, end, inside):
    assert in_span(t, start, end) is inside


@pytest.mark.parametrize(
    ("wall", "active"),
    [
        (datetime(2026, 11, 29, 9, 0), True),  # naive: camera-local time
        (datetime(2026, 11, 29, 23, 0), False),
        (datetime(2026, 11, 29, 1, 0, tzinfo=UTC), True),  # 09:00 in Asia/Shanghai
        (datetime(2026, 11, 29, 15, 0, tzinfo=UTC), False),  # 23:00 in Asia/Shanghai
        (None, True),  # unknown time: enforced
    ],
)
def test_active_hours_use_camera_time_zone(wall, active):
    zone = Zone(id="z", kind="no_vending", points_norm=SQUARE, active_hours=["07:00-22:00"])
    zones = ZoneMap([zone], "Asia/Shanghai")
    assert bool(zones.zones_at((400, 400), (1000, 1000), wall_time=wall)) is active
