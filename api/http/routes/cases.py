"""Cases: list, read, move along the workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from api.cases import workflow
from api.cases.acting import transition
from api.cases.incident import IncidentInputError
from api.cases.reading import SORTS, CaseFilter, case_links, case_summary, get_case, list_cases
from api.http.deps import Reader, ReadSessionDep, ServicesDep, SessionDep, Staff
from api.storage.evidence_store import EvidenceError
from api.storage.models import Case, CaseEvent, CustodyEntry

router = APIRouter(prefix="/api", tags=["cases"])

CaseId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Status = Literal["pending_review", "filed", "dispatched", "handled", "verified", "closed", "rejected"]


@router.get("/cases")
def get_cases(
    principal: Reader,
    session: ReadSessionDep,
    status: Annotated[list[Status] | None, Query(description="one or more statuses")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    grid_cell: Annotated[str | None, Query(max_length=64, description="a cell id or 'unassigned'")] = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="last seen at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="first seen at or before (ISO 8601)")] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    number: Annotated[
        str | None, Query(max_length=32, description="case number, e.g. GP-2026-000123")
    ] = None,
    plate: Annotated[str | None, Query(max_length=32)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: Annotated[
        Literal["last_seen", "first_seen", "created_at", "number", "sightings"], Query()
    ] = "last_seen",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> dict[str, Any]:
    assert sort in SORTS
    filters = CaseFilter(
        status=list(status) if status else None,
        category=category,
        grid_cell=grid_cell,
        team=team,
        since=since,
        until=until,
        camera=camera,
        device_id=device_id,
        number=number,
        plate=plate,
    )
    rows, total = list_cases(
        session, principal, filters, page=page, per_page=per_page, sort=sort, descending=order == "desc"
    )
    return {"total": total, "page": page, "per_page": per_page, "items": [case_summary(c) for c in rows]}


def _detail(session: Any, case: Case) -> dict[str, Any]:
    body = case_summary(case)
    links = case_links(session, case.id)
    by_sighting: dict[int | None, list[dict[str, str]]] = {}
    for link in links:
        by_sighting.setdefault(link.sighting_id, []).append(
            {"role": link.role, "sha256": link.sha256, "url": f"/api/evidence/{link.sha256}"}
        )
    body["sightings_list"] = [
        {
            "id": s.id,
            "incident_id": s.incident_id,
            "seen_at": s.seen_at.isoformat() + "Z",
            "position": {"lat": s.lat, "lon": s.lon} if s.lat is not None else None,
            "plate": s.plate,
            "camera_id": s.camera_id,
            "recurrence": s.recurrence,
            "evidence": by_sighting.get(s.id, []),
        }
        for s in case.sightings
    ]
    body["case_evidence"] = by_sighting.get(None, [])
    events = session.query(CaseEvent).filter(CaseEvent.case_id == case.id).order_by(CaseEvent.id).all()
    body["history"] = [
        {
            "at": e.at.isoformat() + "Z",
            "who": e.actor,
            "what": e.action,
            "from": e.from_status,
            "to": e.to_status,
            "why": e.reason,
            "note": e.note,
        }
        for e in events
    ]
    custody_count = session.query(CustodyEntry).filter(CustodyEntry.case_id == case.id).count()
    body["custody_entries"] = custody_count
    body["allowed_transitions"] = list(workflow.TRANSITIONS[case.status])
    return body


@router.get("/cases/{case_id}")
def get_one_case(case_id: CaseId, principal: Reader, session: ReadSessionDep) -> dict[str, Any]:
    """A case with its sightings, evidence links and history."""
    return _detail(session, get_case(session, principal, case_id))


@router.post("/cases/{case_id}/transitions")
def post_transition(
    case_id: CaseId,
    principal: Staff,
    session: SessionDep,
    services: ServicesDep,
    to: Annotated[Status, Form(description="the status to move to")],
    reason: Annotated[
        Literal["false_positive", "duplicate", "not_a_violation", "exempt"] | None,
        Form(description="required when rejecting"),
    ] = None,
    note: Annotated[str | None, Form(max_length=4000)] = None,
    photo: Annotated[UploadFile | None, File(description="after-photo, required when handled")] = None,
) -> dict[str, Any]:
    """Move a case along pending_review → filed → dispatched → handled → verified → closed (or rejected).
    An illegal move is a 409 naming the allowed ones."""
    stored = None
    if photo is not None and photo.filename is not None:
        get_case(session, principal, case_id)  # 404 before storing anything for an invisible case
        try:
            stored = services.store.put_stream(photo.file, max_bytes=services.settings.max_evidence_bytes)
        except EvidenceError as exc:
            raise IncidentInputError("photo", str(exc)) from None
    move = workflow.Move(target=to, reason=reason, note=note, has_photo=stored is not None)
    case = transition(session, principal, case_id, move, photo=stored)
    session.commit()
    return _detail(session, case)
