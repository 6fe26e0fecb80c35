"""What the API answers, as pydantic models: the OpenAPI document's response schemas, errors included.

Routes return the domain's values (frozen dataclasses of api.cases and api.jobs, ORM rows of
api.accounts) and name one of these as `response_model`; FastAPI reads them by attribute, so a
field here is a field there, and serializes them straight to JSON. Times are stored as naive UTC and
written as ISO 8601 ending in Z (`UtcTime`, api.storage.db.iso_utc), as they always were.

Every client error has one shape, `ErrorBody` (api.errors.InputError.body); `error_responses`
declares it for the statuses a route may answer with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    computed_field,
)
from pydantic_core import PydanticCustomError

from api.accounts.accounts import Role
from api.cases.wall_time import WallTime
from api.cases.webhooks import DeliveryStatus, WebhookEvent
from api.cases.workflow import RejectReason, Status
from api.jobs.queue import JobStatus
from api.storage.db import iso_utc
from streams.urls import mask_credentials

UtcTime = Annotated[
    datetime,
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "UTC, ISO 8601 ending in Z"}),
]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256")]
# A webhook's URL, or text that may hold it (a delivery's last error), as answers show it: the password
# of its user:password@ and the values of secret-looking parameters (?token=) are *** (the stored URL
# keeps them, for sending).
Masked = Annotated[str, AfterValidator(mask_credentials)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- errors --------------------------------------------------------------------------------------


class ErrorItem(Schema):
    field: str = Field(description="the input at fault: a form field, a JSON path, a query parameter")
    reason: str


class ErrorBody(Schema):
    """Every 4xx answer: the first error as text, then all of them (more keys on some, see 409)."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(description='"<field>: <reason>" of the first error')
    errors: list[ErrorItem] = Field(min_length=1)


class TransitionConflict(ErrorBody):
    """A move the workflow does not allow from the case's current status."""

    current: Status
    allowed: list[Status] = Field(description="the statuses the case may move to from here")


class IncidentConflictBody(ErrorBody):
    """An incident id received before, sent again with other content: refused, nothing changed."""

    incident_id: str = Field(description="the incident id sent again")
    changed: list[str] = Field(
        description="what differs from its first receipt: the incident's keys (camera_id: its camera)"
    )


INCIDENT_CONFLICT = (
    "the incident id was received before with other content: refused, nothing changed; `changed` names "
    "what differs"
)


ERROR_DESCRIPTIONS = {
    400: "a malformed body",
    401: "no bearer token, or an unknown, expired or revoked one (WWW-Authenticate: Bearer)",
    403: "the caller's role may not do this",
    404: "no such thing, or not visible to the caller",
    409: "a conflict with what is already there",
    413: "larger than the limit",
    415: "not a kind of content this endpoint takes",
    422: "an input that cannot be taken; `errors` names each field",
    429: "too many attempts; Retry-After says for how long",
    503: "the database does not answer (down, restarting, locked too long); Retry-After says when to retry",
    507: "a disk the service writes to is full (evidence, uploads, database); nothing half-written stays",
}


Responses = dict[int | str, dict[str, Any]]


def error_responses(*statuses: int, described: Mapping[int, str] | None = None) -> Responses:
    """OpenAPI `responses` for these error statuses, each an ErrorBody, with the usual description
    of the status unless `described` gives the route's own."""
    described = described or {}
    return {
        status: {"model": ErrorBody, "description": described.get(status, ERROR_DESCRIPTIONS[status])}
        for status in statuses
    }


SERVICE_FAULTS = error_responses(503)  # every route that reads the database (api.http.app's handlers)
WRITE_FAULTS = error_responses(503, 507)  # every route that writes to the database or a disk
CALLER_ERRORS = {**error_responses(401, 403, 422), **SERVICE_FAULTS}  # every route that needs a token or key
BODY_ERRORS = error_responses(400, described={400: "a body that cannot be parsed (no JSON, no form)"})


# --- request parameters --------------------------------------------------------------------------

