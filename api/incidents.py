"""Incidents received over HTTP: the JSON of detect.values.Incident.to_json(), validated here.

The payload model mirrors detect.values.Incident (so the service does not import detect/) and
ignores keys it does not use (dwell_s). Evidence files come alongside; each entry of
`evidence` must be matched by an uploaded file with that SHA-256 (verified as it is stored).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.cases import IncidentInputError
from api.evidence_store import EvidenceError, EvidenceStore, IncomingEvidence, StoredFile

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


async def receive_incident_form(
    content_type: str | None, chunks: AsyncIterator[bytes], *, store: EvidenceStore, max_file_bytes: int
) -> IncidentForm:
    """Read a multipart/form-data incident body chunk by chunk (python-multipart's push parser): the
    `incident` field, validated as soon as it is read (a device sends it first, so a bad incident
    stores no files), and each `files` part streamed straight into the evidence store (hashed,
    size-limited and sniffed as it is written, never held whole in memory). Other parts are skipped.
    A bad incident or file is an IncidentInputError naming it (incident.<key>, files[i]); a
    malformed body an IncidentFormError."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise IncidentFormError("must be multipart/form-data with a boundary", status=415)
    form = IncidentForm()
    headers: dict[bytes, bytes] = {}
    header_field = bytearray()
    header_value = bytearray()
    text: bytearray | None = None
    incoming: IncomingEvidence | None = None
    filename: str | None = None

    def file_error(exc: EvidenceError) -> IncidentInputError:
        return IncidentInputError(f"files[{len(form.files)}]", f"{filename or 'file'}: {exc}")

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal text, incoming, filename
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name == b"incident":
            text = bytearray()
        elif name == b"files":
            if len(form.files) >= MAX_EVIDENCE_FILES:
                raise IncidentInputError("files", f"at most {MAX_EVIDENCE_FILES} evidence files")
            raw_name = options.get(b"filename")
            filename = os.path.basename(raw_name.decode("utf-8", "replace"))[:255] if raw_name else None
            incoming = store.open_incoming(max_bytes=max_file_bytes)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if incoming is not None:
            try:
                incoming.write(data[start:end])
            except EvidenceError as exc:
                raise file_error(exc) from None
        elif text is not None:
            text.extend(data[start:end])
            if len(text) > MAX_INCIDENT_JSON_BYTES:
                raise IncidentInputError("incident", f"longer than {MAX_INCIDENT_JSON_BYTES} bytes")

    def on_part_end() -> None:
        nonlocal text, incoming
        if incoming is not None:
            current, incoming = incoming, None
            try:
                form.files.append((filename, current.finish()))
            except EvidenceError as exc:
                raise file_error(exc) from None
        elif text is not None:
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                raise IncidentInputError("incident", "not UTF-8 text") from None
            text = None
            form.incident = parse_incident(decoded)

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except IncidentInputError:
        raise
    except Exception as exc:  # python-multipart raises its own errors on a malformed body
        raise IncidentFormError(f"malformed multipart body ({type(exc).__name__})") from None
    finally:
        if incoming is not None:
            incoming.discard()
    return form
