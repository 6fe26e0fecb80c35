"""The ingest writer's batches decide exactly as incidents ingested one at a time do: a batch reads its
merge candidates and cameras ahead in one query each (api.cases.ingest._Nearby) and keeps them up to
date in memory; the same random stream of incidents (clusters closer and farther than the merge
radius, walking stalls, plates that agree or differ, late uploads, repeats, position-less incidents,
cameras with a fixed cell, closed and rejected cases) gives the same cases, sighting by sighting,
either way. On SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.orm import Session

from api.accounts.accounts import SYSTEM
from api.cases import custody
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, IngestResult, IngestWriter, _Pending, ingest_committed
from api.cases.merge import MergePolicy
from api.services import Services
from api.settings import Settings
from api.storage.models import Camera, Case, Sighting
from tests.api.api_testkit import PG_URL, import_demo_grid, incident_json, jpeg_bytes

CENTRES = [(30.2741, 120.1551), (30.2745, 120.1556), (30.2800, 120.1600), (30.2700, 120.1500)]
METRES_LAT = 111_320.0
START = datetime(2026, 11, 20, 8, 0)  # the first incident of a stream; one every 20 minutes


def _stream(seed: int, count: int) -> list[dict[str, Any]]:
    """Incident JSONs: a few places, each seen again and again within and beyond 15 m and 24 h."""
    rng = random.Random(seed)
    start = START
    out: list[dict[str, Any]] = []
    for i in range(count):
        if out and rng.random() < 0.08:  # a repeat of an earlier incident (a resend)
            out.append(dict(rng.choice(out)))
            continue
        lat, lon = rng.choice(CENTRES)
        metres, angle = rng.uniform(0, 25), rng.uniform(0, 2 * math.pi)
        lat += metres * math.sin(angle) / METRES_LAT
        lon += metres * math.cos(angle) / (METRES_LAT * math.cos(math.radians(lat)))
        when = start + timedelta(minutes=i * 20 + rng.uniform(-300, 30))  # late uploads now and then
        category = rng.choice(["illegal_parking", "street_vending", "piled_debris"])
        position = None if rng.random() < 0.05 else (lat, lon)
        data = incident_json(
            f"eq-{seed}-{i}",
            category=category,
            position=position,
            when=when.isoformat() + "+00:00",
            plate=rng.choice([None, "浙A11111", "浙A22222"]) if category == "illegal_parking" else None,
            source_id=rng.choice(["cam-a", "cam-b", "cam-fixed"]),
        )
        out.append(data)
    return out


def _incident(services: Services, data: dict[str, Any]) -> IncidentIn:
    files = [services.store.put_bytes(jpeg_bytes(data["id"] + r[0])) for r in ("annotated", "crop")]
    evidence = list(zip(("annotated", "crop"), files, strict=True))
    return IncidentIn.from_payload(IncidentPayload.model_validate(data), evidence=evidence)


def _prepare(services: Services) -> None:
    import_demo_grid(services)
    with services.factory() as session:
        session.add(
            Camera(
                id="cam-fixed",
                name="fixed",
                stream_url="rtsp://127.0.0.1/fixed",
                timezone="Asia/Shanghai",
                zones="[]",
                grid_cell_id="DEMO-HUBIN-01",
                team="team-hubin",
            )
        )
        session.commit()


def _by_creation(session: Session) -> list[int]:
    """The cases' ids in the order they were opened: by their first sighting (on PostgreSQL a batch
    numbers the cases it is sure to open first, so ids alone need not follow arrival)."""
    first = select(Sighting.case_id, func.min(Sighting.id).label("first")).group_by(Sighting.case_id)
    return [row.case_id for row in session.execute(first.order_by("first"))]


def _close_and_reject(services: Services, closed_at: datetime) -> None:
    """Some cases are closed at `closed_at` and others rejected, outside the service (the later
    incidents reopen them or are seen before their closing, or avoid them)."""
    with services.factory() as session:
        ids = _by_creation(session)
        closing = update(Case).where(Case.id.in_(ids[0::3])).values(status="closed", updated_at=closed_at)
        session.execute(closing)
        session.execute(update(Case).where(Case.id.in_(ids[1::5])).values(status="rejected"))
        session.commit()


def _outcomes(results: list[IngestResult], services: Services) -> tuple[list[tuple], list[tuple]]:
    """Each result with its case named by creation order, and every case's state in that order. On
    SQLite that is also the order of the ids."""
    with services.factory() as session:
        created = _by_creation(session)
        if session.get_bind().dialect.name == "sqlite":
            assert created == sorted(created)
        order = {case_id: n for n, case_id in enumerate(created)}
        cases = sorted(session.scalars(select(Case)).all(), key=lambda case: order[case.id])
        states = [
            (
                case.category,
                case.status,
                case.grid_cell_id,
                case.team,
                case.sightings_count,
                case.recurrence_count,
                case.first_seen,
                case.last_seen,
                None if case.merge_lat is None else round(case.merge_lat, 9),
                None if case.merge_lon is None else round(case.merge_lon, 9),
                case.plate,
                case.camera_id,
            )
            for case in cases
        ]
        chains, problems = custody.verify_all(session)
    assert problems == [] and chains == len(cases)
    named = [(order[r.case_id], r.created, r.duplicate, r.recurrence, r.before_close) for r in results]
    return named, states


@contextmanager
def _build(tmp_path: Any, db_url: str, name: str) -> Iterator[Services]:
    """A fresh service of its own: its own SQLite file, or its own PostgreSQL schema."""
    schema = None
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / (name + '.db')}"
    else:
        assert PG_URL
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with create_engine(PG_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        db_url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    services = Services.build(Settings(data_dir=tmp_path / name, database_url=db_url))
    try:
        yield services
    finally:
        services.close()
        if schema is not None:
            with create_engine(PG_URL).begin() as conn:  # type: ignore[arg-type]
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.mark.parametrize("seed", [1, 2])
def test_batches_decide_as_one_at_a_time(tmp_path: Any, db_url: str, seed: int) -> None:
    stream = _stream(seed, 160)
    early, late = stream[:60], stream[60:]
    closed_at = START + timedelta(minutes=20 * len(early) - 30)  # some late uploads were seen before
    policy = MergePolicy()
    rng = random.Random(seed)

    with _build(tmp_path, db_url, "alone") as alone:
        _prepare(alone)
        alone_results = []
        for n, data in enumerate(stream):
            if n == len(early):
                _close_and_reject(alone, closed_at)
            inc = _incident(alone, data)
            alone_results.append(
                ingest_committed(alone.factory, inc, grid_cache=alone.grid_cache, policy=policy, actor=SYSTEM)
            )
        expected = _outcomes(alone_results, alone)
    with _build(tmp_path, db_url, "batched") as batched:
        _prepare(batched)
        writer = IngestWriter(batched.factory, grid_cache=batched.grid_cache, policy=policy)
        results: list[IngestResult] = []
        for part in (early, late):
            if part is late:
                _close_and_reject(batched, closed_at)
            at = 0
            while at < len(part):
                size = rng.randint(1, 24)
                chunk = [
                    _Pending(_incident(batched, d), SYSTEM, None, None, None) for d in part[at : at + size]
                ]  # type: ignore[arg-type]
                for result, error in writer._write(chunk):
                    assert error is None, error
                    assert result is not None
                    results.append(result)
                at += size
        got = _outcomes(results, batched)
        assert writer.stats.retried_alone == 0
    assert got[0] == expected[0]  # each incident: the same case, new or not, duplicate or not
    assert got[1] == expected[1]  # each case: the same state
    assert sum(1 for _, created, _, _, _ in got[0] if not created) > 40  # the stream merges a lot
    assert sum(1 for _, _, _, recurrence, _ in got[0] if recurrence) > 0  # and reopens closed cases
    assert sum(1 for *_, before_close in got[0] if before_close) > 0  # or are seen before their closing