YEARS = r"(?:19[7-9][0-9]|2[01][0-9]{2})"  # api.cases.wall_time's range, 1970..2199, by its years
DAYS = r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
QUERY_TIME_PATTERN = (  # RFC 3339's date-time, the offset optional (UTC), 29 February left out
    rf"^{YEARS}-{DAYS}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{{1,6}})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)


DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: Any) -> Any:
    """A query's date-time is ISO 8601 text: pydantic would also read a number ("0.5") as Unix
    seconds, which the document does not promise and no client means, and a date alone as that day's
    midnight UTC, which is not the day a person means (at UTC+8 it begins 8 hours earlier: the pages
    and `gridpatrol report` count local days), so both are refused."""
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not text or text[0] in "+-." or text.replace(".", "", 1).isdigit():
        raise PydanticCustomError("iso_8601", "must be an ISO 8601 date-time, e.g. 2026-11-20T09:00:00+08:00")
    if DATE_ONLY.fullmatch(text):
        raise PydanticCustomError(
            "iso_8601_date",
            "{date} is a date without a time: send the instant with its offset, e.g. "
            "{date}T00:00:00+08:00 for the midnight that day begins at in UTC+8",
            {"date": text},
        )
    return value


QueryTime = Annotated[
    WallTime,
    BeforeValidator(_iso_text),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": QUERY_TIME_PATTERN,
            "description": "ISO 8601 date and time (no offset: UTC; a date alone is refused), from "
            "1970-01-01T00:00:00Z up to 2200-01-01T00:00:00Z",
        }
    ),
]
"""A date-time query parameter: api.cases.wall_time's WallTime, given as ISO 8601 text only."""


# --- cases ---------------------------------------------------------------------------------------


class Position(Schema):
    lat: float = Field(description="WGS84 degrees")
    lon: float = Field(description="WGS84 degrees")


class CaseSummary(Schema):
    id: int
    number: str | None = Field(description="e.g. GP-2026-000123")
    category: str
    status: Status
    grid_cell: str = Field(description="the grid cell id, or 'unassigned'")
    team: str | None
    position: Position | None
    plate: str | None
    camera_id: str | None
    device_id: int | None
    first_seen: UtcTime
    last_seen: UtcTime
    sightings: int
    recurrences: int = Field(description="times a closed case was seen again and reopened")
    reject_reason: RejectReason | None
    unassigned: bool = Field(description="no grid cell holds its position (or it has none)")


class EvidenceRef(Schema):
    role: str = Field(
        description="annotated, crop, raw, a dwell-strip frame (dwell_*), after_photo, or original (the "
        "unblurred frame, sealed: listed to admins only)"
    )
    sha256: Sha256

    @computed_field(description="where to fetch the file (GET /api/evidence/{sha256})")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/api/evidence/{self.sha256}"


class Sighting(Schema):
    id: int
    incident_id: str
    seen_at: UtcTime
    position: Position | None
    plate: str | None
    camera_id: str | None
    recurrence: bool
    evidence: list[EvidenceRef]


class HistoryEntry(Schema):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    at: UtcTime
    who: str = Field(description="user:<name>, device:<name> or worker:<name>")
    what: str = Field(description="created, reopened, seen_before_close, or the status moved to")
    from_: Status | None = Field(alias="from")
    to: Status | None
    why: str | None
    note: str | None


class CaseDetail(CaseSummary):
    sightings_list: list[Sighting]
    case_evidence: list[EvidenceRef] = Field(description="evidence of the case itself (after-photos)")
    history: list[HistoryEntry]
    custody_entries: int = Field(description="entries in the case's custody chain")
    allowed_transitions: list[Status]


class LabelBox(Schema):
    x1: float = Field(description="pixels of the sighting's raw frame, left")
    y1: float = Field(description="pixels, top")
    x2: float = Field(description="pixels, right")
    y2: float = Field(description="pixels, bottom")
    class_name: str = Field(description="a model class name of the site config's `kinds`")


