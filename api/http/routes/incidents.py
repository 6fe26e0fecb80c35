"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.cases.incident import IncidentInputError, parse_incident
from api.cases.ingest import IngestResult, ingest_payload
from api.http import schemas
from api.http.deps import Feeder, ServicesDep
from api.http.incident_form import IncidentForm, receive_incident_form

router = APIRouter(prefix="/api", tags=["incidents"], responses=schemas.CALLER_ERRORS)

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
                            "contentMediaType": "application/json",
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
    response_model=schemas.IngestOutcome,
    openapi_extra=INCIDENT_BODY,
    responses={
        200: {"model": schemas.IngestOutcome, "description": "incident already received (duplicate)"},
        **schemas.error_responses(400, 415),
        **schemas.WRITE_FAULTS,
    },
)
async def post_incident(
    request: Request, response: Response, principal: Feeder, services: ServicesDep
) -> IngestResult:
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
    result = await run_in_threadpool(
        ingest_payload,
        services.factory,
        read_factory=services.read_factory,
        payload=form.incident,
        files=form.files,
        grid_cache=services.grid_cache,
        policy=services.policy,
        actor=principal,
    )
    if result.duplicate:
        response.status_code = 200
    return result
