"""Cases: list, read, move along the workflow; boxes corrected on a sighting's frame; an admin's fetch
of a sealed original."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.accounts.accounts import Principal
from api.cases import box_pictures, review_labels, workflow
from api.cases.acting import store_after_photo, transition
from api.cases.incident import MAX_PIXELS
from api.cases.reading import (
    NUMBER_FORMS,
    SORTS,
    CaseDetail,
    CaseFilter,
    case_detail,
    case_page,
    describe,
    number_query,
    unseal_original,
)
from api.cases.workflow import RejectReason, Status
from api.http import schemas
from api.http.bodies import Received, body_of, request_body
from api.http.conditional import none_match
from api.http.deps import (
    MAX_ID,
    Admin,
    CaseId,
    ListSessionDep,
    Reader,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
    Staff,
    check_range,
    model_classes,
    require,
)

router = APIRouter(prefix="/api", tags=["cases"], responses=schemas.CALLER_ERRORS)

Sort = Literal["last_seen", "first_seen", "created_at", "number", "sightings"]
NOT_FOUND = schemas.error_responses(
    404, described={404: "no case of that id or number visible to the caller"}
)


class TransitionIn(BaseModel):
    """A move, as JSON or as a form (a form may add the after-photo as the file `photo`)."""

    model_config = ConfigDict(extra="ignore")

    to: Status = Field(description="the status to move to")
    reason: RejectReason | None = Field(None, description="required when rejecting")
    note: str | None = Field(None, max_length=4000)
    team: str | None = Field(None, max_length=64, description="dispatching: a grid cell's team")


PHOTO = "after-photo (multipart only), required when handled"

Labeller = Annotated[Principal, Depends(require(*review_labels.LABELLERS))]


class BoxIn(BaseModel):
    """A box on a sighting's raw frame, in its pixels (0 <= x1, x1 + 1 <= x2 <= width; the same for y)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    x1: float = Field(ge=0.0, le=MAX_PIXELS)
    y1: float = Field(ge=0.0, le=MAX_PIXELS)
    x2: float = Field(ge=0.0, le=MAX_PIXELS)
    y2: float = Field(ge=0.0, le=MAX_PIXELS)
    class_name: str = Field(
        min_length=1, max_length=64, description="a model class name of the site config's `kinds`"
    )
    op: Literal["correct", "add", "remove"] = Field(
        description="correct: replaces the detection's box; add: a box the detector missed; remove: drops "
        f"the labelled box it overlaps most (IoU >= {review_labels.REMOVE_MIN_IOU})"
    )


class BoxesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sighting_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="the sighting whose raw frame is labelled (default: the latest)"
    )
    boxes: list[BoxIn] = Field(min_length=1, max_length=review_labels.MAX_BOXES)