class FrameBox(Schema):
    box: LabelBox
    source: Literal["detection", "operator"] = Field(
        description="the detector's box (not corrected or removed), or one an operator added or corrected"
    )


class FrameLabels(Schema):
    """A sighting's raw frame (the whole best frame, privacy-blurred) with the boxes labelled on it
    after a correction; kept for the training-set export (gridpatrol dataset from-reviews)."""

    case_id: int
    sighting_id: int
    frame_sha256: Sha256
    width: int = Field(description="the frame's width, pixels")
    height: int = Field(description="the frame's height, pixels")
    boxes: list[FrameBox]


class CasePage(Schema):
    total: int
    page: int
    per_page: int
    items: list[CaseSummary]


class IngestOutcome(Schema):
    """What became of an incident: a new case (201), a new sighting of a case (201), or the first
    answer again for an incident id already received with the same content (200, duplicate; the
    same id with other content is refused, 409).

    A suspected incident (one pass of a parked vehicle, api.cases.chalking) is kept as a chalk mark,
    `chalk_mark` its id: when it matched no earlier pass, no case (status "suspected", the case's
    fields null); when it confirmed one, the case's fields are those of the confirmed incident of
    the two passes. Any other incident has no chalk mark (null).

    A sighting of a closed case is either a recurrence (`recurrence`, the case reopened) or evidence
    of what was closed (`before_close`, the case stays closed); a duplicate answers both false (what
    its first receipt did is in the case's history)."""

    case_id: int | None = Field(description="null only for a suspected incident kept as a mark alone")
    case_number: str | None
    status: Status | Literal["suspected"] = Field(
        description="the case's status, or suspected: a chalk mark, no case"
    )
    sighting_id: int | None = Field(description="null only for a suspected incident kept as a mark alone")
    created: bool = Field(description="a new case")
    duplicate: bool = Field(description="the incident id was received before")
    recurrence: bool = Field(
        description="this sighting found the case closed and reopened it: last seen after the case's "
        "closing (status is then pending_review); false for a duplicate"
    )
    before_close: bool = Field(
        description="this sighting found the case closed and left it closed: last seen at or before the "
        "case's closing (late footage), it is kept as evidence (status closed); false for a duplicate"
    )
    chalk_mark: int | None = Field(
        None, description="a suspected incident's chalk mark (GET /api/chalk-marks); null for any other"
    )


class BatchItemOutcome(Schema):
    """One incident of a batch: its place in the body, its id (null when its JSON could not be read),
    the status it would have had alone (201, 200 duplicate, or the 4xx of its own mistake, 409 for an
    incident id received before with other content), and either
    its outcome or its error."""

    index: int = Field(description="its place in the body, from 0")
    incident_id: str | None
    status_code: int = Field(description="201, 200 (duplicate), or the status of its own error")
    outcome: IngestOutcome | None = Field(description="null when it failed")
    error: ErrorBody | None = Field(description="null when it was filed")


class BatchOutcome(Schema):
    """What became of each incident of a batch, in the order sent. The batch itself answers 200
    whenever every incident was taken or refused for its own mistake; a fault of the service (503,
    507) fails the whole batch, which is then sent again as it was (the ingest is idempotent)."""

    results: list[BatchItemOutcome]


class BatchRefused(ErrorBody):
    """A batch refused: no incident of it could be taken (the first one's error, then each one's
    entry as in a BatchOutcome), or the body itself is wrong (no incident part, too many; no entries)."""

    results: list[BatchItemOutcome] = Field(
        default_factory=list, description="each incident's entry; empty when the body itself was refused"
    )


# --- chalk marks ---------------------------------------------------------------------------------


class ChalkEvidenceRef(Schema):
    mark_id: int
    role: str = Field(
        description="as the pass's incident named it: annotated, crop, raw, dwell_*, original (admins only)"
    )
    sha256: Sha256

    @computed_field(  # type: ignore[prop-decorator]
        description="where to fetch the file (GET /api/chalk-marks/{mark_id}/evidence/{sha256})"
    )
    @property
    def url(self) -> str:
        return f"/api/chalk-marks/{self.mark_id}/evidence/{self.sha256}"


