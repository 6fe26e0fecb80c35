"""Incidents become cases: the hot ingest path (a new case, or a new sighting of the case
api.cases.merge chooses), its evidence links, history and custody.

Receiving the same incident id twice is harmless: the second time returns the first sighting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import RUNNER_ROLE, Principal
from api.cases import custody, workflow
from api.cases.grids import Assignment, GridCache, GridIndex
from api.cases.incident import IncidentInputError, IncidentPayload
from api.cases.merge import Candidate, MergeKey, MergePolicy, bucket_of, choose_case
from api.storage.db import as_utc, utcnow
from api.storage.db import table_of as _table
from api.storage.evidence_store import StoredFile
from api.storage.models import Camera, Case, CaseEvent, EvidenceBlob, EvidenceLink, Sighting

log = logging.getLogger(__name__)

EVIDENCE_ROLES = ("annotated", "crop", "raw", "dwell_first", "dwell_middle", "dwell_last")


@dataclass(slots=True)
class IncidentIn:
    """What ingestion needs of an incident, plus where it came from."""

    id: str
    category: str
    seen_at: datetime  # naive UTC
    first_seen: datetime
    lat: float | None
    lon: float | None
    plate: str | None
    camera_id: str | None
    raw: dict[str, Any]
    evidence: list[tuple[str, StoredFile]] = field(default_factory=list)  # (role, stored file)

    @classmethod
    def from_payload(
        cls,
        incident: IncidentPayload,
        *,
        evidence: list[tuple[str, StoredFile]],
        camera_id: str | None = None,
        received_at: datetime | None = None,
    ) -> IncidentIn:
        """The incident as sent (over HTTP, or by the worker: the same payload type); camera_id, when
        given, is the sending device's camera and wins over the incident's own source id."""
        received_at = received_at or utcnow()
        first = as_utc(incident.first_seen_wall) or as_utc(incident.last_seen_wall) or received_at
        last = as_utc(incident.last_seen_wall) or first
        lat = lon = None
        if incident.position:
            lat, lon = float(incident.position[0]), float(incident.position[1])
        plate = (incident.plate or "").strip().upper() or None
        return cls(
            id=incident.id,
            category=incident.category,
            seen_at=last,
            first_seen=first,
            lat=lat,
            lon=lon,
            plate=plate,
            camera_id=camera_id or incident.source_id or None,
            raw=incident.to_json(),
            evidence=evidence,
        )

    def merge_key(self) -> MergeKey:
        return MergeKey(self.category, self.seen_at, self.lat, self.lon, self.plate, self.camera_id)


@dataclass(frozen=True, slots=True)
class IngestResult:
    case: Case
    sighting_id: int
    created: bool  # a new case
    duplicate: bool  # the incident id was already known
    recurrence: bool  # a closed case was reopened

    @property
    def case_id(self) -> int:
        return self.case.id

    @property
    def case_number(self) -> str | None:
        return self.case.number

    @property
    def status(self) -> str:
        return self.case.status


def case_number(case: Case) -> str:
    return f"GP-{case.first_seen.year}-{case.id:06d}"


def _candidate_statements() -> tuple[Select, Select, Select]:
    """The merge-candidate queries, built once with bound parameters (statement building and
    caching cost more than the query itself on this hot path). They narrow the cases with the merge
    rule's own conditions (api.cases.merge) and read only what choosing needs; choose_case decides,
    and the chosen case is then loaded by its id. A case's reach point (merge_lat, merge_lon) is its
    position as the rule measures it. `near` reads the merge buckets around the incident through
    ix_cases_merge_bucket (category, merge_bucket, last_seen): a few index ranges, however many
    cases the day holds; `near_unbucketed` (a box too wide for buckets, or buckets turned off)
    reads every case of the category in the window and keeps those in the box."""
    base = select(
        Case.id,
        Case.category,
        Case.status,
        Case.last_seen,
        Case.merge_lat,
        Case.merge_lon,
        Case.plate,
        Case.camera_id,
    ).where(
        Case.category == bindparam("category"),
        Case.status != workflow.REJECTED,
        Case.last_seen >= bindparam("seen_lo"),
        Case.last_seen <= bindparam("seen_hi"),
        or_(
            bindparam("plate", type_=Case.plate.type).is_(None),
            Case.plate.is_(None),
            Case.plate == bindparam("plate"),
        ),
    )
    near_unbucketed = base.where(
        Case.merge_lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
        Case.merge_lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    )
    near = near_unbucketed.where(Case.merge_bucket.in_(bindparam("buckets", expanding=True)))
    same_camera = (
        base.where(Case.merge_lat.is_(None))
        .where(
            or_(
                and_(bindparam("camera", type_=Case.camera_id.type).is_(None), Case.camera_id.is_(None)),
                Case.camera_id == bindparam("camera"),
            )
        )
        .order_by(Case.last_seen.desc(), Case.id.asc())
        .limit(_SAME_CAMERA_ROWS)
    )
    return near, near_unbucketed, same_camera


_SAME_CAMERA_ROWS = 8  # the latest few position-less cases of the camera; choose_case takes the latest
_NEAR, _NEAR_UNBUCKETED, _SAME_CAMERA = _candidate_statements()


def _best_candidate(session: Session, inc: IncidentIn, policy: MergePolicy) -> Candidate | None:
    """The case this incident is a sighting of (see api.cases.merge), or None for a new case."""
    conn = session.connection()  # Core rows: most incidents match nothing, so no ORM loading
    key = inc.merge_key()
    params: dict[str, Any] = {
        "category": inc.category,
        "seen_lo": inc.seen_at - policy.window,
        "seen_hi": inc.seen_at + policy.window,
        "plate": inc.plate,
    }
    if inc.lat is None or inc.lon is None:
        rows = conn.execute(_SAME_CAMERA, dict(params, camera=inc.camera_id))
    else:
        dlat, dlon = policy.box_deg(inc.lat)
        params.update(
            lat_lo=inc.lat - dlat, lat_hi=inc.lat + dlat, lon_lo=inc.lon - dlon, lon_hi=inc.lon + dlon
        )
        buckets = policy.buckets_near(inc.lat, inc.lon)
        if buckets is None:
            rows = conn.execute(_NEAR_UNBUCKETED, params)
        else:
            rows = conn.execute(_NEAR, dict(params, buckets=buckets))
    candidates = {row[0]: Candidate(*row) for row in rows}
    chosen = choose_case(key, candidates.values(), policy)
    return None if chosen is None else candidates[chosen]


def link_evidence(
    session: Session, case_id: int, sighting_id: int | None, evidence: list[tuple[str, StoredFile]]
) -> None:
    """Record evidence blobs (once per SHA-256) and link them to the case / sighting (Core inserts)."""
    if not evidence:
        return
    now = utcnow()
    blobs = {
        stored.sha256: {
            "sha256": stored.sha256,
            "size": stored.size,
            "media_type": stored.media_type,
            "created_at": now,
        }
        for _, stored in evidence
    }
    # one statement: a blob already known (the same image in another case) is left as it is
    conn = session.connection()
    dialect = conn.dialect.name
    conn.execute(_INSERT_BLOB_PG if dialect == "postgresql" else _INSERT_BLOB_SQLITE, list(blobs.values()))
    conn.execute(
        _INSERT_LINK,
        [
            {"case_id": case_id, "sighting_id": sighting_id, "sha256": stored.sha256, "role": role}
            for role, stored in evidence
        ],
    )


_FIND_SIGHTING = select(_table(Sighting).c.id, _table(Sighting).c.case_id).where(
    _table(Sighting).c.incident_id == bindparam("incident_id")
)
_CATEGORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
_INSERT_CASE = insert(_table(Case))
_NEXTVAL = text("SELECT nextval(pg_get_serial_sequence('cases', 'id'))")
_MAX_PLUS_ONE = select(func.coalesce(func.max(_table(Case).c.id), 0) + 1)
_INSERT_BLOB_SQLITE = sqlite_insert(_table(EvidenceBlob)).on_conflict_do_nothing(index_elements=["sha256"])
_INSERT_BLOB_PG = pg_insert(_table(EvidenceBlob)).on_conflict_do_nothing(index_elements=["sha256"])
_INSERT_EVENT = insert(_table(CaseEvent))
_INSERT_LINK = insert(_table(EvidenceLink))
_INSERT_SIGHTING = insert(_table(Sighting)).returning(_table(Sighting).c.id)


def _next_case_id(conn: Connection) -> int:
    """The id the next case gets, so that its number can be written with it in one INSERT.
    PostgreSQL: the table's sequence. SQLite: max + 1, safe because writers are serialised."""
    if conn.dialect.name == "postgresql":
        return int(conn.scalar(_NEXTVAL))  # type: ignore[arg-type]
    return int(conn.scalar(_MAX_PLUS_ONE))  # type: ignore[arg-type]