@router.get("/cases", response_model=schemas.CasePage)
def get_cases(
    principal: Reader,
    session: ListSessionDep,
    status: Annotated[list[Status] | None, Query(description="one or more statuses")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    grid_cell: Annotated[str | None, Query(max_length=64, description="a cell id or 'unassigned'")] = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[schemas.QueryTime | None, Query(description="last seen at or after (ISO 8601)")] = None,
    until: Annotated[
        schemas.QueryTime | None, Query(description="first seen at or before (ISO 8601)")
    ] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    number: Annotated[
        str | None,
        Query(
            max_length=32,
            description=f"a case number as people type it ({NUMBER_FORMS}; any case): the whole "
            "number, or the case's id alone; other text is a 422 naming number",
        ),
    ] = None,
    plate: Annotated[str | None, Query(max_length=32)] = None,
    first_seen_since: Annotated[
        schemas.QueryTime | None, Query(description="first seen at or after (ISO 8601), as /api/stats")
    ] = None,
    first_seen_until: Annotated[
        schemas.QueryTime | None, Query(description="first seen at or before (ISO 8601), as /api/stats")
    ] = None,
    superseded: Annotated[
        bool | None,
        Query(
            description="false: leaves out the cases the service rejected as superseded by a corrected "
            "resend, which /api/stats counts nowhere; true: only those"
        ),
    ] = None,
    upload: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="an upload's id (GET /api/uploads): the cases with a sighting filed by its jobs",
        ),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: Annotated[Sort, Query()] = "last_seen",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> Response:
    """The cases the caller may see that match the filters, a page at a time. Checked against
    schemas.CasePage and written by pydantic in one pass: FastAPI's own path (validate, dump to
    Python, then json.dumps) cost 0.96-1.37 ms a 50-case page against 0.31-0.51 ms (three runs in
    one process each), the same bytes."""
    assert sort in SORTS
    check_range(since, until)
    check_range(first_seen_since, first_seen_until, names=("first_seen_since", "first_seen_until"))
    sought, case_id = number_query(number or "")
    filters = CaseFilter(
        status=list(status) if status else None,
        category=category,
        grid_cell=grid_cell,
        team=team,
        since=since,
        until=until,
        camera=camera,
        device_id=device_id,
        number=sought,
        plate=plate,
        case_id=case_id,
        first_seen_since=first_seen_since,
        first_seen_until=first_seen_until,
        superseded=superseded,
        upload_id=upload,
    )
    found = case_page(
        session,
        principal=principal,
        filters=filters,
        page=page,
        per_page=per_page,
        sort=sort,
        descending=order == "desc",
    )
    body = schemas.CasePage.model_validate(found, from_attributes=True).model_dump_json()
    return Response(body.encode(), media_type="application/json")


@router.get("/cases/{case_id}", response_model=schemas.CaseDetail, responses=NOT_FOUND)
def get_one_case(case_id: CaseId, principal: Reader, session: ReadSessionDep) -> CaseDetail:
    """A case with its sightings, evidence links and history."""
    return case_detail(session, principal=principal, case_id=case_id)


@router.post(
    "/cases/{case_id}/transitions",
    response_model=schemas.CaseDetail,
    responses={
        **schemas.BODY_ERRORS,
        **schemas.WRITE_FAULTS,
        **schemas.error_responses(415, described={415: "neither JSON nor a form"}),
        **NOT_FOUND,
        403: {"model": schemas.ErrorBody, "description": "the caller's role may not make this move"},
        409: {"model": schemas.TransitionConflict, "description": "the workflow does not allow this move"},
    },
    openapi_extra=request_body(TransitionIn, files={"photo": PHOTO}),
)
def post_transition(
    case_id: CaseId,
    principal: Staff,
    session: SessionDep,
    services: ServicesDep,
    body: Annotated[Received[TransitionIn], Depends(body_of(TransitionIn, files=("photo",)))],
) -> CaseDetail:
    """Move a case along pending_review → filed → dispatched → handled → verified → closed (or rejected).
    An illegal move is a 409 naming the allowed ones. The body is JSON or a form; the after-photo
    needs a multipart form."""
    fields, photo = body.fields, body.files.get("photo")
    stored = None
    if photo is not None:
        stored = store_after_photo(
            session,
            principal=principal,
            case_id=case_id,
            photo=photo.file,
            store=services.store,
            max_bytes=services.settings.max_evidence_bytes,
        )
    move = workflow.Move(
        target=fields.to,
        reason=fields.reason,
        note=fields.note,
        has_photo=stored is not None,
        team=fields.team,
    )
    case = transition(session, principal=principal, case_id=case_id, move=move, photo=stored)
    session.commit()
    return describe(session, case=case, principal=principal)


@router.post(
    "/cases/{case_id}/boxes",
    response_model=schemas.FrameLabels,
    responses={
        **schemas.BODY_ERRORS,
        **schemas.WRITE_FAULTS,
        **schemas.error_responses(
            404, described={404: "no such case, no such sighting of it, or its raw frame is missing"}
        ),
    },
)
def post_boxes(
    case_id: CaseId, principal: Labeller, session: SessionDep, services: ServicesDep, body: BoxesIn
) -> review_labels.FrameLabels:
    """Correct, add or remove boxes on a sighting's raw frame (the whole best frame, privacy-blurred),
    in its pixels, with model class names of the site config; operators and admins. Kept with the frame
    as review labels for the training-set export (gridpatrol dataset from-reviews) and recorded in the
    case's custody chain (action boxes_labelled). A box outside the frame, a class the site config does
    not know, or a removal that matches no labelled box is a 422 naming the box; a frame with a review
    label that cannot be read (edited outside the service) a 503 naming the label."""
    edits = [
        review_labels.BoxEdit(b.op, review_labels.LabelBox(b.x1, b.y1, b.x2, b.y2, b.class_name))
        for b in body.boxes
    ]
    labelled = review_labels.label_boxes(
        session,
        principal=principal,
        case_id=case_id,
        sighting_id=body.sighting_id,
        edits=edits,
        classes=model_classes(services),
        store=services.store,
    )
    session.commit()
    return labelled


def _drawn_jpeg(etag: str, if_none_match: str | None, draw: Callable[[], bytes]) -> Response:
    """A picture drawn on request (never stored), under its ETag: a 304 when If-None-Match names it
    (nothing drawn), else the JPEG `draw` makes. Cache-Control: private (never kept by a shared cache),
    no-cache (the browser asks again each time, and is told whether it changed)."""
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if if_none_match is not None and none_match([if_none_match], etag):
        return Response(status_code=304, headers=headers)
    return Response(draw(), media_type="image/jpeg", headers=headers)


@router.get(
    "/cases/{case_id}/sightings/{sighting_id}/corrected",
    response_class=Response,
    responses={
        200: {
            "description": "the picture, drawn now (JPEG), with its ETag",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "the picture If-None-Match names is the one it would draw now: not drawn"},
        **schemas.error_responses(
            404,
            described={
                404: "no such case or sighting of it, its frame has no box correction, a crop of a frame "
                "with no box left, or its raw frame is missing"
            },
        ),
    },
)
def get_corrected_picture(
    case_id: CaseId,
    sighting_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
    view: Annotated[
        Literal["frame", "crop"],
        Query(description="frame: the whole raw frame; crop: around its boxes"),
    ] = "frame",
    if_none_match: Annotated[
        str | None,
        Header(max_length=2000, description="ETags of the picture the client holds: 304 when one is it"),
    ] = None,
) -> Response:
    """A sighting's raw frame (privacy-blurred) with the boxes operators corrected on it drawn in, or
    its crop around them: what the pages show once a frame's box was corrected (the annotated frame
    and the crop the pipeline wrote carry the detector's box). Never stored: the evidence files and
    the custody chain stay as they were. Its ETag is computed from the raw frame's SHA-256 and the
    boxes on it now (box_pictures.picture_etag): a client holding it (If-None-Match) gets a 304 and
    nothing is drawn; a changed correction gives a new ETag. Cache-Control: private (never kept by a
    shared cache), no-cache (the browser asks again each time, and is told whether it changed)."""
    frame = box_pictures.picture_frame(
        session, principal=principal, case_id=case_id, sighting_id=sighting_id, view=view
    )
    return _drawn_jpeg(
        box_pictures.picture_etag(frame, view),
        if_none_match,
        lambda: box_pictures.draw_picture(frame, view=view, store=services.store),
    )


@router.get(
    "/cases/{case_id}/sightings/{sighting_id}/strip/{role}",
    response_class=Response,
    responses={
        200: {
            "description": "the picture, drawn now (JPEG), with its ETag",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "the picture If-None-Match names is the one it would draw now: not drawn"},
        **schemas.error_responses(
            404,
            described={
                404: "no such case or sighting of it, no dwell-strip picture in that role, or its file "
                "is missing"
            },
        ),
    },
)
def get_strip_picture(
    case_id: CaseId,
    sighting_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    role: Annotated[
        Literal["dwell_first", "dwell_middle", "dwell_last"],
        Path(description="which picture of the dwell strip: first seen, middle, last seen"),
    ],
    principal: Reader,
    session: ReadSessionDep,
    services: ServicesDep,
    if_none_match: Annotated[
        str | None,
        Header(max_length=2000, description="ETags of the picture the client holds: 304 when one is it"),
    ] = None,
) -> Response:
    """A sighting's dwell-strip picture with the box its small picture shows on the pages drawn in:
    what a strip picture opened by itself (tapped on the task page, clicked on the case page) shows,
    so that full size it still says which object the strip follows. The tracker's box, red; once the
    best frame's box was corrected, the operators' boxes on the best frame's picture, and the
    tracker's, amber and dashed, on the others (the pages' marks). Never stored. Its ETag is computed
    from the picture's SHA-256, those boxes and the strip's window (box_pictures.strip_etag), with the
    corrected pictures' rules: If-None-Match naming it gets a 304 and nothing is drawn; Cache-Control:
    private, no-cache."""
    picture = box_pictures.strip_frame(
        session, principal=principal, case_id=case_id, sighting_id=sighting_id, role=role
    )
    return _drawn_jpeg(
        box_pictures.strip_etag(picture),
        if_none_match,
        lambda: box_pictures.draw_strip(picture, store=services.store),
    )


@router.get(
    "/cases/{case_id}/evidence/original",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the unblurred original (JPEG)",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        **schemas.WRITE_FAULTS,
        **schemas.error_responses(
            403,
            404,
            described={
                403: "only admins may fetch a sealed original",
                404: "no such case, or it has no such sealed original",
            },
        ),
    },
)
def get_sealed_original(
    case_id: CaseId,
    principal: Admin,
    session: SessionDep,
    services: ServicesDep,
    sha256: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9a-f]{64}$",
            description="which original (each sighting may have one, listed to admins in the case's "
            "evidence as role original); default: the latest sighting's",
        ),
    ] = None,
) -> Response:
    """A sealed original: an incident's best frame before privacy blurring (faces, the plates of
    vehicles not involved). Admins only; each fetch is recorded in the case's custody chain (action
    evidence_unsealed, who and which file) before the file is sent."""
    found = unseal_original(
        session, principal=principal, case_id=case_id, sha256=sha256, store=services.store
    )
    session.commit()
    headers = {"Cache-Control": "no-store"}  # every fetch is to be recorded: nothing kept on the way
    content = found.content
    if content.path is not None:
        return FileResponse(content.path, media_type=found.media_type, headers=headers)
    assert content.chunks is not None
    headers["Content-Length"] = str(content.size)
    return StreamingResponse(content.chunks, media_type=found.media_type, headers=headers)
