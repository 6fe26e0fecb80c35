"""The incident as the case service receives it: one type, whichever path carries it.

`IncidentPayload` mirrors detect.values.Incident.to_json() (so the service does not import detect/) and
ignores keys it does not use (dwell_s). A camera or runner sends it as JSON over HTTP
(POST /api/incidents); the worker converts the pipeline's incidents into it before ingesting, so what
is stored is the same on both paths.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.cases.wall_time import WallTime, aware
from api.errors import InputError
from api.storage.models import CATEGORY_MAX


class IncidentInputError(InputError):
    """An incident that cannot be taken as sent; names the field."""


class IncidentConflict(IncidentInputError):
    """An incident id received before, sent again with other content (409): an id names one incident,
    so the second content is refused, never filed as if it were the first (see `changed_fields`)."""

    status = 409

    def __init__(self, incident_id: str, changed: list[str]) -> None:
        super().__init__(
            "incident.id",
            f"incident '{incident_id}' was received before with other content ({', '.join(changed)} "
            "differ); nothing was changed: send the same content again to retry, or a new id for a "
            "new incident",
            extra={"incident_id": incident_id, "changed": changed},
        )


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
MAX_PIXELS = 100_000.0  # a box corner's coordinate: no frame is wider or taller (box corrections too)
MAX_COUNT = 2**31 - 1  # a frame index, a count or a track id: what an INTEGER column holds
# the longest an incident may last, first_seen_wall to last_seen_wall: one camera watching one object
# for one stretch (a stall's day, an upload's footage); a longer span is a wrong clock or a stale first
# time, and would date its case's first sighting back that far (api.cases.ingest): a 422
MAX_INCIDENT_SPAN = timedelta(days=7)


# original: the best frame before privacy blurring (faces, plates not involved), sealed: admins only
EvidenceRole = Literal["annotated", "crop", "raw", "dwell_first", "dwell_middle", "dwell_last", "original"]
DWELL_KEYS = ("ts", "wall_time", "window", "box")
Coordinate = Annotated[float, Field(ge=-MAX_PIXELS, le=MAX_PIXELS)]
Pixels = tuple[Coordinate, Coordinate, Coordinate, Coordinate]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class EvidencePayload(BaseModel):
    """One evidence file of an incident. The dwell strip's frames (dwell_first / _middle / _last: the
    object when first seen, midway and last seen, cut from one fixed window of the frame) also carry
    their footage time `ts` (s), `wall_time`, the crop `window` and the object's `box` in that frame
    (x1, y1, x2, y2 in full-frame pixels); the other roles leave them out."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    role: EvidenceRole
    path: str = Field(min_length=1, max_length=500)
    sha256: Sha256
    media_type: str = Field("image/jpeg", max_length=64)
    ts: float | None = Field(None, ge=0.0)
    wall_time: WallTime | None = None
    window: Pixels | None = None
    box: Pixels | None = None

    @model_serializer(mode="wrap")
    def _without_absent_dwell_keys(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in DWELL_KEYS:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class IncidentPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # no NaN or Infinity: not JSON

    id: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=CATEGORY_MAX, pattern=r"^[A-Za-z0-9_.-]+$")
    object_kind: str = Field("", max_length=64)
    source_id: str = Field("", max_length=128)
    zone_id: str | None = Field(None, max_length=64)
    zone_kind: str | None = Field(None, max_length=64)
    first_seen_ts: float = 0.0
    last_seen_ts: float = 0.0
    best_ts: float = 0.0
    box: Pixels = (0.0, 0.0, 0.0, 0.0)
    confidence_median: float = Field(0.0, ge=0.0, le=1.0)
    confidence_max: float = Field(0.0, ge=0.0, le=1.0)
    observations: Count = 0
    first_seen_wall: WallTime | None = None
    last_seen_wall: WallTime | None = None
    position: (
        tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]] | None
    ) = None
    frame_index: Count | None = None
    track_ids: list[Count] = Field(default_factory=list, max_length=1000)
    evidence: list[EvidencePayload] = Field(default_factory=list, max_length=16)
    closed: bool = False
    plate: str | None = Field(None, max_length=32)
    plate_confidence: float | None = Field(None, ge=0.0, le=1.0)
    # a moving camera's single pass of a parked vehicle: a chalk mark (api.cases.chalking), no case
    suspected: bool = False

    @field_validator("last_seen_wall")
    @classmethod
    def _within_span(cls, last: datetime | None, info: ValidationInfo) -> datetime | None:
        """At most MAX_INCIDENT_SPAN after first_seen_wall (a last time before it is set right by
        _in_order)."""
        first = info.data.get("first_seen_wall")
        if first is not None and last is not None and aware(last) - aware(first) > MAX_INCIDENT_SPAN:
            days = (aware(last) - aware(first)) / timedelta(days=1)
            raise PydanticCustomError(
                "incident_span",
                "must be at most {most} days after first_seen_wall (it is {days} days after it)",
                {"days": f"{days:.1f}", "most": MAX_INCIDENT_SPAN.days},
            )
        return last

    @model_validator(mode="after")
    def _in_order(self) -> IncidentPayload:
        first, last = self.first_seen_wall, self.last_seen_wall
        if first is not None and last is not None and aware(last) < aware(first):
            # the sender's clock stepped back while it watched (NTP): a real incident, seen at one time
            self.last_seen_wall = self.first_seen_wall
        x1, y1, x2, y2 = self.box
        if x2 < x1 or y2 < y1:
            raise ValueError("box must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def changed_fields(first: Any, again: Any) -> list[str]:
    """The keys of an incident's JSON (as IncidentPayload.to_json() stores it) whose values differ
    between its first receipt and a resend, in the payload's order; [] for the same incident. Both
    are read as the payload reads them, so what only looks different is the same: a default left
    out, a key the payload ignores (dwell_s), the same instant written with another UTC offset. A
    resend with no evidence at all is the same as one with the first's (a runner's spool drops the
    files of its items when its disk fills, api.runner.spool, and sends them with the list emptied)."""
    a, b = _comparable(first), _comparable(again)
    if not b.get("evidence"):
        b["evidence"] = a.get("evidence")
    return [key for key in dict.fromkeys([*a, *b]) if a.get(key) != b.get(key)]


def _comparable(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    try:
        payload = IncidentPayload.model_validate(data)
    except ValidationError:  # stored before a check the payload makes now: compared as stored
        return dict(data)
    plain = _plain(payload.model_dump())
    assert isinstance(plain, dict)
    return plain


def _plain(value: Any) -> Any:
    """A dumped payload with its times as UTC instants and its tuples as lists (as JSON reads them)."""
    if isinstance(value, datetime):
        return aware(value).astimezone(UTC)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def parse_incident(text: str) -> IncidentPayload:
    """The incident form field as a validated payload; errors name the JSON path (incident.<key>)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IncidentInputError("incident", f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise IncidentInputError("incident", "nested too deeply") from None
    if not isinstance(data, dict):
        raise IncidentInputError("incident", "must be a JSON object")
    try:
        return IncidentPayload.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise IncidentInputError(f"incident.{loc}", err["msg"]) from None
