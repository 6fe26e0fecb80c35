"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import Principal
from api.cases.incident import IncidentInputError, IncidentPayload, parse_incident
from api.cases.ingest import IncidentIn, ingest_committed
from api.http.deps import Feeder, ServicesDep
from api.http.incident_form import IncidentForm, receive_incident_form
from api.services import Services
from api.storage.evidence_store import StoredFile
from api.storage.models import Case, Sighting

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


INCIDENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["incident"],
                    "properties": {
                        "incident": {
                            "type": "string",
                            "description": "detect.values.Incident.to_json() as JSON text (sent first)",
                        },
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the evidence files it lists",
                        },
                    },
                }
            },
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["incident"],
                    "properties": {"incident": {"type": "string"}},
                }
            },
        },
    }
}


@router.post(
    "/incidents",
    status_code=201,
    openapi_extra=INCIDENT_BODY,
    responses={200: {"description": "incident already received"}},
)
async def post_incident(request: Request, principal: Feeder, services: ServicesDep) -> Any:
    """Record an incident: a new case or a new sighting of a case. Idempotent on the incident id.

    The body is read here rather than through FastAPI's form parameters: evidence files are
    streamed straight into the evidence store as they arrive (no spooled copy, no second pass),
    which is most of what this endpoint costs besides the database."""
    content_type = request.headers.get("content-type") or ""
    if content_type.lower().startswith("multipart/"):
        form = await receive_incident_form(
            content_type,
            request.stream(),
            store=services.store,
            max_file_bytes=services.settings.max_evidence_bytes,
        )
    else:  # a retry without files may come as a plain urlencoded form
        fields = await request.form()
        text = fields.get("incident")
        form = IncidentForm(incident=parse_incident(text) if isinstance(text, str) else None)
    if form.incident is None:
        raise IncidentInputError("incident", "Field required")
    return await run_in_threadpool(_record, services, principal, form.incident, form.files)


def _record(
    services: Services,
    principal: Principal,
    payload: IncidentPayload,
    files: list[tuple[str | None, StoredFile]],
) -> JSONResponse:
    """Match the stored files to the incident's evidence list and ingest it (blocking: thread pool)."""
    if not files and payload.evidence:  # a retry without its files: nothing to store
        with services.read_factory() as session:
            existing = session.query(Sighting).filter(Sighting.incident_id == payload.id).one_or_none()
            if existing is not None:
                case = session.get(Case, existing.case_id)
                body = _result(case, existing.id, created=False, duplicate=True, recurrence=False)  # type: ignore[arg-type]
                return JSONResponse(body)

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

    inc = IncidentIn.from_payload(payload, evidence=evidence, camera_id=principal.camera_id)
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
