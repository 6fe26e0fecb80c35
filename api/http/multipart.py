"""multipart/form-data bodies read chunk by chunk (python-multipart's push parser), part by part.

Both form endpoints (POST /api/uploads, POST /api/incidents) stream their file parts somewhere as
the bytes arrive, never holding a body in memory; what differs is what each does with a part.
`read_parts` does the common work — the part headers, the Content-Disposition name and filename,
feeding the parser, turning its errors into `MalformedBody` — and calls a `PartHandler` for the
rest. Errors the handler raises (a bad field, a file over its limit) pass through as they are.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from python_multipart.multipart import MultipartParser, parse_options_header

from api.errors import InputError

MAX_FILENAME_CHARS = 255


class MalformedBody(InputError):
    """A body the multipart parser cannot read (400); the reason says what the parser raised."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__("body", reason)


@dataclass
class FormPart:
    """One part as its headers describe it: the form field name and the sent file name (its base
    name only, at most MAX_FILENAME_CHARS, None when the part is no file)."""

    name: str | None = None
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)


class PartHandler(Protocol):
    def begin(self, part: FormPart) -> None:
        """A part's headers are read; its bytes follow."""

    def data(self, chunk: bytes) -> None:
        """Some of the current part's bytes (any size, possibly empty)."""

    def end(self) -> None:
        """The current part is complete."""


def form_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a multipart/form-data content type; None for any other type or none given."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        return None
    return params.get(b"boundary") or None


class _FromHandler(Exception):
    """Carries an error the handler raised through the parser, to tell it from the parser's own."""

    def __init__(self, error: Exception) -> None:
        self.error = error


async def read_parts(boundary: bytes, chunks: AsyncIterator[bytes], handler: PartHandler) -> None:
    """Parse the body from `chunks`, calling `handler` for each part as it arrives. The handler's
    own errors propagate unchanged; anything the parser raises becomes MalformedBody."""
    part = FormPart()
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        nonlocal part
        part = FormPart()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        part.headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        part.name = name.decode("utf-8", "replace") if name else None
        filename = options.get(b"filename")
        if filename:
            part.filename = os.path.basename(filename.decode("utf-8", "replace"))[:MAX_FILENAME_CHARS]
        try:
            handler.begin(part)
        except Exception as exc:
            raise _FromHandler(exc) from exc

    def on_part_data(data: bytes, start: int, end: int) -> None:
        try:
            handler.data(data[start:end])
        except Exception as exc:
            raise _FromHandler(exc) from exc

    def on_part_end() -> None:
        try:
            handler.end()
        except Exception as exc:
            raise _FromHandler(exc) from exc

    parser = MultipartParser(
        boundary,
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
    except _FromHandler as wrapped:
        raise wrapped.error from None
    except Exception as exc:  # python-multipart raises its own error types on a malformed body
        raise MalformedBody(f"malformed multipart body ({type(exc).__name__})") from None
