"""POST /api/incidents: an incident and its evidence files from a camera, device or worker."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import Principal
from api.cases.chalking import ChalkPolicy, ChalkResult, chalk_committed
from api.cases.incident import IncidentInputError, parse_incident
from api.cases.ingest import (
    IncidentIn,
    IngestResult,
    IngestWriter,
    needs_lookup,
    prepare_payload,
    remove_refused_evidence,
)
from api.errors import InputError
from api.http import schemas
from api.http.deps import Feeder, ServicesDep
from api.http.incident_form import (
    MAX_BATCH_INCIDENTS,
    BatchItem,
    IncidentForm,
    IncidentFormError,
    receive_incident_batch,
    receive_incident_form,
)
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
        409: {"model": schemas.IncidentConflictBody, "description": schemas.INCIDENT_CONFLICT},
        **schemas.error_responses(400, 415),
        **schemas.WRITE_FAULTS,
    },
)
async def post_incident(request: Request, principal: Feeder, services: ServicesDep) -> Response:
    """Record an incident: a new case or a new sighting of a case; a suspected one (a single pass of
    a parked vehicle) a chalk mark, or, when it is the vehicle seen again where an earlier pass saw
    it, the confirmed incident of both filed as a case (api.cases.chalking). Idempotent on the
    incident id: the same incident sent again is answered as the first time (200, duplicate); the
    same id with other content is refused (409 naming what differs) and changes nothing.

    The body is read here rather than through FastAPI's form parameters: evidence files are
    streamed straight into the evidence store as they arrive (no spooled copy, no second pass),
    which is most of what this endpoint costs besides the database. The incident is then written
    by the process's ingest writer (group commit, api.cases.ingest.IngestWriter) together with
    those other requests are sending at the same moment; the answer is this incident's own.

    An incident refused (4xx) leaves none of the evidence files it brought new to the store behind
    (api.cases.ingest.remove_refused_evidence); a fault of the service (503, 507) keeps them for the
    incident sent again."""
    received = IncidentForm()
    try:
        return await _post_incident(request, principal, services, received)
    except InputError:
        await _remove_refused(services, [received])
        raise


async def _remove_refused(
    services: Services, refused: list[IncidentForm], *, keep: frozenset[str] = frozenset()
) -> None:
    """The evidence files the refused incidents brought new to the store removed again, but for those
    with a hash in `keep` (a file an incident taken in the same batch shares)."""
    files = [stored for form in refused for _, stored in form.files if stored.sha256 not in keep]
    if any(stored.created for stored in files):
        placed_by = max(form.placed_at for form in refused)
        await run_in_threadpool(
            remove_refused_evidence, services.read_factory, services.store, files, placed_by=placed_by
        )


async def _post_incident(
    request: Request, principal: Principal, services: Services, received: IncidentForm
) -> Response:
    content_type = request.headers.get("content-type") or ""
    if content_type.lower().startswith("multipart/"):
        form = await receive_incident_form(
            content_type,
            request.stream(),
            store=services.store,
            max_file_bytes=services.settings.max_evidence_bytes,
            form=received,
        )
    elif not content_type or content_type.lower().startswith("application/x-www-form-urlencoded"):
        # a retry without files (or an empty body: the incident is missing)
        fields = await request.form()
        text = fields.get("incident")
        form = IncidentForm(incident=parse_incident(text) if isinstance(text, str) else None)
    else:
        raise IncidentFormError("must be multipart/form-data (or, without files, urlencoded)")
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


_INCIDENT_FORM = INCIDENT_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]  # type: ignore[index]
BATCH_BODY = {  # POST /api/incidents's form, repeated
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    **_INCIDENT_FORM,
                    "description": (
                        "the incident forms of POST /api/incidents one after the other: each `incident` "
                        f"part followed by its `files` parts; at most {MAX_BATCH_INCIDENTS} incidents"
                    ),
                    "properties": {
                        "incident": {"type": "array", "items": _INCIDENT_FORM["properties"]["incident"]},
                        "files": _INCIDENT_FORM["properties"]["files"],
                    },
                }
            }
        },
    }
}


@router.post(
    "/incidents/batch",
    response_model=schemas.BatchOutcome,
    openapi_extra=BATCH_BODY,
    responses={
        422: {
            "model": schemas.BatchRefused,
            "description": "no incident of the batch could be taken: the first one's error, and each one's",
        },
        **schemas.error_responses(400, 415),
        **schemas.WRITE_FAULTS,
    },
)
async def post_incident_batch(request: Request, principal: Feeder, services: ServicesDep) -> Response:
    """Record several incidents in one request, each as POST /api/incidents would (idempotent on its
    id, suspected ones chalked), with an answer per incident in the order sent. A runner sends its
    spool's backlog this way: one request and one transaction for many incidents instead of one
    each. One incident's own mistake (bad JSON, a file that does not match its evidence list, a camera
    the runner may not post for) fails only itself: its entry carries the status and error body it
    would have had alone (its index says which incident it is). The batch answers 200 when at least
    one incident was taken; when none was, 422 with the first incident's error named
    `incidents[0].<field>`, the entries still there. A fault of the service (database unreachable,
    disk full) fails the whole batch (503, 507), to be sent again. A refused incident's evidence files
    are removed again as POST /api/incidents removes them, but for one a taken incident shares."""
    items = await receive_incident_batch(
        request.headers.get("content-type"),
        request.stream(),
        store=services.store,
        max_file_bytes=services.settings.max_evidence_bytes,
    )
    try:
        prepared = await _prepare_batch(services, items, principal)
        filed = await _file_batch(request, services, prepared, principal)
    except InputError:
        await _remove_refused(services, [item.received for item in items])
        raise
    taken = [
        item.received for item, answer in zip(items, filed, strict=True) if not isinstance(answer, InputError)
    ]
    refused = [
        item.received for item, answer in zip(items, filed, strict=True) if isinstance(answer, InputError)
    ]
    shared = frozenset(stored.sha256 for form in taken for _, stored in form.files)
    await _remove_refused(services, refused, keep=shared)
    return _batch_answer(items, filed)


Prepared = IncidentIn | IngestResult | ChalkResult | InputError
Filed = IngestResult | ChalkResult | InputError


async def _prepare_batch(services: Services, items: list[BatchItem], principal: Principal) -> list[Prepared]:
    """Each incident prepared as POST /api/incidents prepares one (its own mistake its answer); those
    that read the database (a runner's, a retry without files) together in one worker thread."""
    prepared: list[Prepared] = [item.error or InputError("incident", "Field required") for item in items]
    readable = [i for i, item in enumerate(items) if item.form is not None]
    lookups = [i for i in readable if _needs_lookup(items[i], principal)]
    quick = [i for i in readable if i not in lookups]
    if lookups:
        looked_up = await run_in_threadpool(_prepare_all, services, [items[i] for i in lookups], principal)
        for i, answer in zip(lookups, looked_up, strict=True):
            prepared[i] = answer
    for i, answer in zip(quick, _prepare_all(services, [items[i] for i in quick], principal), strict=True):
        prepared[i] = answer
    return prepared


async def _file_batch(
    request: Request, services: Services, prepared: list[Prepared], principal: Principal
) -> list[Filed]:
    """The prepared incidents filed: the ingest writer takes them all at once (its next transaction
    or two), suspected ones are chalked one by one. The service's fault is raised for the batch."""
    filed: list[Filed] = [
        p if not isinstance(p, IncidentIn) else InputError("incident", "not filed") for p in prepared
    ]
    ingest = [i for i, p in enumerate(prepared) if isinstance(p, IncidentIn) and not p.suspected]
    outcomes = await ingest_writer(request, services).ingest_many(
        [(inc, principal) for i in ingest if isinstance(inc := prepared[i], IncidentIn)]
    )
    for i, (result, error) in zip(ingest, outcomes, strict=True):
        if error is not None and not isinstance(error, InputError):
            raise error  # sent again whole (what was written is answered as duplicates then)
        filed[i] = error if isinstance(error, InputError) else result  # type: ignore[assignment]
    for i, p in enumerate(prepared):
        if isinstance(p, IncidentIn) and p.suspected:
            try:
                filed[i] = await run_in_threadpool(
                    chalk_committed,
                    services.factory,
                    p,
                    grid_cache=services.grid_cache,
                    policy=services.policy,
                    chalk_policy=ChalkPolicy.of(services.settings),
                    actor=principal,
                )
            except InputError as exc:
                filed[i] = exc
    return filed


def _batch_answer(items: list[BatchItem], filed: list[Filed]) -> Response:
    """Each incident's entry in order; 200, or 422 when none was taken (named by the first one)."""
    results = []
    for i, (item, answer) in enumerate(zip(items, filed, strict=True)):
        incident_id = item.form.incident.id if item.form is not None and item.form.incident else None
        if isinstance(answer, InputError):
            entry = {"status_code": answer.status, "outcome": None, "error": answer.body()}
        else:
            taken = outcome_body(answer)
            entry = {"status_code": 200 if taken["duplicate"] else 201, "outcome": taken, "error": None}
        results.append({"index": i, "incident_id": incident_id, **entry})
    body: dict[str, Any] = {"results": results}
    status = 200
    first = filed[0]
    if isinstance(first, InputError) and all(isinstance(answer, InputError) for answer in filed):
        body = {**InputError(f"incidents[0].{first.field}", first.reason).body(), **body}
        status = 422
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


def _needs_lookup(item: BatchItem, principal: Principal) -> bool:
    assert item.form is not None and item.form.incident is not None
    return needs_lookup(item.form.incident, item.form.files, principal)


def _prepare_all(services: Services, items: list[BatchItem], principal: Principal) -> list[Prepared]:
    """prepare_payload for each item; an item's own mistake is its answer."""
    prepared: list[Prepared] = []
    for item in items:
        assert item.form is not None and item.form.incident is not None
        try:
            prepared.append(
                prepare_payload(
                    services.read_factory, payload=item.form.incident, files=item.form.files, actor=principal
                )
            )
        except InputError as exc:
            prepared.append(exc)
    return prepared


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
                "before_close": False,
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
        "before_close": result.before_close,
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
