"""The incident form of POST /api/incidents, read as it streams: the `incident` field (JSON text of an
api.cases.incident.IncidentPayload, validated as soon as it is read) and its evidence files, each of
which must match an `evidence` entry by SHA-256 (verified as it is stored).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from api.cases.incident import IncidentInputError, IncidentPayload, parse_incident
from api.errors import InputError
from api.http.multipart import FormPart, form_boundary, read_parts
from api.storage.evidence_store import EvidenceError, EvidenceFiles, Incoming, StoredFile

MAX_INCIDENT_JSON_BYTES = 1024 * 1024
MAX_EVIDENCE_FILES = 16


class IncidentFormError(InputError):
    """A request body that is no form (415 for another content type); a malformed multipart body is
    api.http.multipart.MalformedBody (400)."""

    status = 415

    def __init__(self, reason: str) -> None:
        super().__init__("body", reason)


@dataclass
class IncidentForm:
    """The incident form as received: the validated incident (None when the field was not sent)
    and the evidence files, already checked and filed in the evidence store, in the order sent;
    `placed_at` (Unix seconds) is when the last of them was filed (for
    api.cases.ingest.remove_refused_evidence, when the incident is refused)."""

    incident: IncidentPayload | None = None
    files: list[tuple[str | None, StoredFile]] = field(default_factory=list)
    placed_at: float = 0.0


class _IncidentParts:
    """The incident form's parts: `incident` validated once read, `files` streamed into the store."""

    def __init__(self, store: EvidenceFiles, max_file_bytes: int, form: IncidentForm | None = None) -> None:
        self.form = form if form is not None else IncidentForm()
        self._store = store
        self._max_file_bytes = max_file_bytes
        self._text: bytearray | None = None
        self._incoming: Incoming | None = None
        self._filename: str | None = None
        self._received: list[tuple[str | None, Incoming]] = []  # complete parts, to be finished

    def _file_error(self, exc: EvidenceError, index: int, filename: str | None) -> IncidentInputError:
        return IncidentInputError(f"files[{index}]", f"{filename or 'file'}: {exc.reason}")

    def begin(self, part: FormPart) -> None:
        if part.name == "incident":
            if self.form.incident is not None:
                raise IncidentInputError("incident", "sent twice: one incident a form (several: /batch)")
            self._text = bytearray()
        elif part.name == "files":
            if len(self.form.files) + len(self._received) >= MAX_EVIDENCE_FILES:
                raise IncidentInputError("files", f"at most {MAX_EVIDENCE_FILES} evidence files")
            self._filename = part.filename
            self._incoming = self._store.open_incoming(max_bytes=self._max_file_bytes)
        # other parts are skipped

    def data(self, chunk: bytes) -> None:
        if self._incoming is not None:
            try:
                self._incoming.write(chunk)
            except EvidenceError as exc:
                index = len(self.form.files) + len(self._received)
                raise self._file_error(exc, index, self._filename) from None
        elif self._text is not None:
            self._text.extend(chunk)
            if len(self._text) > MAX_INCIDENT_JSON_BYTES:
                raise IncidentInputError("incident", f"longer than {MAX_INCIDENT_JSON_BYTES} bytes")

    def end(self) -> None:
        if self._incoming is not None:  # finished by finish_files(), off the event loop
            self._received.append((self._filename, self._incoming))
            self._incoming = None
        elif self._text is not None:
            text, self._text = self._text, None
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                raise IncidentInputError("incident", "not UTF-8 text") from None
            self.form.incident = parse_incident(decoded)

    async def finish_files(self) -> None:
        """Check and file the received files in the order sent; the first bad one is named. A local
        file is finished here (closing and renaming it costs less than handing it to a thread, and
        its bytes were written here too); any other (an upload to an S3 bucket) in a worker thread,
        so that it does not hold up the event loop."""
        while self._received:
            filename, incoming = self._received.pop(0)  # finish() discards it when it fails
            try:
                if incoming.local:
                    stored = incoming.finish()
                else:
                    stored = await run_in_threadpool(incoming.finish)
            except EvidenceError as exc:
                raise self._file_error(exc, len(self.form.files), filename) from None
            self.form.files.append((filename, stored))
            self.form.placed_at = time.time()

    def discard(self) -> None:
        """Remove a file left half-received by an error, and those received but not filed."""
        if self._incoming is not None:
            self._incoming.discard()
            self._incoming = None
        for _, incoming in self._received:
            incoming.discard()
        self._received.clear()


