"""api.http.multipart: parts handed over as they arrive, in chunks of any size; errors told apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.http.multipart import FormPart, MalformedBody, form_boundary, read_parts

BODY = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="incident"\r\n\r\n'
    b'{"id": "a"}\r\n'
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="files"; filename="../../etc/evil.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n" + bytes(range(256)) * 40 + b"\r\n--XyZ--\r\n"
)


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.parts: list[tuple[str | None, str | None, bytes, bytes]] = []
        self.fail_on = fail_on
        self._current: FormPart | None = None
        self._data = bytearray()

    def begin(self, part: FormPart) -> None:
        if part.name == self.fail_on:
            raise KeyError(part.name)
        self._current, self._data = part, bytearray()

    def data(self, chunk: bytes) -> None:
        self._data.extend(chunk)

    def end(self) -> None:
        assert self._current is not None
        content_type = self._current.headers.get(b"content-type", b"")
        self.parts.append((self._current.name, self._current.filename, content_type, bytes(self._data)))


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
def test_parts_arrive_whole_whatever_the_chunk_size(size: int) -> None:
    recorder = Recorder()
    asyncio.run(read_parts(b"XyZ", _chunks(BODY, size), recorder))
    assert recorder.parts == [
        ("incident", None, b"", b'{"id": "a"}'),
        ("files", "evil.jpg", b"image/jpeg", bytes(range(256)) * 40),  # base name only
    ]


def test_handler_errors_pass_through_and_parser_errors_are_named() -> None:
    with pytest.raises(KeyError):
        asyncio.run(read_parts(b"XyZ", _chunks(BODY, 64), Recorder(fail_on="files")))
    broken = BODY.replace(b"\r\n\r\n", b"\r\n", 1)
    with pytest.raises(MalformedBody, match="malformed multipart body"):
        asyncio.run(read_parts(b"XyZ", _chunks(broken, 64), Recorder()))


def test_form_boundary() -> None:
    assert form_boundary("multipart/form-data; boundary=XyZ") == b"XyZ"
    assert form_boundary("multipart/form-data") is None
    assert form_boundary("application/json") is None
    assert form_boundary(None) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BODY[: len(BODY) - 9], "ends before its closing boundary"),  # cut before the closing --XyZ--
        (b"no boundary anywhere", "ends before its closing boundary"),
        (BODY.replace(b"--XyZ\r\nContent-Disposition", b"--XyZ!!Content-Disposition", 1), "no line break"),
        (BODY.replace(b"Content-Type: image/jpeg", b"Content Type image/jpeg"), "bad part header"),
        (b"--XyZ\r\n" + b"X-Long: " + b"a" * 20_000, "part headers too long"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedBody, match=reason):
        asyncio.run(read_parts(b"XyZ", _chunks(body, 4096), Recorder()))


def test_boundary_like_bytes_inside_a_part_and_a_preamble_are_data() -> None:
    """Bytes that almost make a boundary (split over chunks of every size), a part without headers,
    a preamble and an epilogue."""
    tricky = b"\r\n--XyY\r\n--Xy" * 50 + b"\r\n-"
    body = (
        b"preamble text\r\n--XyZ\r\n\r\nheaderless\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="files"; filename="t.bin"\r\n\r\n'
        + tricky
        + b"\r\n--XyZ--\r\nepilogue"
    )
    for size in (1, 2, 3, 5, 8, 13, 64, 1 << 16):
        recorder = Recorder(fail_on="no such part")
        asyncio.run(read_parts(b"XyZ", _chunks(body, size), recorder))
        assert recorder.parts == [(None, None, b"", b"headerless"), ("files", "t.bin", b"", tricky)]
