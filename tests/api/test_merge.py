"""The merge decision as a table: which case an incident is a sighting of, with no database."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from api.cases.merge import Candidate, MergeKey, MergePolicy, choose_case, distance_m

LAT, LON = 30.2741, 120.1551
T0 = datetime(2026, 11, 20, 9, 0, 0)
POLICY = MergePolicy(radius_m=15.0, window_h=24.0)


def north(metres: float) -> float:
    return LAT + metres / 111_195.0


def east(metres: float) -> float:
    return LON + metres / (111_195.0 * 0.8641)  # cos(30.27 deg)


KEY = MergeKey(category="illegal_parking", seen_at=T0, lat=LAT, lon=LON, plate=None, camera_id="cam-1")
CASE = Candidate(
    id=7,
    category="illegal_parking",
    status="pending_review",
    last_seen=T0 - timedelta(hours=1),
    lat=LAT,
    lon=LON,
    plate=None,
    camera_id="cam-1",
)
NO_POSITION = replace(KEY, lat=None, lon=None)
NO_POSITION_CASE = replace(CASE, lat=None, lon=None)


@pytest.mark.parametrize(
    ("name", "key", "case", "merged"),
    [
        ("same place, an hour before", KEY, CASE, True),
        ("14 m north", KEY, replace(CASE, lat=north(14)), True),
        ("16 m north", KEY, replace(CASE, lat=north(16)), False),
        ("14 m east", KEY, replace(CASE, lon=east(14)), True),
        ("16 m east", KEY, replace(CASE, lon=east(16)), False),
        ("another category", KEY, replace(CASE, category="piled_debris"), False),
        ("rejected case", KEY, replace(CASE, status="rejected"), False),
        ("closed case (reopened as a recurrence)", KEY, replace(CASE, status="closed"), True),
        ("last seen 23 h before", KEY, replace(CASE, last_seen=T0 - timedelta(hours=23)), True),
        ("last seen 25 h before", KEY, replace(CASE, last_seen=T0 - timedelta(hours=25)), False),
        ("last seen 25 h after (late upload)", KEY, replace(CASE, last_seen=T0 + timedelta(hours=25)), False),
        ("same plate", replace(KEY, plate="ZA12345"), replace(CASE, plate="ZA12345"), True),
        ("other plate", replace(KEY, plate="ZA12345"), replace(CASE, plate="ZB99999"), False),
        ("plate on the incident only", replace(KEY, plate="ZA12345"), CASE, True),
        ("plate on the case only", KEY, replace(CASE, plate="ZA12345"), True),
        ("another camera, same place", KEY, replace(CASE, camera_id="cam-2"), True),
        ("no position, same camera", NO_POSITION, NO_POSITION_CASE, True),
        ("no position, another camera", NO_POSITION, replace(NO_POSITION_CASE, camera_id="cam-2"), False),
        (
            "no position, both cameras unknown",
            replace(NO_POSITION, camera_id=None),
            replace(NO_POSITION_CASE, camera_id=None),
            True,
        ),
        ("no position vs a placed case", NO_POSITION, CASE, False),
        ("placed vs a position-less case", KEY, NO_POSITION_CASE, False),
    ],
)
def test_merge_rule(name: str, key: MergeKey, case: Candidate, merged: bool) -> None:
    assert choose_case(key, [case], POLICY) == (case.id if merged else None), name


def test_the_nearest_wins_then_the_latest_then_the_lowest_id() -> None:
    far = replace(CASE, id=1, lat=north(10))
    near = replace(CASE, id=2, lat=north(3))
    assert choose_case(KEY, [far, near], POLICY) == 2
    older = replace(CASE, id=3, last_seen=T0 - timedelta(hours=5))
    newer = replace(CASE, id=4, last_seen=T0 - timedelta(hours=2))
    assert choose_case(KEY, [older, newer], POLICY) == 4
    assert choose_case(KEY, [replace(CASE, id=9), replace(CASE, id=5)], POLICY) == 5


def test_position_less_takes_the_cameras_latest_case() -> None:
    older = replace(NO_POSITION_CASE, id=1, last_seen=T0 - timedelta(hours=5))
    newer = replace(NO_POSITION_CASE, id=2, last_seen=T0 - timedelta(hours=1))
    assert choose_case(NO_POSITION, [older, newer], POLICY) == 2


def test_no_candidates_is_a_new_case() -> None:
    assert choose_case(KEY, [], POLICY) is None


@pytest.mark.parametrize("lat", [0.0, 30.27, 60.0, 80.0])
def test_the_sql_box_holds_the_whole_merge_circle(lat: float) -> None:
    """ingest narrows candidates to a lat/lon box in SQL: every point within radius_m is inside it."""
    dlat, dlon = POLICY.box_deg(lat)
    for bearing in range(0, 360, 15):
        b = math.radians(bearing)  # a point radius_m away on this bearing
        step = POLICY.radius_m / 111_195.0
        plat, plon = lat + step * math.cos(b), 0.0 + step * math.sin(b) / math.cos(math.radians(lat))
        assert distance_m(lat, 0.0, plat, plon) == pytest.approx(POLICY.radius_m, rel=0.01)
        assert abs(plat - lat) <= dlat and abs(plon) <= dlon


def test_distance_is_haversine() -> None:
    assert distance_m(LAT, LON, LAT, LON) == 0.0
    assert distance_m(LAT, LON, north(100), LON) == pytest.approx(100.0, abs=0.2)
