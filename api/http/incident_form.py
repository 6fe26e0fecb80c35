"""Incidents received over HTTP: the JSON of detect.values.Incident.to_json(), validated here.

The payload model mirrors detect.values.Incident (so the service does not import detect/) and
ignores keys it does not use (dwell_s). Evidence files come alongside; each entry of
`evidence` must be matched by an uploaded file with that SHA-256 (verified as it is stored).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.cases.ingest import IncidentInputError
from api.http.multipart import FormPart, MalformedBody, form_boundary, read_parts
from api.storage.evidence_store import EvidenceError, EvidenceStore, IncomingEvidence, StoredFile

MAX_INCIDENT_JSON_BYTES = 1024 * 1024
MAX_EVIDENCE_FILES = 16

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class EvidencePayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["annotated", "crop", "raw"]
    path: str = Field(min_length=1, max_length=500)
    sha256: Sha256
    media_type: str = Field("image/jpeg", max_length=64)


class IncidentPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    object_kind: str = Field("", max_length=64)
    source_id: str = Field("", max_length=128)
    zone_id: str | None = Field(None, max_length=64)
    zone_kind: str | None = Field(None, max_length=64)
    first_seen_ts: float = 0.0
    last_seen_ts: float = 0.0
    best_ts: float = 0.0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    confidence_median: float = Field(0.0, ge=0.0, le=1.0)
    confidence_max: float = Field(0.0, ge=0.0, le=1.0)
    observations: int = Field(0, ge=0)
    first_seen_wall: datetime | None = None
    last_seen_wall: datetime | None = None
    position: (
        tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]] | None
    ) = None
    frame_index: int | None = None
    track_ids: list[int] = Field(default_factory=list)
    evidence: list[EvidencePayload] = Field(default_factory=list, max_length=16)
    closed: bool = False
    plate: str | None = Field(None, max_length=32)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_incident(text: str) -> IncidentPayload:
    """The incident form field as a validated payload; errors name the JSON path (incident.<key>)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IncidentInputError("incident", f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise IncidentInputError("incident", "must be a JSON object")
    try:
        return IncidentPayload.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise IncidentInputError(f"incident.{loc}", err["msg"]) from None


class IncidentFormError(ValueError):
    """A request body that is no readable form (HTTP 400, or 415 for another content type)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"body: {reason}")
        self.reason = reason
        self.status = status


@dataclass
class IncidentForm:
    """The incident form as received: the validated incident (None when the field was not sent)
    and the evidence files, already checked and filed in the evidence store, in the order sent."""

    incident: IncidentPayload | None = None
    files: list[tuple[str | None, StoredFile]] = field(default_factory=list)


class _IncidentParts:
    """The incident form's parts: `incident` validated once read, `files` streamed into the store."""

    def __init__(self, store: EvidenceStore, max_file_bytes: int) -> None:
        self.form = IncidentForm()
        self._store = store
        self._max_file_bytes = max_file_bytes
        self._text: bytearray | None = None
        self._incoming: IncomingEvidence | None = None
        self._filename: str | None = None

    def _file_error(self, exc: EvidenceError) -> IncidentInputError:
        return IncidentInputError(f"files[{len(self.form.files)}]", f"{self._filename or 'file'}: {exc}")

    def begin(self, part: FormPart) -> None:
        if part.name == "incident":
            self._text = bytearray()
        elif part.name == "files":
            if len(self.form.files) >= MAX_EVIDENCE_FILES:
                raise IncidentInputError("files", f"at most {MAX_EVIDENCE_FILES} evidence files")
            self._filename = part.filename
            self._incoming = self._store.open_incoming(max_bytes=self._max_file_bytes)
        # other parts are skipped

    def data(self, chunk: bytes) -> None:
        if self._incoming is not None:
            try:
                self._incoming.write(chunk)
            except EvidenceError as exc:
                raise self._file_error(exc) from None
        elif self._text is not None:
            self._text.extend(chunk)
            if len(self._text) > MAX_INCIDENT_JSON_BYTES:
                raise IncidentInputError("incident", f"longer than {MAX_INCIDENT_JSON_BYTES} bytes")

    def end(self) -> None:
        if self._incoming is not None:
            current, self._incoming = self._incoming, None
            try:
                self.form.files.append((self._filename, current.finish()))
            except EvidenceError as exc:
                raise self._file_error(exc) from None
        elif self._text is not None:
            text, self._text = self._text, None
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                raise IncidentInputError("incident", "not UTF-8 text") from None
            self.form.incident = parse_incident(decoded)

    def discard(self) -> None:
        """Remove a file left half-received by an error."""
        if self._incoming is not None:
            self._incoming.discard()
            self._incoming = None


async def receive_incident_form(
    content_type: str | None, chunks: AsyncIterator[bytes], *, store: EvidenceStore, max_file_bytes: int
) -> IncidentForm:
    """Read a multipart/form-data incident body chunk by chunk: the `incident` field, validated as
    soon as it is read (a device sends it first, so a bad incident stores no files), and each
    `files` part streamed straight into the evidence store (hashed, size-limited and sniffed as it
    is written, never held whole in memory). Other parts are skipped. A bad incident or file is an
    IncidentInputError naming it (incident.<key>, files[i]); a malformed body an IncidentFormError."""
    boundary = form_boundary(content_type)
    if boundary is None:
        raise IncidentFormError("must be multipart/form-data with a boundary", status=415)
    parts = _IncidentParts(store, max_file_bytes)
    try:
        await read_parts(boundary, chunks, parts)
    except MalformedBody as exc:
        raise IncidentFormError(str(exc)) from None
    finally:
        parts.discard()
    return parts.form
