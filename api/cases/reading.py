"""Reading cases: filters, visibility by role (enforcement sees its team's cases only), one case
with its sightings and evidence links, and the summary every response and webhook carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, selectinload

from api.accounts.accounts import Principal
from api.storage.db import as_utc
from api.storage.models import UNASSIGNED, Case, EvidenceLink, Sighting


class NotFound(LookupError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


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