class ChalkMark(Schema):
    """A suspected sighting: one pass of a patrol car's camera past a vehicle parked where it may not
    park (api.cases.chalking)."""

    id: int
    incident_id: str
    category: str
    object_kind: str | None
    status: Literal["open", "confirmed", "rejected", "expired", "superseded"] = Field(
        description="open: waiting for another pass; confirmed: a later (or earlier) pass saw the vehicle "
        "again and the case is case_id; rejected: confirmed, but its case was rejected since (a false "
        "positive, a duplicate, ...: case_reject_reason); expired: open, seen longer ago than the chalking "
        "window; superseded: open, found by an earlier run of an upload that a resend corrected (start "
        "time, camera or GPS track), so it confirms nothing: the corrected run's mark of the pass stands "
        "for it"
    )
    case_id: int | None
    case_number: str | None
    case_status: Status | None = Field(description="the status of the case case_id, as it is now")
    case_reject_reason: RejectReason | None = Field(description="why that case was rejected, if it was")
    position: Position
    plate: str | None
    plate_confidence: float | None
    camera_id: str | None
    device_id: int | None
    job_id: int | None = Field(description="the upload's job that found it, if a job did")
    first_seen: UtcTime
    seen_at: UtcTime = Field(description="last seen on this pass")
    confirmed_at: UtcTime | None
    created_at: UtcTime
    evidence: list[ChalkEvidenceRef]


class ChalkMarkPage(Schema):
    total: int
    page: int
    per_page: int
    items: list[ChalkMark]


# --- uploads and jobs ----------------------------------------------------------------------------


class UploadInfo(Schema):
    id: int
    sha256: Sha256
    size: int = Field(description="bytes")
    media_type: str
    camera_id: str | None
    has_track: bool = Field(description="a GPS track came with the footage")
    track_filename: str | None = Field(
        description="the GPS track's file name as sent (without its folder or control characters, at most "
        "100 characters), as the job's messages about the track name it; null without a track, or a name"
    )
    revision: int = Field(
        description="the upload's current revision, raised by each resend that corrected its start time, "
        "camera or GPS track: a job whose own revision is lower is an earlier run that a corrected one "
        "superseded"
    )


class Job(Schema):
    id: int
    status: JobStatus
    progress: float = Field(ge=0.0, le=1.0)
    error: str | None
    warning: str | None = Field(
        description="a done job's caveat: its footage could be analysed only in part (cut short, "
        "damaged), its GPS track placed none or few of the footage's frames, or passed no grid cell"
    )
    track_off_grid: bool = Field(
        description="a done job whose GPS track passed no grid cell while the grid had some (another "
        "day's or city's track, latitude and longitude swapped): its cases are filed unassigned, and the "
        "footage may be sent again with the right track, a correction that supersedes this run's cases",
    )
    attempts: int
    revision: int = Field(
        description="the upload's revision this job runs for: 0 for footage as first sent, raised by each "
        "resend that corrected its start time, camera or GPS track; a job of a lower revision than a "
        "later job of the same upload is an earlier run that a corrected one superseded"
    )
    incidents: int = Field(description="incidents filed so far")
    upload: UploadInfo | None
    created_at: UtcTime
    started_at: UtcTime | None
    finished_at: UtcTime | None


class UploadReceipt(Job):
    created: bool = Field(description="false when the same footage was uploaded before")


