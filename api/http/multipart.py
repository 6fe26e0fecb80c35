"""multipart/form-data bodies read chunk by chunk, part by part.

Both form endpoints (POST /api/uploads, POST /api/incidents) stream their file parts somewhere as
the bytes arrive, never holding a body in memory; what differs is what each does with a part.
`read_parts` does the common work — finding the boundaries, the part headers, the
Content-Disposition name and filename, turning a malformed body into `MalformedBody` — and calls a
`PartHandler` for the rest. Errors the handler raises (a bad field, a file over its limit) pass
through as they are.

The parser is a small one of our own over `bytes.find` (RFC 7578 / RFC 2046 framing): a part's
bytes are handed over in slices as large as the chunks that carry them, where python-multipart's
push parser made a Python callback per piece and cost more than the rest of an incident's request
handling (its `parse_options_header` still reads the Content-Disposition). Only the last few bytes
of a chunk (less than a boundary) are held back in case a boundary straddles two chunks.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from python_multipart.multipart import parse_options_header

from api.errors import InputError

MAX_FILENAME_CHARS = 255
MAX_HEADER_BYTES = 16 * 1024  # a part's header block
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token: a header's name


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


class _Malformed(Exception):
    """What is wrong with the body's framing (becomes MalformedBody)."""


def _part_headers(block: bytes) -> dict[bytes, bytes]:
    """A part's header block (lines without the blank line ending it) as lower-cased names -> values."""
    headers: dict[bytes, bytes] = {}
    for line in block.split(b"\r\n") if block else ():
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise _Malformed("bad part header")
        headers[name.lower()] = value.strip(b" \t")
    return headers


def _describe(part: FormPart) -> FormPart:
    """Fill in the part's field name and file name from its Content-Disposition."""
    _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
    name = options.get(b"name")
    part.name = name.decode("utf-8", "replace") if name else None
    filename = options.get(b"filename")
    if filename:
        part.filename = os.path.basename(filename.decode("utf-8", "replace"))[:MAX_FILENAME_CHARS]
    return part


_PREAMBLE, _AFTER_BOUNDARY, _HEADERS, _DATA, _DONE = range(5)


async def read_parts(boundary: bytes, chunks: AsyncIterator[bytes], handler: PartHandler) -> None:
    """Parse the body from `chunks`, calling `handler` for each part as it arrives. The handler's
    own errors propagate unchanged; a body that is not well-formed multipart becomes MalformedBody
    (the reason names what is wrong). Text before the first boundary and after the last is ignored."""
    first = b"--" + boundary
    delimiter = b"\r\n--" + boundary  # ends a part's bytes
    keep = len(delimiter) - 1
    state = _PREAMBLE
    buffer = b""
    try:
        async for chunk in chunks:
            buffer = buffer + chunk if buffer else bytes(chunk)
            while True:  # as far as this buffer goes
                if state == _DATA:
                    at = buffer.find(delimiter)
                    if at < 0:
                        if len(buffer) > keep:  # hand over all but what could start a delimiter
                            handler.data(buffer[: len(buffer) - keep])
                            buffer = buffer[len(buffer) - keep :]
                        break
                    if at:
                        handler.data(buffer[:at])
                    handler.end()
                    buffer = buffer[at + len(delimiter) :]
                    state = _AFTER_BOUNDARY
                elif state == _HEADERS:
                    if buffer.startswith(b"\r\n"):  # a part without headers
                        block, buffer = b"", buffer[2:]
                    else:
                        at = buffer.find(b"\r\n\r\n")
                        if at < 0:
                            if len(buffer) > MAX_HEADER_BYTES:
                                raise _Malformed("part headers too long")
                            break
                        block, buffer = buffer[:at], buffer[at + 4 :]
                    part = _describe(FormPart(headers=_part_headers(block)))
                    handler.begin(part)
                    state = _DATA
                elif state == _AFTER_BOUNDARY:
                    if len(buffer) < 2:
                        break
                    mark, buffer = buffer[:2], buffer[2:]
                    if mark == b"--":
                        state = _DONE
                    elif mark == b"\r\n":
                        state = _HEADERS
                    else:
                        raise _Malformed("no line break after a boundary")
                elif state == _PREAMBLE:
                    at = buffer.find(first)
                    if at < 0 or (at and buffer[at - 2 : at] != b"\r\n"):
                        if len(buffer) > MAX_HEADER_BYTES:
                            raise _Malformed("no boundary at the start")
                        break
                    buffer = buffer[at + len(first) :]
                    state = _AFTER_BOUNDARY
                else:  # _DONE: the epilogue is ignored
                    buffer = b""
                    break
        if state != _DONE:
            raise _Malformed("the body ends before its closing boundary")
    except _Malformed as exc:
        raise MalformedBody(f"malformed multipart body ({exc})") from None