def find_received(session: Session, *, incident_id: str) -> IngestResult | None:
    """The first sighting of an incident id already received (as a duplicate), or None."""
    row = session.connection().execute(_FIND_SIGHTING, {"incident_id": incident_id}).first()
    if row is None:
        return None
    return IngestResult(session.get(Case, row.case_id), row.id, False, True, False)  # type: ignore[arg-type]


def ingest(
    session: Session,
    inc: IncidentIn,
    *,
    grid: GridIndex,
    policy: MergePolicy,
    actor: Principal,
    job_id: int | None = None,
) -> IngestResult:
    """Record an incident as a new case or a sighting of an existing one; commits nothing itself.

    The hot path (one new case or sighting per incident) uses Core statements on the session's
    connection: the ORM's unit of work and its execute path cost more than the database does here.
    """
    conn = session.connection()
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        # one ingestion per category at a time, so two sightings of one violation arriving together
        # cannot both open a case (SQLite serialises all writers anyway)
        conn.execute(_CATEGORY_LOCK, {"key": f"gridpatrol-ingest:{inc.category}"})
    existing = find_received(session, incident_id=inc.id)
    if existing is not None:
        return existing
    now = utcnow()
    evidence_detail = [{"role": r, "sha256": s.sha256} for r, s in inc.evidence]
    candidate = _best_candidate(session, inc, policy)
    case = None if candidate is None else session.get(Case, candidate.id)
    created = recurrence = False
    events: list[dict[str, Any]] = []
    if case is not None:
        assert candidate is not None
        if postgresql:
            session.refresh(case, with_for_update=True)
        reach = policy.reach_after(replace(candidate, last_seen=case.last_seen), inc.merge_key())
        if reach is not None:
            case.merge_lat, case.merge_lon = reach
            case.merge_bucket = bucket_of(*reach)
        case.sightings_count += 1
        case.last_seen = max(case.last_seen, inc.seen_at)
        case.first_seen = min(case.first_seen, inc.first_seen)
        case.plate = case.plate or inc.plate
        case.updated_at = now
        if case.status == workflow.CLOSED:
            recurrence = True
            case.recurrence_count += 1
            case.status = workflow.PENDING_REVIEW
            events.append(
                {
                    "action": "reopened",
                    "from_status": workflow.CLOSED,
                    "to_status": workflow.PENDING_REVIEW,
                    "reason": "recurrence",
                    "note": f"seen again (incident {inc.id})",
                }
            )
        case_id = case.id
        session.flush()
    else:
        created = True
        cell = grid.lookup(inc.lat, inc.lon)
        fixed = _fixed_place(conn, inc.camera_id)
        if fixed is not None:  # a registered camera's own cell and team (api.cameras) win
            cell = Assignment(fixed.grid_cell_id or cell.cell_id, fixed.team or cell.team)
        case_id = _next_case_id(conn)
        case_row = {
            "id": case_id,
            "number": f"GP-{inc.first_seen.year}-{case_id:06d}",
            "category": inc.category,
            "status": workflow.PENDING_REVIEW,
            "grid_cell_id": cell.cell_id,
            "team": cell.team,
            "lat": inc.lat,
            "lon": inc.lon,
            "merge_lat": inc.lat,
            "merge_lon": inc.lon,
            "merge_bucket": None if inc.lat is None or inc.lon is None else bucket_of(inc.lat, inc.lon),
            "plate": inc.plate,
            "camera_id": inc.camera_id,
            "device_id": actor.device_id,
            "first_seen": inc.first_seen,
            "last_seen": inc.seen_at,
            "sightings_count": 1,
            "recurrence_count": 0,
            "reject_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(_INSERT_CASE, case_row)
        events.append(
            {
                "action": "created",
                "from_status": None,
                "to_status": workflow.PENDING_REVIEW,
                "reason": None,
                "note": f"incident {inc.id}",
            }
        )
    if events:
        conn.execute(_INSERT_EVENT, [dict(e, case_id=case_id, at=now, actor=actor.label) for e in events])
    sighting = {
        "case_id": case_id,
        "incident_id": inc.id,
        "seen_at": inc.seen_at,
        "lat": inc.lat,
        "lon": inc.lon,
        "plate": inc.plate,
        "camera_id": inc.camera_id,
        "device_id": actor.device_id,
        "job_id": job_id,
        "incident_json": json.dumps(inc.raw, separators=(",", ":"), ensure_ascii=False, default=str),
        "recurrence": recurrence,
        "created_at": now,
    }
    sighting_id = conn.execute(_INSERT_SIGHTING, sighting).scalar_one()
    link_evidence(session, case_id, sighting_id, inc.evidence)
    detail: dict[str, Any] = {
        "incident_id": inc.id,
        "evidence": evidence_detail,
        "recurrence": recurrence,
        "sighting": {"id": int(sighting_id), "sha256": custody.sighting_digest(sighting)},
    }
    if created:  # the case's first state, which api.cases.audit replays the later entries on
        detail["case"] = {k: case_row[k] for k in custody.CASE_FACTS}
    custody.append(
        session,
        case_id=case_id,
        actor=actor.label,
        action="case_created" if created else "sighting_added",
        detail=detail,
        new_chain=created,
    )
    if created:
        # the row as inserted, detached (no SELECT back): callers read it, never change it
        case = Case(**case_row)
    return IngestResult(case, int(sighting_id), created, False, recurrence)  # type: ignore[arg-type]


_CAMERA_PLACE = select(Camera.grid_cell_id, Camera.team).where(Camera.id == bindparam("camera_id"))


@dataclass(frozen=True, slots=True)
class _FixedPlace:
    grid_cell_id: str | None
    team: str | None


def _fixed_place(conn: Connection, camera_id: str | None) -> _FixedPlace | None:
    """The fixed grid cell and team a registered camera files its cases in (api.cameras), if any."""
    if camera_id is None:
        return None
    row = conn.execute(_CAMERA_PLACE, {"camera_id": camera_id}).first()
    if row is None or (row.grid_cell_id is None and row.team is None):
        return None
    return _FixedPlace(row.grid_cell_id, row.team)


def _check_runner_camera(read_factory: sessionmaker[Session], camera_id: str) -> None:
    """A runner posts only for cameras in the registry (api.cameras)."""
    with read_factory() as session:
        known = session.scalar(select(Camera.id).where(Camera.id == camera_id))
    if known is None:
        raise IncidentInputError(
            "incident.source_id",
            f"no registered camera '{camera_id}' (a runner posts for the registry's cameras)",
        )


def ingest_committed(
    factory: sessionmaker[Session],
    inc: IncidentIn,
    *,
    grid_cache: GridCache,
    policy: MergePolicy,
    actor: Principal,
    job_id: int | None = None,
) -> IngestResult:
    """ingest() in its own transaction; a concurrent insert of the same incident id returns the winner."""
    for attempt in range(3):
        session = factory()
        try:
            result = ingest(
                session, inc, grid=grid_cache.get(session), policy=policy, actor=actor, job_id=job_id
            )
            session.commit()
            return result
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
        finally:
            session.close()
    raise AssertionError("unreachable")


def match_evidence(
    payload: IncidentPayload, files: list[tuple[str | None, StoredFile]]
) -> list[tuple[str, StoredFile]]:
    """The stored files as the incident's evidence list names them: (role, file) in its order. Every
    listed file must have been sent and every sent file listed (IncidentInputError naming which)."""
    stored = {item.sha256: item for _, item in files}
    evidence: list[tuple[str, StoredFile]] = []
    for index, entry in enumerate(payload.evidence):
        match = stored.get(entry.sha256)
        if match is None:
            raise IncidentInputError(
                f"incident.evidence[{index}]",
                f"no uploaded file has SHA-256 {entry.sha256} ({entry.role} {entry.path})",
            )
        evidence.append((entry.role, match))
    listed = {e.sha256 for e in payload.evidence}
    extra = [sha for sha in stored if sha not in listed]
    if extra:
        raise IncidentInputError("files", f"file with SHA-256 {extra[0]} is not listed in incident.evidence")
    return evidence


def ingest_payload(
    factory: sessionmaker[Session],
    *,
    read_factory: sessionmaker[Session],
    payload: IncidentPayload,
    files: list[tuple[str | None, StoredFile]],
    grid_cache: GridCache,
    policy: MergePolicy,
    actor: Principal,
) -> IngestResult:
    """An incident as a device sends it (POST /api/incidents): its evidence files already stored,
    matched to its evidence list, then ingested in its own transaction. A retry without its files of
    an incident already received answers with the first sighting; the device's camera wins over the
    incident's own source id."""
    if actor.role == RUNNER_ROLE:
        _check_runner_camera(read_factory, payload.source_id)
    if not files and payload.evidence:  # a retry without its files: nothing to store
        with read_factory() as session:
            existing = find_received(session, incident_id=payload.id)
        if existing is not None:
            return existing
    inc = IncidentIn.from_payload(payload, evidence=match_evidence(payload, files), camera_id=actor.camera_id)
    return ingest_committed(factory, inc, grid_cache=grid_cache, policy=policy, actor=actor)