async def receive_incident_form(
    content_type: str | None,
    chunks: AsyncIterator[bytes],
    *,
    store: EvidenceFiles,
    max_file_bytes: int,
    form: IncidentForm | None = None,
) -> IncidentForm:
    """Read a multipart/form-data incident body chunk by chunk: the `incident` field, validated as
    soon as it is read (a device sends it first, so a bad incident stores no files), and each
    `files` part streamed straight into the evidence store (hashed, size-limited and sniffed as it
    is written, never held whole in memory), then flushed to disk (EvidenceFiles.sync). Other parts
    are skipped. A bad incident or file is an IncidentInputError naming it (incident.<key>,
    files[i]); a malformed body a MalformedBody, another content type an IncidentFormError. The
    caller's `form`, when given, is the one filled: when a later file is refused, it still names the
    files filed before it (to remove again)."""
    boundary = form_boundary(content_type)
    if boundary is None:
        raise IncidentFormError("must be multipart/form-data with a boundary")
    parts = _IncidentParts(store, max_file_bytes, form)
    try:
        await read_parts(boundary, chunks, parts)
        await parts.finish_files()
    finally:
        parts.discard()
    await run_in_threadpool(store.sync, [stored for _, stored in parts.form.files])  # on disk before ingest
    return parts.form


MAX_BATCH_INCIDENTS = 64


@dataclass
class BatchItem:
    """One incident of a batch body: its form when it was read well, else the error that names it
    (as it would have been named alone); one bad incident fails only itself. `received` is what was
    read of it either way: the files it filed in the store before a later one was refused too."""

    form: IncidentForm | None = None
    error: InputError | None = None
    received: IncidentForm = field(default_factory=IncidentForm)


class _BatchParts:
    """A batch body's parts: each `incident` part begins the next incident, its `files` parts follow
    it. An incident's own error (bad JSON, a file over its limit, too many files) is kept for it and
    its remaining parts are skipped; the others go on."""

    def __init__(self, store: EvidenceFiles, max_file_bytes: int, max_incidents: int) -> None:
        self._store = store
        self._max_file_bytes = max_file_bytes
        self._max_incidents = max_incidents
        self.items: list[BatchItem] = []
        self.open: list[_IncidentParts | None] = []  # per item: its parts, None once it failed

    def _fail(self, exc: InputError) -> None:
        parts = self.open[-1]
        if parts is not None:
            parts.discard()
        self.open[-1] = None
        self.items[-1].error = exc

    def begin(self, part: FormPart) -> None:
        if part.name == "incident":
            if len(self.items) >= self._max_incidents:
                raise IncidentInputError("incidents", f"at most {self._max_incidents} incidents in one batch")
            item = BatchItem()
            self.items.append(item)
            self.open.append(_IncidentParts(self._store, self._max_file_bytes, item.received))
        elif part.name == "files" and not self.items:
            raise IncidentInputError("files", "a file part must follow the incident part it belongs to")
        if self.items and (parts := self.open[-1]) is not None:
            try:
                parts.begin(part)
            except InputError as exc:
                self._fail(exc)

    def data(self, chunk: bytes) -> None:
        if self.items and (parts := self.open[-1]) is not None:
            try:
                parts.data(chunk)
            except InputError as exc:
                self._fail(exc)

    def end(self) -> None:
        if self.items and (parts := self.open[-1]) is not None:
            try:
                parts.end()
            except InputError as exc:
                self._fail(exc)

    async def finish(self) -> None:
        for item, parts in zip(self.items, self.open, strict=True):
            if parts is None:
                continue
            try:
                await parts.finish_files()
            except InputError as exc:
                item.error = exc
                continue
            if parts.form.incident is None:
                item.error = IncidentInputError("incident", "Field required")
            else:
                item.form = parts.form

    def discard(self) -> None:
        for parts in self.open:
            if parts is not None:
                parts.discard()


async def receive_incident_batch(
    content_type: str | None,
    chunks: AsyncIterator[bytes],
    *,
    store: EvidenceFiles,
    max_file_bytes: int,
    max_incidents: int = MAX_BATCH_INCIDENTS,
) -> list[BatchItem]:
    """Read a batch body (POST /api/incidents/batch): several incident forms one after the other in
    one multipart/form-data body, each `incident` part followed by its `files`, streamed into the
    evidence store as receive_incident_form does. Each incident's own mistake is its BatchItem's
    error; a malformed body, another content type, a file before any incident or more than
    `max_incidents` incidents fail the whole body (and store nothing that stays linked)."""
    boundary = form_boundary(content_type)
    if boundary is None:
        raise IncidentFormError("must be multipart/form-data with a boundary")
    parts = _BatchParts(store, max_file_bytes, max_incidents)
    try:
        await read_parts(boundary, chunks, parts)
        await parts.finish()
    finally:
        parts.discard()
    if not parts.items:
        raise IncidentInputError("incidents", "no incident part in the body")
    files = [stored for item in parts.items if item.form is not None for _, stored in item.form.files]
    await run_in_threadpool(store.sync, files)  # all the batch's files on disk, in one flush, before ingest
    return parts.items
