"""Which case an incident is a sighting of: a pure decision over candidate cases, no database.

An incident of the same category within `radius_m` metres and `window_h` hours of a case's last
sighting (and with the same plate when both have one) is a new sighting of that case; otherwise it
opens a new case. Rejected cases never take sightings. Incidents without a position merge only with
position-less cases of the same camera. Among several candidates the nearest wins, then the latest
seen, then the lowest id; among position-less ones the latest seen, then the lowest id.

api.cases.ingest narrows the candidates in SQL with the same conditions (an index range over the
category, the time window and a box around the position) and hands the few rows left to
`choose_case`, which decides; the table tests in tests/api/test_merge.py hold the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.cases.workflow import REJECTED

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE_LAT = 111_000.0  # a little under the true ~111,195 m: the SQL box errs wide


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two WGS84 points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class MergePolicy:
    radius_m: float = 15.0
    window_h: float = 24.0

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_h)

    def box_deg(self, lat: float) -> tuple[float, float]:
        """Half the size (dlat, dlon) in degrees of a box around `lat` that holds the merge circle."""
        dlat = self.radius_m / METRES_PER_DEGREE_LAT + 1e-9
        return dlat, dlat / max(0.01, math.cos(math.radians(lat)))


@dataclass(frozen=True, slots=True)
class MergeKey:
    """What the decision needs of an incident. seen_at: its last sighting, naive UTC."""

    category: str
    seen_at: datetime
    lat: float | None
    lon: float | None
    plate: str | None
    camera_id: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the decision needs of a case."""

    id: int
    category: str
    status: str
    last_seen: datetime
    lat: float | None
    lon: float | None
    plate: str | None
    camera_id: str | None


def may_merge(key: MergeKey, case: Candidate, policy: MergePolicy) -> bool:
    """Every condition but distance: category, not rejected, within the window, plates compatible,
    and for a position-less incident a position-less case of the same camera."""
    if case.category != key.category or case.status == REJECTED:
        return False
    if abs(case.last_seen - key.seen_at) > policy.window:
        return False
    if key.plate is not None and case.plate is not None and key.plate != case.plate:
        return False
    if key.lat is None or key.lon is None:
        return case.lat is None and case.camera_id == key.camera_id
    return case.lat is not None and case.lon is not None


def choose_case(key: MergeKey, candidates: Iterable[Candidate], policy: MergePolicy) -> int | None:
    """The id of the case this incident is a sighting of, or None for a new case."""
    best: tuple[float, float, int] | None = None
    for case in candidates:
        if not may_merge(key, case, policy):
            continue
        if key.lat is None or key.lon is None:
            rank = (0.0, -case.last_seen.timestamp(), case.id)
        else:
            assert case.lat is not None and case.lon is not None
            d = distance_m(key.lat, key.lon, case.lat, case.lon)
            if d > policy.radius_m:
                continue
            rank = (d, -case.last_seen.timestamp(), case.id)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[2]
