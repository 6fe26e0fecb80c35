"""The merge rule through the real ingest, on SQLite and PostgreSQL: per category (anchored or
following the latest sighting), the bucket query against the full scan, migration 0005's fill."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from api.accounts.accounts import SYSTEM
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, _best_candidate, ingest
from api.cases.merge import MergePolicy, bucket_of
from api.services import Services, merge_policy
from api.settings import Settings
from api.storage.db import make_engine, migrate
from api.storage.models import Case
from tests.api.api_testkit import import_demo_grid, incident_json
from tests.api.test_merge_rule import CATEGORY_TABLE, POLICY

LAT, LON = 30.2741, 120.1551  # in the demo grid
T0 = datetime(2026, 11, 20, 9, 0)  # local time (+08:00)


def north(metres: float) -> float:
    return LAT + metres / 111_195.0


def _incident(incident_id: str, **kwargs: Any) -> IncidentIn:
    payload = IncidentPayload.model_validate(incident_json(incident_id, files={}, **kwargs))
    return IncidentIn.from_payload(payload, evidence=[])


def _ingest(svc: Services, inc: IncidentIn, policy: MergePolicy) -> int:
    with svc.factory() as session:
        result = ingest(session, inc, grid=svc.grid_cache.get(session), policy=policy, actor=SYSTEM)
        session.commit()
        return result.case.id


@pytest.fixture
def svc(services: Services) -> Services:
    import_demo_grid(services)
    return services


@pytest.mark.parametrize(
    ("category", "expected"),
    [("illegal_parking", [0, 0, 1, 1]), ("street_vending", [0, 0, 1, 1]), ("piled_debris", [0, 0, 0, 0])],
)
def test_a_walk_of_10_m_an_hour(svc: Services, category: str, expected: list[int]) -> None:
    """+0, +10, +20, +30 m an hour apart: cars and stalls stay where they were first seen (two
    cases), a pile follows its latest sighting (one case)."""
    ids = []
    for step in range(4):
        when = (T0 + timedelta(hours=step)).isoformat() + "+08:00"
        inc = _incident(f"{category}-{step}", category=category, position=(north(10 * step), LON), when=when)
        ids.append(_ingest(svc, inc, svc.policy))
    first = {case_id: n for n, case_id in enumerate(dict.fromkeys(ids))}
    assert [first[i] for i in ids] == expected
    with svc.factory() as session:
        case = session.get(Case, ids[-1])
        assert case is not None
        assert (case.lat, case.lon) == (
            north(10 * expected.index(expected[-1])),
            LON,
        )  # shown where first seen
        reach_m = 30 if category == "piled_debris" else 20
        assert (case.merge_lat, case.merge_lon) == (north(reach_m), LON)
        assert case.merge_bucket == bucket_of(north(reach_m), LON)


@pytest.mark.parametrize(("category", "sightings", "expected"), CATEGORY_TABLE)
def test_the_rule_tables_cases_through_ingest(
    svc: Services, category: str, sightings: list[tuple[float, float]], expected: list[int]
) -> None:
    """test_merge_rule's table (choose_case, then MergePolicy.reach_after, with no database) gives
    the same cases through the real ingest, whose UPDATE moves the reach point in SQL: late uploads,
    the window from the latest sighting and the following categories included."""
    ids = []
    for n, (metres, hours) in enumerate(sightings):
        when = (T0 + timedelta(hours=hours)).isoformat() + "+08:00"
        inc = _incident(f"{category}-table-{n}", category=category, position=(north(metres), LON), when=when)
        ids.append(_ingest(svc, inc, POLICY))
    number = {case_id: n + 1 for n, case_id in enumerate(dict.fromkeys(ids))}
    assert [number[i] for i in ids] == expected


def test_the_following_categories_come_from_the_settings(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, merge_from_last="street_vending, blocked_fire_lane")
    assert merge_policy(settings).follow_last == frozenset({"street_vending", "blocked_fire_lane"})
    assert merge_policy(Settings(data_dir=tmp_path)).follow_last == frozenset({"piled_debris"})
    assert Settings.from_env({"GRIDPATROL_MERGE_FROM_LAST": "none"}).merge_from_last == ()
    assert merge_policy(Settings.from_env({"GRIDPATROL_MERGE_BUCKETS": "false"})).use_buckets is False


def test_the_bucket_query_finds_what_the_full_scan_finds(svc: Services) -> None:
    """Cases scattered densely around one point (a day of one category, some with plates, some
    rejected): for incidents all around, the bucketed candidate query and the full scan choose
    the same case."""
    rng = random.Random(15)
    policy = svc.policy
    for i in range(300):
        when = (T0 + timedelta(minutes=rng.uniform(0, 600))).isoformat() + "+08:00"
        position = (LAT + rng.uniform(-0.0008, 0.0008), LON + rng.uniform(-0.0008, 0.0008))
        plate = rng.choice([None, None, "浙A11111", "浙B22222"])
        _ingest(
            svc,
            _incident(f"seed-{i}", position=position, when=when, plate=plate),
            replace(policy, radius_m=3.0),
        )
    with svc.factory() as session:
        session.execute(text("UPDATE cases SET status = 'rejected' WHERE id % 7 = 0"))
        session.commit()
        chosen = 0
        for i in range(300):
            when = (T0 + timedelta(minutes=rng.uniform(-120, 720))).isoformat() + "+08:00"
            position = (LAT + rng.uniform(-0.0009, 0.0009), LON + rng.uniform(-0.0009, 0.0009))
            plate = rng.choice([None, "浙A11111", "浙C33333"])
            inc = _incident(f"probe-{i}", position=position, when=when, plate=plate)
            bucketed = _best_candidate(session, inc, policy)
            scanned = _best_candidate(session, inc, replace(policy, use_buckets=False))
            assert bucketed == scanned
            chosen += bucketed is not None
        assert 50 < chosen < 300  # the probes both found and missed cases


def test_the_candidate_query_reads_the_bucket_index_on_sqlite(sqlite_url: str, tmp_path: Any) -> None:
    from tests.api.api_testkit import make_settings

    svc = Services.build(make_settings(tmp_path, sqlite_url))
    try:
        with svc.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM cases WHERE category = 'illegal_parking' "
                "AND status != 'rejected' AND last_seen BETWEEN '2026-11-19' AND '2026-11-21' "
                "AND merge_bucket IN (1, 2, 3, 4) AND merge_lat BETWEEN 1 AND 2 AND merge_lon BETWEEN 1 AND 2"
            ).all()
        assert "ix_cases_merge_bucket" in " ".join(str(row) for row in plan)
    finally:
        svc.close()


def test_migration_0005_fills_the_reach_point_of_older_cases(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate(engine, "0004")
        row = {
            "category": "illegal_parking",
            "status": "pending_review",
            "grid_cell_id": "unassigned",
            "first_seen": T0,
            "last_seen": T0,
            "sightings_count": 1,
            "recurrence_count": 0,
            "created_at": T0,
            "updated_at": T0,
        }
        cases = Case.__table__
        with engine.begin() as conn:
            for case_id, lat, lon in [(1, LAT, LON), (2, -33.8688, -70.6693), (3, None, None)]:
                values = dict(row, id=case_id, number=f"GP-2026-{case_id:06d}", lat=lat, lon=lon)
                conn.execute(insert(cases).values(**values), {})  # only the 0004 columns
        migrate(engine, "0005")
        with engine.connect() as conn:
            filled = conn.execute(
                select(cases.c.id, cases.c.merge_lat, cases.c.merge_lon, cases.c.merge_bucket).order_by(
                    cases.c.id
                )
            ).all()
        assert [tuple(r) for r in filled] == [
            (1, LAT, LON, bucket_of(LAT, LON)),
            (2, -33.8688, -70.6693, bucket_of(-33.8688, -70.6693)),
            (3, None, None, None),
        ]
    finally:
        engine.dispose()
