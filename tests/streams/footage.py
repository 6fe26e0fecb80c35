"""Small footage made in tmp_path for the stream tests: videos, images, truncated copies."""

import struct
from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frame_count: int, fps: float = 30.0, fourcc: str = "MJPG") -> Path:
    """A small video (160x90) whose frame i is filled with gray level 2 * i, written with OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (160, 90))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(frame_count):
        writer.write(np.full((90, 160, 3), 2 * i % 256, dtype=np.uint8))
    writer.release()
    return path


def write_image(path: Path, value: int, size: tuple[int, int] = (32, 24)) -> Path:
    """An image of size (width, height) filled with gray level `value`."""
    width, height = size
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, dtype=np.uint8))
    return path


def truncated_copy(source: Path, target: Path, keep: float) -> Path:
    """The first `keep` share of the bytes of `source`, as a camera's interrupted recording leaves it."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def _vint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    """An EBML variable-size integer at `at`: (its value without the length marker, its length in bytes)."""
    length = 8 - data[at].bit_length() + 1
    value = int.from_bytes(data[at : at + length], "big") & ((1 << (7 * length)) - 1)
    return value, length


def _element_id(data: bytes | bytearray, at: int) -> tuple[int, int]:
    length = 8 - data[at].bit_length() + 1
    return int.from_bytes(data[at : at + length], "big"), length


def matroska_with_lead_in(path: Path, lead_in_ms: int) -> Path:
    """Move every frame of an OpenCV-written Matroska file `lead_in_ms` later on its clock, as a recorder
    that keeps the camera's clock (or ffmpeg -output_ts_offset, -copyts) writes it: each block's 16-bit
    time (relative to its cluster) is raised and the segment's Duration grows by the lead-in, since
    Matroska states its Duration from the clock's zero, not from the first frame."""
    data = bytearray(path.read_bytes())
    segment, segment_id_len = 0x18538067, 4
    at = data.index(segment.to_bytes(segment_id_len, "big"))
    size, size_len = _vint(data, at + segment_id_len)
    at += segment_id_len + size_len
    end = min(len(data), at + size)
    while at < end:
        element, id_len = _element_id(data, at)
        size, size_len = _vint(data, at + id_len)
        body = at + id_len + size_len
        if element == 0x1549A966:  # Info: raise Duration (a float on the segment's TimestampScale, ms)
            duration = data.index(b"\x44\x89", body, body + size)
            width = data[duration + 2] & 0x7F
            fmt = ">d" if width == 8 else ">f"
            (value,) = struct.unpack(fmt, data[duration + 3 : duration + 3 + width])
            data[duration + 3 : duration + 3 + width] = struct.pack(fmt, value + lead_in_ms)
        elif element == 0x1F43B675:  # Cluster: raise each SimpleBlock's relative time
            child = body
            while child < body + size:
                child_id, child_id_len = _element_id(data, child)
                child_size, child_size_len = _vint(data, child + child_id_len)
                child_body = child + child_id_len + child_size_len
                if child_id == 0xA3:  # SimpleBlock: track number (vint), int16 time, flags, frame
                    _, track_len = _vint(data, child_body)
                    at_time = child_body + track_len
                    (time,) = struct.unpack(">h", data[at_time : at_time + 2])
                    data[at_time : at_time + 2] = struct.pack(">h", time + lead_in_ms)
                child = child_body + child_size
        at = body + size
    path.write_bytes(bytes(data))
    return path


def mp4_without_video(source: Path, target: Path) -> Path:
    """A copy of an MP4 whose video tracks are gone (their trak boxes made free space, which readers skip),
    as a phone's sound-only recording is: the clip's other tracks (its audio) stay."""
    data = bytearray(source.read_bytes())
    at = 0
    while data[at + 4 : at + 8] != b"moov":
        at += int.from_bytes(data[at : at + 4], "big")
    end = at + int.from_bytes(data[at : at + 4], "big")
    child = at + 8
    while child < end:
        size = int.from_bytes(data[child : child + 4], "big")
        box = bytes(data[child : child + size])
        handler = box.find(b"hdlr")
        if box[4:8] == b"trak" and box[handler + 12 : handler + 16] == b"vide":
            data[child + 4 : child + 8] = b"free"
        child += size
    target.write_bytes(bytes(data))
    return target


_ISO_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})


def _shift_chunk_offsets(data: bytearray, start: int, end: int, shift: int) -> None:
    """Add `shift` to every chunk offset (stco, co64) in the boxes of data[start:end], in place."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind in _ISO_CONTAINERS:
            _shift_chunk_offsets(data, at + 8, at + size, shift)
        elif kind in (b"stco", b"co64"):
            (count,) = struct.unpack(">I", data[at + 12 : at + 16])
            fmt, width = (">I", 4) if kind == b"stco" else (">Q", 8)
            for i in range(count):
                field = at + 16 + i * width
                (offset,) = struct.unpack(fmt, data[field : field + width])
                data[field : field + width] = struct.pack(fmt, offset + shift)
        at += size


def faststart_copy(source: Path, target: Path) -> Path:
    """A copy of an MP4 whose index (moov) comes before its frames (mdat), as `ffmpeg -movflags +faststart`
    and most phones write it for streaming: the moov box moved ahead of mdat, its chunk offsets moved on
    by its size."""
    data = source.read_bytes()
    boxes: list[tuple[bytes, bytes]] = []
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        boxes.append((kind, data[at : at + size]))
        at += size
    moov = bytearray(boxes.pop([kind for kind, _ in boxes].index(b"moov"))[1])
    _shift_chunk_offsets(moov, 8, len(moov), len(moov))
    mdat = [kind for kind, _ in boxes].index(b"mdat")
    target.write_bytes(
        b"".join(box for _, box in boxes[:mdat]) + bytes(moov) + b"".join(b for _, b in boxes[mdat:])
    )
    return target


def rotated_copy(source: Path, target: Path, degrees: int) -> Path:
    """A copy of an MP4 shown turned `degrees` clockwise (90, 180, 270), as a phone held upright or upside
    down writes it (`ffmpeg -metadata:s:v rotate=90`): its video track's display matrix (tkhd) set, the
    coded pictures as they were."""
    data = bytearray(source.read_bytes())
    at = data.index(b"tkhd") - 4  # the first track: the video track in an OpenCV or ffmpeg file
    version = data[at + 8]
    # header, version and flags, times + track id + duration (v1: 64-bit times), reserved, layer etc.
    matrix = at + 8 + 4 + (32 if version == 1 else 20) + 8 + 8
    cos = {0: 1, 90: 0, 180: -1, 270: 0}[degrees]
    sin = {0: 0, 90: 1, 180: 0, 270: -1}[degrees]
    one, w = 0x10000, 0x40000000  # 16.16 and 2.30 fixed point
    values = (cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, w)
    data[matrix : matrix + 36] = struct.pack(">9i", *values)
    target.write_bytes(bytes(data))
    return target
