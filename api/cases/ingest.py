"""Cases: incidents become cases in their grid cell, merged by category, place, time and plate.

An incident of the same category within `merge_radius_m` metres and `merge_window_h` hours of a
case's last sighting (and with the same plate when both have one) becomes a new sighting of that
case; otherwise it opens a new case. Rejected cases never take sightings; a closed case that is
seen again within the window is reopened (pending_review) and counts a recurrence. Incidents
without a position merge only with position-less cases of the same camera.

Receiving the same incident id twice is harmless: the second time returns the first sighting.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.accounts.accounts import Principal
from api.cases import custody, webhooks, workflow
from api.cases.grids import GridIndex
from api.storage.db import as_utc, utcnow
from api.storage.db import table_of as _table
from api.storage.evidence_store import StoredFile
from api.storage.models import UNASSIGNED, Case, CaseEvent, EvidenceBlob, EvidenceLink, Sighting

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8
EVIDENCE_ROLES = ("annotated", "crop", "raw")


class NotFound(LookupError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IncidentInputError(ValueError):
    """An incident that cannot be taken as sent; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


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


@dataclass(slots=True)
class IncidentIn:
    """What ingestion needs from a detect.values.Incident, plus where it came from."""

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
    def from_incident(
        cls,
        incident: Any,
        *,
        evidence: list[tuple[str, StoredFile]],
        camera_id: str | None = None,
        received_at: datetime | None = None,
    ) -> IncidentIn:
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


@dataclass(frozen=True, slots=True)
class IngestResult:
    case: Case
    sighting_id: int
    created: bool  # a new case
    duplicate: bool  # the incident id was already known
    recurrence: bool  # a closed case was reopened


def case_number(case: Case) -> str:
    return f"GP-{case.first_seen.year}-{case.id:06d}"