class UploadSessionOpen(BaseModel):
    """Footage to send in chunks: the whole file's size and SHA-256, and what POST /api/uploads takes
    with it (the GPS track comes with the finishing request)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, le=2**53, description="the footage's size in bytes")
    sha256: Sha256 = Field(description="the whole footage's SHA-256, lowercase hex")
    filename: str | None = Field(None, max_length=255)
    camera_id: str | None = Field(None, max_length=64)
    start_time: str | None = Field(
        None,
        max_length=64,
        description="the footage's first frame, as POST /api/uploads takes it (without a UTC offset: the "
        "camera's local time)",
    )


class UploadSession(Schema):
    """Footage being sent in chunks: `offset` is how many of its bytes the server has, where the next
    chunk starts."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: Sha256
    size: int
    offset: int = Field(description="bytes received: the offset the next chunk must start at")
    filename: str | None = Field(description="as sent, without its folder or control characters")
    camera_id: str | None
    start_time: str | None
    created_at: UtcTime
    expires_at: UtcTime = Field(description="removed, with its bytes, if no chunk comes before then")


class OffsetConflictBody(ErrorBody):
    """A chunk at another offset than where the received bytes end, or a finish before they all came."""

    offset: int = Field(description="the bytes the server has: the offset to send from")


# --- reports -------------------------------------------------------------------------------------


class CountRow(Schema):
    """One group's count; a dimension the query did not group by (`by`) is null."""

    category: str | None
    status: Status | None
    grid_cell: str | None
    day: date | None = Field(description="local day of the first sighting")
    count: int


class CaseCounts(Schema):
    rows: list[CountRow]
    total: int


class GridCellProperties(Schema):
    id: str
    name: str
    street: str | None
    community: str | None
    team: str
    open_cases: int


class GridFeature(Schema):
    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, WGS84 lon/lat")
    properties: GridCellProperties


class UnassignedCell(Schema):
    id: str = Field(description="'unassigned'")
    open_cases: int


class RemovedCells(Schema):
    open_cases: int
    cells: list[str] = Field(description="the ids of the removed cells that hold them")


class GridMap(Schema):
    """The grid cells as a GeoJSON FeatureCollection, with the open cases of each; with those outside
    every cell and those in removed cells, every open case the caller may see."""

    type: Literal["FeatureCollection"]
    features: list[GridFeature]
    unassigned: UnassignedCell = Field(description="open cases outside every cell")
    removed: RemovedCells = Field(
        description="open cases in cells a later grid import removed (the cases keep their cell; no "
        "feature draws it)"
    )


class GridImport(Schema):
    imported: int = Field(description="cells now in the grid")
    warnings: list[str] = Field(
        default_factory=list,
        description="removed or re-teamed cells that hold open cases (imported with force=true), and "
        "cells whose areas overlap (a position in both goes to the smaller id)",
    )


# --- accounts ------------------------------------------------------------------------------------


class NewUser(Schema):
    id: int
    username: str
    role: Role
    team: str | None


class CreatedUser(NewUser):
    notice: str | None = Field(
        None,
        description="set when the user was added but will see no case yet: an enforcement user whose team no "
        "grid cell names (the grid may be imported later)",
    )


class UserInfo(NewUser):
    active: bool
    created_at: UtcTime
    last_login_at: UtcTime | None


class ChangedUser(UserInfo):
    notice: str | None = Field(
        None,
        description="set when the user will see no case yet: an enforcement user whose team no grid cell "
        "names (the grid may be imported later)",
    )


class NewDevice(Schema):
    id: int
    name: str
    camera_id: str | None
    runner: bool = Field(description="runs the registry's cameras (gridpatrol runner)")
    key: str = Field(description="the device key (gpd_...), shown only in this response")


class DeviceInfo(Schema):
    id: int
    name: str
    camera_id: str | None
    runner: bool
    active: bool
    created_at: UtcTime
    last_used_at: UtcTime | None = Field(description="when its key was last accepted (to the minute)")
    revoked_at: UtcTime | None


class DeviceWithKey(DeviceInfo):
    key: str = Field(description="the new device key (gpd_...), shown only in this response")

    @classmethod
    def issued(cls, device: Any, key: str) -> DeviceWithKey:
        return cls(**DeviceInfo.model_validate(device).model_dump(), key=key)


class NewWebhook(Schema):
    id: int
    url: Masked
    events: list[WebhookEvent]
    secret: str = Field(description="the HMAC-SHA256 signing secret, shown only in this response")


