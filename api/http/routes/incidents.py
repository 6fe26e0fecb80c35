"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.cases.incident import IncidentInputError, parse_incident
from api.cases.ingest import IngestResult, IngestWriter, needs_lookup, prepare_payload
from api.http import schemas
from api.http.deps import Feeder, ServicesDep
from api.http.incident_form import IncidentForm, receive_incident_form
from api.services import Services

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
async def post_incident(request: Request, principal: Feeder, services: ServicesDep) -> Response:
    """Record an incident: a new case or a new sighting of a case. Idempotent on the incident id.

    The body is read here rather than through FastAPI's form parameters: evidence files are
    streamed straight into the evidence store as they arrive (no spooled copy, no second pass),
    which is most of what this endpoint costs besides the database. The incident is then written
    by the process's ingest writer (group commit, api.cases.ingest.IngestWriter) together with
    those other requests are sending at the same moment; the answer is this incident's own."""
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
    if needs_lookup(form.incident, form.files, principal):  # a runner, or a retry without files
        prepared = await run_in_threadpool(
            prepare_payload, services.read_factory, payload=form.incident, files=form.files, actor=principal
        )
    else:  # no database read: matching the files to the evidence list is quick
        prepared = prepare_payload(
            services.read_factory, payload=form.incident, files=form.files, actor=principal
        )
    if isinstance(prepared, IngestResult):
        result = prepared
    else:
        result = await ingest_writer(request, services).ingest(prepared, actor=principal)
    return _outcome(result)


def ingest_writer(request: Request, services: Services) -> IngestWriter:
    """The app's ingest writer (made on first use; its thread ends when idle)."""
    writer: IngestWriter | None = getattr(request.app.state, "ingest_writer", None)
    if writer is None:
        writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=services.policy)
        request.app.state.ingest_writer = writer
    return writer


def _outcome(result: IngestResult) -> Response:
    """The IngestOutcome as JSON, written directly (the route is the hot path: FastAPI would validate
    and encode the response model again); 200 for a duplicate, 201 otherwise."""
    body = {
        "case_id": result.case_id,
        "case_number": result.case_number,
        "status": result.status,
        "sighting_id": result.sighting_id,
        "created": result.created,
        "duplicate": result.duplicate,
        "recurrence": result.recurrence,
    }
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=200 if result.duplicate else 201,
        media_type="application/json",
    )
