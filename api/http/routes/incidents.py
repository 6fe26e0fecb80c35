"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.cases.chalking import ChalkPolicy, ChalkResult, chalk_committed
from api.cases.incident import IncidentInputError, parse_incident
from api.cases.ingest import IncidentIn, IngestResult, IngestWriter, needs_lookup, prepare_payload
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
    """Record an incident: a new case or a new sighting of a case; a suspected one (a single pass of
    a parked vehicle) a chalk mark, or, when it is the vehicle seen again where an earlier pass saw
    it, the confirmed incident of both filed as a case (api.cases.chalking). Idempotent on the
    incident id.

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
    result: IngestResult | ChalkResult
    if not isinstance(prepared, IncidentIn):
        result = prepared
    elif prepared.suspected:  # chalked in its own transaction, outside the writer's batches
        result = await run_in_threadpool(
            chalk_committed,
            services.factory,
            prepared,
            grid_cache=services.grid_cache,
            policy=services.policy,
            chalk_policy=ChalkPolicy.of(services.settings),
            actor=principal,
        )
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


def outcome_body(result: IngestResult | ChalkResult) -> dict[str, Any]:
    """An IngestOutcome's JSON: a case's new sighting (or its first again), or a suspected incident's
    chalk mark, with the case its confirmed incident was filed in when it matched an earlier pass."""
    if isinstance(result, ChalkResult):
        if result.confirmed is None:
            return {
                "case_id": None,
                "case_number": None,
                "status": "suspected",
                "sighting_id": None,
                "created": False,
                "duplicate": result.duplicate,
                "recurrence": False,
                "chalk_mark": result.mark_id,
            }
        return {**outcome_body(result.confirmed), "duplicate": result.duplicate, "chalk_mark": result.mark_id}
    return {
        "case_id": result.case_id,
        "case_number": result.case_number,
        "status": result.status,
        "sighting_id": result.sighting_id,
        "created": result.created,
        "duplicate": result.duplicate,
        "recurrence": result.recurrence,
        "chalk_mark": None,
    }


def _outcome(result: IngestResult | ChalkResult) -> Response:
    """The IngestOutcome as JSON, written directly (the route is the hot path: FastAPI would validate
    and encode the response model again); 200 for a duplicate, 201 otherwise."""
    body = outcome_body(result)
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=200 if body["duplicate"] else 201,
        media_type="application/json",
    )
