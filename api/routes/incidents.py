"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from api.cases import IncidentIn, IncidentInputError, ingest_committed
from api.evidence_store import EvidenceError, StoredFile
from api.incidents import parse_incident
from api.models import Case, Sighting
from api.routes.deps import Feeder, ReadSessionDep, ServicesDep

router = APIRouter(prefix="/api", tags=["incidents"])


def _result(
    case: Case, sighting_id: int, *, created: bool, duplicate: bool, recurrence: bool
) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "case_number": case.number,
        "status": case.status,
        "sighting_id": sighting_id,
        "created": created,
        "duplicate": duplicate,
        "recurrence": recurrence,
    }


@router.post("/incidents", status_code=201, responses={200: {"description": "incident already received"}})
def post_incident(
    principal: Feeder,
    services: ServicesDep,
    session: ReadSessionDep,
    incident: Annotated[str, Form(description="detect.values.Incident.to_json() as JSON text")],
    files: Annotated[list[UploadFile] | None, File(description="the evidence files it lists")] = None,
) -> Any:
    """Record an incident: a new case or a new sighting of a case. Idempotent on the incident id."""
    payload = parse_incident(incident)

    def already_received() -> JSONResponse | None:
        existing = session.query(Sighting).filter(Sighting.incident_id == payload.id).one_or_none()
        if existing is None:
            return None
        case = session.get(Case, existing.case_id)
        body = _result(case, existing.id, created=False, duplicate=True, recurrence=False)  # type: ignore[arg-type]
        return JSONResponse(body)

    if not files and payload.evidence and (known := already_received()) is not None:
        return known  # a retry without its files: nothing to store

    stored: dict[str, StoredFile] = {}
    for index, upload in enumerate(files or []):
        try:
            item = services.store.put_stream(upload.file, max_bytes=services.settings.max_evidence_bytes)
        except EvidenceError as exc:
            raise IncidentInputError(f"files[{index}]", f"{upload.filename or 'file'}: {exc}") from None
        stored[item.sha256] = item
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

    inc = IncidentIn.from_incident(payload, evidence=evidence, camera_id=principal.camera_id)
    result = ingest_committed(
        services.factory, inc, grid_cache=services.grid_cache, policy=services.policy, actor=principal
    )
    body = _result(
        result.case,
        result.sighting_id,
        created=result.created,
        duplicate=result.duplicate,
        recurrence=result.recurrence,
    )
    return JSONResponse(body, status_code=200 if result.duplicate else 201)
