"""Which case an incident is a sighting of: a pure decision over candidate cases, no database.

An incident is a new sighting of a case of the same category, not rejected, whose last sighting is
within `window_h` hours of it (either way: uploads arrive late), within `radius_m` metres of the
case's *reach point*, and with the same plate when both have one; otherwise it opens a new case.
A closed case so matched is reopened (a recurrence) when the incident was last seen after its
closing, and stays closed otherwise (api.cases.ingest._reopens).

The reach point depends on the category (`MergePolicy.follow_last`):
- anchored (the default; illegal_parking, street_vending): where the case was first seen. A parked
  car does not walk, and a vendor who sets up 20 m further on blocks another stretch of pavement:
  a chain of cars or stalls a few metres apart along a kerb stays a chain of cases.
- following (piled_debris): the position of the case's latest sighting (by time seen). A pile
  grows and spreads, so each sighting carries the case along with it.
Incidents without a position merge only with position-less cases of the same camera. Among several
candidates the nearest wins, then the latest seen, then the lowest id; among position-less ones the
latest seen, then the lowest id.

api.cases.ingest narrows the candidates in SQL with the same conditions (an index range over the
category, the merge bucket of the reach point, the time window and a box around the position) and
hands the few rows left to `choose_case`, which decides; the table tests in tests/api/test_merge.py
and tests/api/test_merge_rule.py hold the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.cases.workflow import REJECTED

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE_LAT = 111_000.0  # a little under the true ~111,195 m: the SQL box errs wide

# The merge buckets: a fixed grid of BUCKET_DEG x BUCKET_DEG degree cells (about 33 m north-south,
# 33 m * cos(lat) east-west), keyed row * BUCKET_ROW_STRIDE + (column + BUCKET_COLUMN_OFFSET). A case
# stores the bucket of its reach point (cases.merge_bucket); the candidate query asks only for the
# buckets that meet the box around the incident (2 to 6 at 15 m in the temperate latitudes). The
# key's formula is copied in migration 0005, which fills it for older cases: change both or neither.
BUCKET_DEG = 0.0003
BUCKET_ROW_STRIDE = 2_000_000  # more than the 1,200,000 columns around the globe
BUCKET_COLUMN_OFFSET = 1_000_000  # columns from -600,000 (lon -180) to 600,000 (lon +180)
MAX_BUCKETS = 64  # a box wider than this many buckets (huge radius, near a pole) is scanned unbucketed

DEFAULT_FOLLOW_LAST = frozenset({"piled_debris"})


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two WGS84 points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bucket_of(lat: float, lon: float) -> int:
    """The merge bucket (a fixed grid cell key, see BUCKET_DEG) holding a WGS84 point in degrees."""
    row = math.floor(lat / BUCKET_DEG)
    column = math.floor(lon / BUCKET_DEG)
    return row * BUCKET_ROW_STRIDE + column + BUCKET_COLUMN_OFFSET


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """radius_m: metres from the case's reach point; window_h: hours from its last sighting;
    follow_last: the categories whose reach point follows their latest sighting (the others stay at
    their first sighting); use_buckets: narrow candidates by merge bucket (off: only by the box, to
    compare; the decision is the same either way)."""

    radius_m: float = 15.0
    window_h: float = 24.0
    follow_last: frozenset[str] = DEFAULT_FOLLOW_LAST
    use_buckets: bool = True

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_h)

    def box_deg(self, lat: float) -> tuple[float, float]:
        """Half the size (dlat, dlon) in degrees of a box around `lat` that holds the merge circle.
        The box does not wrap at the antimeridian: points on either side of it never merge."""
        dlat = self.radius_m / METRES_PER_DEGREE_LAT + 1e-9
        return dlat, dlat / max(0.01, math.cos(math.radians(lat)))

    def buckets_near(self, lat: float, lon: float) -> list[int] | None:
        """Every merge bucket that meets the box around (lat, lon) (box_deg), so every reach point in
        the box lies in one of them; None when there would be more than MAX_BUCKETS of them (or
        buckets are off): then only the box narrows the candidates."""
        if not self.use_buckets:
            return None
        dlat, dlon = self.box_deg(lat)
        row_lo, row_hi = math.floor((lat - dlat) / BUCKET_DEG), math.floor((lat + dlat) / BUCKET_DEG)
        col_lo, col_hi = math.floor((lon - dlon) / BUCKET_DEG), math.floor((lon + dlon) / BUCKET_DEG)
        if (row_hi - row_lo + 1) * (col_hi - col_lo + 1) > MAX_BUCKETS:
            return None
        return [
            row * BUCKET_ROW_STRIDE + column + BUCKET_COLUMN_OFFSET
            for row in range(row_lo, row_hi + 1)
            for column in range(col_lo, col_hi + 1)
        ]

    def reach_after(self, case: Candidate, key: MergeKey) -> tuple[float, float] | None:
        """The case's reach point once this incident is added to it, or None if it stays where it
        is: the incident's position for a following category, when it has one and is the case's
        latest sighting (a late upload of an older sighting moves nothing)."""
        if case.category not in self.follow_last or key.lat is None or key.lon is None:
            return None
        if key.seen_at < case.last_seen:
            return None
        return key.lat, key.lon


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
    """What the decision needs of a case. lat, lon: its reach point (see the module's docstring)."""

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