class WebhookInfo(Schema):
    id: int
    url: Masked
    events: list[WebhookEvent]
    active: bool


class WebhookDeliveryState(Schema):
    """A webhook's deliveries in brief, as `gridpatrol webhook list` shows them: how many wait and how
    many failed for good, and its last attempt (the delivery tried last)."""

    waiting: int = Field(description="deliveries waiting to be sent: first tries and retries")
    failed: int = Field(description="deliveries that failed for good (out of tries, or deactivated)")
    last_tried: bool = Field(
        description="whether any delivery was tried; the last_* and next_attempt_at fields describe the "
        "one tried last, and are null when none was"
    )
    last_attempt_at: UtcTime | None = Field(
        description="when it was tried last; null when none was, or (last_tried) when it was tried before "
        "this was recorded (migration 0020): unknown"
    )
    last_queued_at: UtcTime | None = Field(description="when its event was queued")
    last_outcome: Literal["delivered", "failed", "retrying"] | None = Field(
        description="its result: delivered, failed for good, or retrying (tried, to be tried again)"
    )
    last_status_code: int | None = Field(description="the receiver's last HTTP status; null: no answer")
    next_attempt_at: UtcTime | None = Field(description="its next try, when retrying")


class ListedWebhook(WebhookInfo):
    delivery: WebhookDeliveryState = Field(description="its deliveries in brief")


class Delivery(Schema):
    id: int
    webhook_id: int
    event: WebhookEvent
    case_id: int | None
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: Masked | None
    next_attempt_at: UtcTime
    created_at: UtcTime = Field(description="when its event was queued")
    delivered_at: UtcTime | None
    last_attempt_at: UtcTime | None = Field(
        description="when its last attempt ended, delivered or not; null when it was never tried, or "
        "(attempts over 0) tried before this was recorded (migration 0020): unknown"
    )


class Token(Schema):
    access_token: str
    token_type: Literal["bearer"]


class Me(Schema):
    kind: str = Field(description="user")
    name: str
    role: Role
    team: str | None


class Health(Schema):
    status: Literal["ok"]


# --- patrol tracks on the grid map ----------------------------------------------------------------


class UploadSummary(Schema):
    id: int
    sha256: Sha256
    filename: str | None = Field(description="the footage's file name as sent (sanitised, as track_filename)")
    camera_id: str | None
    start_time: UtcTime | None = Field(description="when the footage starts, as sent")
    created_at: UtcTime
    has_track: bool = Field(description="a GPS track came with the footage")
    track_filename: str | None = Field(
        description="the GPS track's file name as sent (sanitised); null without a track, or a name"
    )
    track_ready: bool = Field(
        description="the track's shape is there to draw (GET /api/uploads/{id}/track): its job has finished"
    )
    revision: int = Field(
        description="the upload's revision: 0 as first sent, raised by each resend that corrected its start "
        "time, camera or GPS track (over 0: corrected; its latest job runs for this revision)"
    )
    job_id: int | None = Field(description="the upload's latest job")
    job_status: JobStatus | None
    job_warning: str | None = Field(
        description="the latest job's warning, as GET /api/jobs/{id} gives it (a GPS track that placed none "
        "of the footage's frames, footage analysed only in part ...)"
    )
    job_error: str | None = Field(description="why the latest job failed, as GET /api/jobs/{id} gives it")


class UploadList(Schema):
    items: list[UploadSummary] = Field(description="newest first")


class UploadTrack(Schema):
    """An upload's GPS track, thinned to at most 500 points evenly spread over it."""

    upload_id: int
    camera_id: str | None
    points: list[tuple[float, float]] = Field(description="[lon, lat] pairs, WGS84 degrees, in time order")


# --- cameras (api.cameras) -------------------------------------------------------------------------


class GeoPosition(Schema):
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)


