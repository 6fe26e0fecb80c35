"""The merge rule per category, and the merge buckets, as tables with no database.

A sequence of sightings goes through the same two functions ingest uses (choose_case, then
MergePolicy.reach_after for the chosen case); the table says which case each sighting lands in.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from api.cases.merge import (
    BUCKET_DEG,
    Candidate,
    MergeKey,
    MergePolicy,
    bucket_of,
    choose_case,
    distance_m,
)

LAT, LON = 30.2741, 120.1551
T0 = datetime(2026, 11, 20, 9, 0, 0)
POLICY = MergePolicy(radius_m=15.0, window_h=24.0)  # follow_last: piled_debris (the default)


def north(metres: float, lat: float = LAT) -> float:
    return lat + metres / 111_195.0


def east(metres: float, lat: float = LAT, lon: float = LON) -> float:
    return lon + metres / (111_195.0 * math.cos(math.radians(lat)))


def case_numbers(
    category: str, sightings: list[tuple[float, float]], policy: MergePolicy = POLICY
) -> list[int]:
    """For each (metres north, hours after T0) sighting, the number (1, 2, ...) of the case it
    lands in, ingested in the order given."""
    cases: list[Candidate] = []
    numbers = []
    for metres, hours in sightings:
        key = MergeKey(category, T0 + timedelta(hours=hours), north(metres), LON, None, "cam-1")
        chosen = choose_case(key, cases, policy)
        if chosen is None:
            cases.append(
                Candidate(
                    len(cases) + 1, category, "pending_review", key.seen_at, key.lat, key.lon, None, "cam-1"
                )
            )
            numbers.append(len(cases))
            continue
        case = cases[chosen - 1]
        reach = policy.reach_after(case, key)
        lat, lon = (case.lat, case.lon) if reach is None else reach
        cases[chosen - 1] = replace(case, lat=lat, lon=lon, last_seen=max(case.last_seen, key.seen_at))
        numbers.append(chosen)
    return numbers


WALK = [(0, 0), (10, 1), (20, 2), (30, 3)]  # +0, +10, +20, +30 m, an hour apart

CATEGORY_TABLE = [
    # a chain of cars along a kerb stays a chain: measured from where the case was first seen
    ("illegal_parking", WALK, [1, 1, 2, 2]),
    ("illegal_parking", [(0, 0), (14, 1), (-14, 2), (0, 3)], [1, 1, 1, 1]),  # jitter around the anchor
    ("illegal_parking", [(0, 0), (0, 20), (0, 40), (0, 60)], [1, 1, 1, 1]),  # window from the last sighting
    ("illegal_parking", [(0, 0), (0, 25)], [1, 2]),
    # stalls side by side are as many violations; a cart 20 m on blocks another stretch
    ("street_vending", WALK, [1, 1, 2, 2]),
    ("street_vending", [(0, 0), (8, 1), (16, 2)], [1, 1, 2]),
    # a pile grows: measured from its latest sighting
    ("piled_debris", WALK, [1, 1, 1, 1]),
    ("piled_debris", [(0, 0), (10, 1), (-8, 2)], [1, 1, 2]),  # 18 m from the latest sighting
    ("piled_debris", [(0, 0), (14, 1), (28, 2), (42, 3), (0, 4)], [1, 1, 1, 1, 2]),
    # a late upload (seen before the case's latest sighting) does not move the reach point back
    ("piled_debris", [(0, 0), (10, 2), (0, 1), (20, 3)], [1, 1, 1, 1]),
    ("piled_debris", [(0, 0), (0, 25)], [1, 2]),
    # a category the site does not name is anchored
    ("blocked_fire_lane", WALK, [1, 1, 2, 2]),
]


@pytest.mark.parametrize(("category", "sightings", "expected"), CATEGORY_TABLE)
def test_which_case_each_sighting_lands_in(
    category: str, sightings: list[tuple[float, float]], expected: list[int]
) -> None:
    assert case_numbers(category, sightings) == expected


def test_the_following_categories_are_a_setting() -> None:
    anchored = replace(POLICY, follow_last=frozenset())
    assert case_numbers("piled_debris", WALK, anchored) == [1, 1, 2, 2]
    vending_follows = replace(POLICY, follow_last=frozenset({"street_vending"}))
    assert case_numbers("street_vending", WALK, vending_follows) == [1, 1, 1, 1]


def test_reach_after_moves_only_a_following_case_to_a_later_placed_sighting() -> None:
    case = Candidate(1, "piled_debris", "pending_review", T0, LAT, LON, None, "cam-1")
    key = MergeKey("piled_debris", T0 + timedelta(hours=1), north(10), LON, None, "cam-1")
    assert POLICY.reach_after(case, key) == (north(10), LON)
    assert POLICY.reach_after(case, replace(key, seen_at=T0 - timedelta(minutes=1))) is None
    assert POLICY.reach_after(case, replace(key, lat=None, lon=None)) is None
    assert (
        POLICY.reach_after(
            replace(case, category="illegal_parking"), replace(key, category="illegal_parking")
        )
        is None
    )


# --- the merge buckets ------------------------------------------------------------------------

PLACES = [
    ("Hangzhou", 30.2741, 120.1551),
    ("equator, prime meridian", 0.0, 0.0),
    ("south, west", -33.8688, -70.6693),
    ("60 N", 60.1699, 24.9384),
    ("80 N", 80.0, 15.0),
    ("89.99 N (box wider than MAX_BUCKETS)", 89.99, 10.0),
    ("next to the antimeridian", 10.0, 179.99995),
]


def in_box(policy: MergePolicy, key: MergeKey, case: Candidate) -> bool:
    """The old candidate query's position condition (a box around the incident)."""
    assert key.lat is not None and key.lon is not None and case.lat is not None and case.lon is not None
    dlat, dlon = policy.box_deg(key.lat)
    return abs(case.lat - key.lat) <= dlat and abs(case.lon - key.lon) <= dlon