def _candidate_statements() -> tuple[Select, Select]:
    """The merge-candidate queries, built once with bound parameters (statement building and
    caching cost more than the query itself on this hot path). They read only what choosing needs;
    the chosen case is then loaded by its id."""
    base = select(Case.id, Case.lat, Case.lon, Case.last_seen).where(
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
    near = base.where(
        Case.lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
        Case.lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    )
    same_camera = (
        base.where(Case.lat.is_(None))
        .where(
            or_(
                and_(bindparam("camera", type_=Case.camera_id.type).is_(None), Case.camera_id.is_(None)),
                Case.camera_id == bindparam("camera"),
            )
        )
        .order_by(Case.last_seen.desc())
        .limit(1)
    )
    return near, same_camera


_NEAR, _SAME_CAMERA = _candidate_statements()


def _best_candidate(session: Session, inc: IncidentIn, policy: MergePolicy) -> Case | None:
    """The case this incident is a sighting of: the nearest within the radius (then the latest seen,
    then the lowest id), or for a position-less incident its camera's latest; None for a new case."""
    conn = session.connection()  # Core rows: most incidents match nothing, so no ORM loading
    window = timedelta(hours=policy.window_h)
    params: dict[str, Any] = {
        "category": inc.category,
        "seen_lo": inc.seen_at - window,
        "seen_hi": inc.seen_at + window,
        "plate": inc.plate,
    }
    if inc.lat is None or inc.lon is None:
        row = conn.execute(_SAME_CAMERA, dict(params, camera=inc.camera_id)).first()
        return None if row is None else session.get(Case, row.id)
    dlat = policy.radius_m / 111_000.0 + 1e-9
    dlon = dlat / max(0.01, math.cos(math.radians(inc.lat)))
    params.update(lat_lo=inc.lat - dlat, lat_hi=inc.lat + dlat, lon_lo=inc.lon - dlon, lon_hi=inc.lon + dlon)
    found = []
    for row in conn.execute(_NEAR, params):
        d = distance_m(inc.lat, inc.lon, row.lat, row.lon)
        if d <= policy.radius_m:
            found.append((d, -row.last_seen.timestamp(), row.id))
    return session.get(Case, min(found)[2]) if found else None


def _link_evidence(
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
    existing = conn.execute(_FIND_SIGHTING, {"incident_id": inc.id}).first()
    if existing is not None:
        return IngestResult(session.get(Case, existing.case_id), existing.id, False, True, False)  # type: ignore[arg-type]
    now = utcnow()
    evidence_detail = [{"role": r, "sha256": s.sha256} for r, s in inc.evidence]
    case = _best_candidate(session, inc, policy)
    created = recurrence = False
    events: list[dict[str, Any]] = []
    if case is not None:
        if postgresql:
            session.refresh(case, with_for_update=True)
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
    sighting_id = conn.execute(
        _INSERT_SIGHTING,
        {
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
        },
    ).scalar_one()
    _link_evidence(session, case_id, sighting_id, inc.evidence)
    custody.append(
        session,
        case_id=case_id,
        actor=actor.label,
        action="case_created" if created else "sighting_added",
        detail={"incident_id": inc.id, "evidence": evidence_detail, "recurrence": recurrence},
        new_chain=created,
    )
    if created:
        # the row as inserted, detached (no SELECT back): callers read it, never change it
        case = Case(**case_row)
    return IngestResult(case, int(sighting_id), created, False, recurrence)  # type: ignore[arg-type]


def ingest_committed(
    factory: Any,
    inc: IncidentIn,
    *,
    grid_cache: Any,
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


# --- reading ---------------------------------------------------------------------------------

SORTS = {
    "last_seen": Case.last_seen,
    "first_seen": Case.first_seen,
    "created_at": Case.created_at,
    "number": Case.id,
    "sightings": Case.sightings_count,
}


def visible(stmt: Select, principal: Principal) -> Select:
    """Enforcement users see only their team's cases."""
    if principal.role == "enforcement":
        return stmt.where(Case.team == principal.team)
    return stmt


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: list[str] | None = None
    category: str | None = None
    grid_cell: str | None = None
    team: str | None = None
    since: datetime | None = None  # last_seen >= since
    until: datetime | None = None  # first_seen <= until
    camera: str | None = None
    device_id: int | None = None
    number: str | None = None
    plate: str | None = None

    def apply(self, stmt: Select) -> Select:
        if self.status:
            stmt = (
                stmt.where(Case.status.in_(self.status))
                if len(self.status) > 1
                else stmt.where(Case.status == self.status[0])
            )
        if self.category:
            stmt = stmt.where(Case.category == self.category)
        if self.grid_cell:
            stmt = stmt.where(Case.grid_cell_id == self.grid_cell)
        if self.team:
            stmt = stmt.where(Case.team == self.team)
        if self.since:
            stmt = stmt.where(Case.last_seen >= as_utc(self.since))
        if self.until:
            stmt = stmt.where(Case.first_seen <= as_utc(self.until))
        if self.camera:
            stmt = stmt.where(Case.camera_id == self.camera)
        if self.device_id is not None:
            stmt = stmt.where(Case.device_id == self.device_id)
        if self.number:
            stmt = stmt.where(Case.number == self.number.strip().upper())
        if self.plate:
            stmt = stmt.where(Case.plate == self.plate.strip().upper())
        return stmt


def list_cases(
    session: Session,
    principal: Principal,
    filters: CaseFilter,
    *,
    page: int = 1,
    per_page: int = 50,
    sort: str = "last_seen",
    descending: bool = True,
) -> tuple[list[Case], int]:
    base = visible(filters.apply(select(Case)), principal)
    total = session.scalar(select(func.count()).select_from(base.with_only_columns(Case.id).subquery())) or 0
    column = SORTS[sort]
    order = (column.desc(), Case.id.desc()) if descending else (column.asc(), Case.id.asc())
    rows = session.scalars(base.order_by(*order).limit(per_page).offset((page - 1) * per_page))
    return list(rows), int(total)


def get_case(session: Session, principal: Principal, case_id: int, *, lock: bool = False) -> Case:
    stmt = visible(select(Case).where(Case.id == case_id), principal)
    if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    case = session.scalar(stmt.options(selectinload(Case.sightings).selectinload(Sighting.evidence)))
    if case is None:
        raise NotFound("case_id", f"no case {case_id}")
    return case


def case_links(session: Session, case_id: int) -> list[EvidenceLink]:
    return list(
        session.scalars(select(EvidenceLink).where(EvidenceLink.case_id == case_id).order_by(EvidenceLink.id))
    )


def may_see_evidence(session: Session, principal: Principal, sha256: str) -> bool:
    if principal.role != "enforcement":
        return True
    stmt = (
        select(EvidenceLink.id)
        .join(Case, Case.id == EvidenceLink.case_id)
        .where(and_(EvidenceLink.sha256 == sha256, Case.team == principal.team))
        .limit(1)
    )
    return session.scalar(stmt) is not None


# --- acting ----------------------------------------------------------------------------------


class ForbiddenMove(PermissionError):
    pass


def transition(
    session: Session,
    principal: Principal,
    case_id: int,
    move: workflow.Move,
    *,
    photo: StoredFile | None = None,
) -> Case:
    """Move a case along the workflow, recording history, custody and webhook deliveries."""
    case = get_case(session, principal, case_id, lock=True)
    if move.target in workflow.STATUSES and not workflow.may_move(principal.role, move.target):
        raise ForbiddenMove(f"role {principal.role} may not move a case to {move.target}")
    workflow.check_move(case.status, move)
    now = utcnow()
    previous = case.status
    case.status = move.target
    case.updated_at = now
    if move.target == workflow.REJECTED:
        case.reject_reason = move.reason
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor=principal.label,
            action=move.target,
            from_status=previous,
            to_status=move.target,
            reason=move.reason,
            note=move.note,
        )
    )
    detail: dict[str, Any] = {"from": previous, "to": move.target, "reason": move.reason, "note": move.note}
    if photo is not None:
        _link_evidence(session, case.id, None, [("after_photo", photo)])
        detail["after_photo"] = photo.sha256
    session.flush()
    custody.append(session, case_id=case.id, actor=principal.label, action="transition", detail=detail)
    if move.target in workflow.NOTIFY:
        webhooks.enqueue(session, event=f"case.{move.target}", case_id=case.id, payload=case_summary(case))
    return case


def case_summary(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "category": case.category,
        "status": case.status,
        "grid_cell": case.grid_cell_id,
        "team": case.team,
        "position": {"lat": case.lat, "lon": case.lon} if case.lat is not None else None,
        "plate": case.plate,
        "camera_id": case.camera_id,
        "device_id": case.device_id,
        "first_seen": case.first_seen.isoformat() + "Z",
        "last_seen": case.last_seen.isoformat() + "Z",
        "sightings": case.sightings_count,
        "recurrences": case.recurrence_count,
        "reject_reason": case.reject_reason,
        "unassigned": case.grid_cell_id == UNASSIGNED,
    }