class CameraState(Schema):
    """The live state its runner last reported."""

    online: bool | None = Field(description="null until first reported (or found offline)")
    since: UtcTime | None = Field(description="when online last changed")
    runner: str | None = Field(description="the runner (device name) analysing it")
    fps: float | None = Field(description="frames analysed per second")
    last_frame_at: UtcTime | None
    last_error: str | None = Field(description="the stream's last error, credentials masked")
    reported_at: UtcTime | None
    runner_state: dict[str, Any] | None = Field(description="the runner's spool and delivery figures")
    clock_offset_s: float | None = Field(
        description="how far the runner's clock is from the case service's, in seconds: the runner's "
        "minus the service's (negative: the runner's is behind); null: not known (an older runner)"
    )
    clock_warning: str | None = Field(
        description="set when the runner's clock is 5 s or more from the service's: its incidents "
        "carry the runner's own times"
    )


class CameraInfo(Schema):
    """A registered camera; its stream URL shows scheme, host and port only (credentials never)."""

    id: str
    name: str | None
    stream: str = Field(description="scheme://host:port of the stream URL; the rest is kept back")
    position: GeoPosition | None
    grid_cell_id: str | None = Field(description="a fixed grid cell; null: the cell its position is in")
    team: str | None = Field(description="the team its cases go to; null: the grid cell's")
    team_warning: str | None = Field(
        description="set when no cell of the imported grid belongs to its team (a grid imported since it "
        "was set): its cases reach no enforcement user; edit its team"
    )
    timezone: str
    zones: list[dict[str, Any]] = Field(
        description="as in the site config: id, kind, points_norm, active_hours"
    )
    active_hours: list[str] | None = Field(description="local 'HH:MM-HH:MM' spans analysed; null: always")
    enabled: bool
    created_at: UtcTime
    updated_at: UtcTime
    state: CameraState


class RunnerCamera(Schema):
    """A camera as its runner needs it: with the stream URL (credentials included)."""

    id: str
    name: str | None
    stream_url: str
    position: GeoPosition | None
    timezone: str
    zones: list[dict[str, Any]]
    active_hours: list[str] | None


# --- runners' upload jobs (api.http.routes.runner_jobs) ------------------------------------------


class RunnerJobUpload(Schema):
    """What a runner needs of a claimed job's upload to analyse it as the in-process worker would."""

    id: int
    sha256: Sha256 = Field(description="of the footage: the runner checks its download against it")
    size: int = Field(description="bytes")
    media_type: str
    filename: str | None = Field(
        description="as uploaded (without its folder or control characters); the job's errors name the "
        "footage by it"
    )
    suffix: str = Field(description="the footage file's extension (.mp4, .mov ...)")
    camera_id: str | None
    start_time: UtcTime | None = Field(description="the footage's first frame")
    source_id: str = Field(description="detect_footage's source_id: incident ids derive from it")
    id_salt: str = Field(
        "",
        description="detect_footage's id_salt: empty for footage sent once; for one a resend corrected "
        "(another start time, camera or GPS track) the ids of that run's incidents derive from it too",
    )
    revision: int = Field(
        description="the upload's current revision (id_salt derives from it); the job's own `revision` is "
        "lower only for an earlier run that a corrected resend superseded"
    )
    has_track: bool = Field(description="a GPS track came with the footage (GET .../track)")
    track_sha256: Sha256 | None
    track_suffix: str | None = Field(description=".gpx, .nmea or .csv")
    track_filename: str | None = Field(
        None,
        description="the name the job's messages give the GPS track: its file name as sent (sanitised), else "
        "the stored file's; null without a track",
    )


class RunnerJob(Schema):
    """A job claimed by a runner: its lease (sent back as X-Job-Lease on every call for the job) and
    its upload. The lease lapses `lease_s` after the claim or the last heartbeat."""

    id: int
    attempt: int = Field(description="1 for the first claim, more when an earlier attempt stopped")
    lease: str = Field(description="this attempt's lease token")
    lease_s: float = Field(description="how long a heartbeat keeps the lease")
    lease_expires_at: UtcTime
    revision: int = Field(
        description="the upload's revision this job runs for (as GET /api/jobs/{id} names it): 0 for footage "
        "as first sent, raised by each resend that corrected its start time, camera or GPS track"
    )
    upload: RunnerJobUpload