@pytest.mark.parametrize(("place", "lat", "lon"), PLACES)
@pytest.mark.parametrize("radius_m", [15.0, 50.0])
def test_the_buckets_find_every_case_the_full_scan_finds(
    place: str, lat: float, lon: float, radius_m: float
) -> None:
    """Cases scattered up to 3 radii around incidents: the bucket query (buckets_near, then the box)
    keeps exactly the cases the full scan (the box alone) keeps, and the decision is the same."""
    policy = replace(POLICY, radius_m=radius_m)
    rng = random.Random(f"{place}{radius_m}")
    spread = 3 * radius_m
    cases = [
        Candidate(
            i,
            "illegal_parking",
            "pending_review",
            T0,
            north(rng.uniform(-spread, spread), lat),
            east(rng.uniform(-spread, spread), lat, lon),
            None,
            None,
        )
        for i in range(1, 400)
    ]
    found = 0
    for _ in range(200):
        key = MergeKey(
            "illegal_parking",
            T0,
            north(rng.uniform(-radius_m, radius_m), lat),
            east(rng.uniform(-radius_m, radius_m), lat, lon),
            None,
            None,
        )
        assert key.lat is not None and key.lon is not None
        scanned = [c for c in cases if in_box(policy, key, c)]
        buckets = policy.buckets_near(key.lat, key.lon)
        if buckets is None:  # too many buckets: the query falls back to the box alone
            assert lat >= 80.0
            continue
        bucketed = [c for c in cases if bucket_of(c.lat, c.lon) in set(buckets) and in_box(policy, key, c)]  # type: ignore[arg-type]
        assert bucketed == scanned
        assert choose_case(key, bucketed, policy) == choose_case(key, scanned, policy)
        found += len(scanned)
    assert found > 0 or lat >= 80.0  # near a pole the wide boxes fall back to the box alone


@pytest.mark.parametrize(("lat", "most"), [(0.0, 4), (30.27, 6), (60.0, 6), (80.0, 14)])
def test_a_15_m_circle_needs_only_a_few_buckets(lat: float, most: int) -> None:
    rng = random.Random(lat)
    for _ in range(500):
        la, lo = lat + rng.uniform(0, BUCKET_DEG), 120.0 + rng.uniform(0, BUCKET_DEG)
        buckets = POLICY.buckets_near(la, lo)
        assert buckets is not None and bucket_of(la, lo) in buckets and len(buckets) <= most
        for bearing in range(0, 360, 10):  # every point 15 m away is in one of them
            b = math.radians(bearing)
            plat, plon = north(15 * math.cos(b), la), east(15 * math.sin(b), la, lo)
            assert distance_m(la, lo, plat, plon) == pytest.approx(15.0, rel=0.01)
            assert bucket_of(plat, plon) in buckets


def test_bucket_keys_are_distinct_around_the_globe() -> None:
    """Neighbouring cells never share a key, also across the equator, the prime meridian and the
    antimeridian (where the box itself stops: positions either side never merge, as before)."""
    d = BUCKET_DEG / 2
    points = [(a, b) for a in (-d, d, 89.9999, -89.9999) for b in (-d, d, 179.9999, -179.9999)]
    assert len({bucket_of(a, b) for a, b in points}) == len(points)


def test_buckets_off_means_the_box_alone() -> None:
    assert replace(POLICY, use_buckets=False).buckets_near(LAT, LON) is None