class RunnerClaim(Schema):
    """The answer to a claim: the job claimed, or null when none is waiting."""

    job: RunnerJob | None


class RunnerJobLease(Schema):
    """A renewed lease."""

    lease_expires_at: UtcTime
    progress: float = Field(ge=0.0, le=1.0)


class CoveragePass(Schema):
    """One pass of a patrol through a cell, from an upload's GPS track."""

    upload_id: int
    entered_at: UtcTime
    left_at: UtcTime
    metres: float = Field(description="driven in the cell")


class CellCoverage(Schema):
    cell_id: str
    team: str | None = Field(
        description="the team the grid gives the cell now; a cell no longer in the grid: its latest pass's"
    )
    passes: list[CoveragePass] = Field(
        description="the cell's latest passes in the window (at most passes_per_cell), in time order"
    )
    passes_total: int = Field(description="the cell's passes in the window, all of them, listed or not")
    metres: float = Field(description="driven in the cell, all passes")
    seconds: float = Field(description="spent in the cell, all passes")


class Coverage(Schema):
    """The grid cells the patrols' tracks passed through in a time window (by when they entered), a
    page of cells at a time; `total` counts the cells passed in the window."""

    total: int
    page: int
    per_page: int
    passes_per_cell: int = Field(description="the most passes a cell lists: its latest")
    cells: list[CellCoverage]


# --- period report -------------------------------------------------------------------------------


class ReportDurations(Schema):
    """Hours of one kind of move made in the period; null median and p90 when there was none."""

    count: int
    median_h: float | None
    p90_h: float | None = Field(description="90th percentile, linear between ranks")


class ReportFigures(Schema):
    found: int = Field(description="cases first seen in the period")
    confirmed: int = Field(description="cases filed (review confirmed) in the period")
    rejected: int = Field(description="cases rejected in review in the period")
    rejected_by_reason: dict[str, int] = Field(
        description="the rejected by reason, the reasons with any; 'unspecified': a rejection stored "
        "without a reason (or with one this version does not know); they add up to rejected"
    )
    closed: int = Field(description="cases closed in the period")
    sent_back: int = Field(
        description="cases verification sent back to their team (handled -> dispatched) in the period, "
        "each once"
    )
    open_at_end: int = Field(description="first seen before the end, neither closed nor rejected then")
    awaiting_review_at_end: int = Field(description="of those open at the end, still pending review")
    review_hours: ReportDurations = Field(description="first seen -> review decision")
    dispatch_hours: ReportDurations = Field(
        description="confirmed -> dispatched (filed -> dispatched, from the last filing before it)"
    )
    handling_hours: ReportDurations = Field(
        description="dispatched -> first handling: from the case's dispatch (filed -> dispatched) to its "
        "first handling after it; a handling after a send-back is not timed again (see sent_back)"
    )
    closing_hours: ReportDurations = Field(description="first seen -> closed")


class ReportCategory(Schema):
    category: str
    figures: ReportFigures


class ReportCell(Schema):
    cell_id: str
    name: str | None = Field(description="null: a cell not in the grid (any more), or outside every cell")
    team: str | None
    figures: ReportFigures
    patrol_passes: int = Field(description="patrol passes entering the cell in the period")


class ReportRow(Schema):
    cell_id: str
    team: str | None
    category: str
    figures: ReportFigures


class ReportCoverage(Schema):
    cells_passed: int
    cells_in_grid: int
    share: float | None = Field(description="cells_passed / cells_in_grid; null for an empty grid")


class PeriodReport(Schema):
    """The periodic report of [since, until): statuses at `until` are read from the cases' history."""

    since: UtcTime
    until: UtcTime
    total: ReportFigures
    by_category: list[ReportCategory]
    by_cell: list[ReportCell]
    rows: list[ReportRow] = Field(description="cell x category, those with any number")
    coverage: ReportCoverage
