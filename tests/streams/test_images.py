"""Image folders and single images: order, timing by rate or by file names, unreadable files."""

import logging
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streams import Frame, SourceError, open_source
from streams.images import datetime_from_name, natural_key
from tests.streams.footage import write_image


def _folder(tmp_path: Path, names: list[str]) -> Path:
    """A folder of images; the image named names[i] is filled with gray level 10 * i."""
    folder = tmp_path / "cam-3"
    folder.mkdir()
    for i, name in enumerate(names):
        if name.endswith(".txt"):
            (folder / name).write_text("not an image")
        else:
            write_image(folder / name, 10 * i)
    return folder


def _gray(frame: Frame) -> int:
    return int(frame.image[0, 0, 0])


def test_natural_sort_puts_img2_before_img10() -> None:
    names = ["img10.png", "img2.png", "IMG1.png", "img1b.png", "img_003.png"]
    assert [p.name for p in sorted(map(Path, names), key=natural_key)] == [
        "IMG1.png",
        "img1b.png",
        "img2.png",
        "img10.png",
        "img_003.png",
    ]


def test_folder_at_a_fixed_rate(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["img10.png", "img2.png", "img1.png", "notes.txt", "img3.jpg"])
    start = datetime(2026, 11, 29, 8, 0, 0)

    source = open_source(folder, image_fps=2.0, start_time=start)
    frames = list(source)

    assert source.info.kind == "images"
    assert (source.info.frame_count, source.info.fps, source.info.width, source.info.height) == (
        4,
        2.0,
        32,
        24,
    )
    # img1 (gray 20), img2 (10), img3 (jpeg, ~40), img10 (0)
    assert [_gray(frame) for frame in frames] == [20, 10, pytest.approx(40, abs=3), 0]
    assert [frame.ts for frame in frames] == [0.0, 0.5, 1.0, 1.5]
    assert [frame.index for frame in frames] == [0, 1, 2, 3]
    assert frames[3].wall_time == start + timedelta(seconds=1.5)
    assert {frame.source_id for frame in frames} == {"cam-3"}
    assert source.stopped_early is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20261129_081502_123.jpg", datetime(2026, 11, 29, 8, 15, 2, 123_000)),
        ("2026-11-29T08-15-02.jpg", datetime(2026, 11, 29, 8, 15, 2)),
        ("IMG_20261129_081502.jpg", datetime(2026, 11, 29, 8, 15, 2)),
        ("cam3_2026-11-29 08.15.02.250.png", datetime(2026, 11, 29, 8, 15, 2, 250_000)),
        ("20261129081502.jpg", datetime(2026, 11, 29, 8, 15, 2)),
        ("1764404102123.jpg", datetime(2025, 11, 29, 8, 15, 2, 123_000, tzinfo=UTC)),  # Unix ms
        ("img_0001.jpg", None),  # a frame counter, not a time
        ("000123.jpg", None),
        ("20261329_081502.jpg", None),  # month 13
        ("20261129_256000.jpg", None),  # hour 25
    ],
)
def test_datetime_from_name(name: str, expected: datetime | None) -> None:
    assert datetime_from_name(name) == expected


@pytest.mark.parametrize(
    "names",
    [
        ["20261129_081502_000.jpg", "20261129_081502_500.jpg", "20261129_081504_000.jpg"],
        ["2026-11-29T08-15-02.jpg", "2026-11-29T08-15-03.jpg", "2026-11-29T08-15-05.jpg"],
    ],
)
def test_folder_timed_by_file_names(tmp_path: Path, names: list[str]) -> None:
    frames = list(open_source(_folder(tmp_path, names)))
    first = datetime_from_name(names[0])
    assert first is not None
    assert [frame.wall_time for frame in frames] == [datetime_from_name(name) for name in names]
    assert [frame.ts for frame in frames] == [(frame.wall_time - first).total_seconds() for frame in frames]  # type: ignore[operator]
    assert frames[0].ts == 0.0


def test_start_time_overrides_the_date_in_names(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["20261129_081502_000.jpg", "20261129_081503_000.jpg"])
    start = datetime(2030, 1, 1, tzinfo=UTC)
    frames = list(open_source(folder, start_time=start))
    assert [frame.wall_time for frame in frames] == [start, start + timedelta(seconds=1)]


def test_epoch_millisecond_names(tmp_path: Path) -> None:
    frames = list(open_source(_folder(tmp_path, ["1764404102123.png", "1764404102323.png"])))
    assert [frame.ts for frame in frames] == [0.0, pytest.approx(0.2)]
    assert frames[0].wall_time == datetime(2025, 11, 29, 8, 15, 2, 123_000, tzinfo=UTC)


def _jpeg_with_exif(
    path: Path, value: int, taken: str | None, subsec: str | None = None, offset: str | None = None
) -> Path:
    """A real JPEG (cv2.imwrite) with an EXIF APP1 segment written here, byte by byte (little-endian TIFF):
    IFD0 points to an EXIF IFD holding DateTimeOriginal ("YYYY:MM:DD HH:MM:SS"), SubSecTimeOriginal and
    OffsetTimeOriginal when given."""
    write_image(path, value)
    data = path.read_bytes()
    if taken is None:
        return path
    tags = [(0x9003, taken), (0x9291, subsec), (0x9011, offset)]
    entries = [(tag, text.encode("ascii") + b"\x00") for tag, text in tags if text is not None]
    exif_ifd_at = 8 + 2 + 12 + 4
    data_at = exif_ifd_at + 2 + 12 * len(entries) + 4
    tiff = b"II*\x00" + struct.pack("<I", 8)
    tiff += struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, exif_ifd_at) + struct.pack("<I", 0)
    ifd, blobs = struct.pack("<H", len(entries)), b""
    for tag, raw in entries:
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, 2, len(raw)) + raw.ljust(4, b"\x00")
        else:
            ifd += struct.pack("<HHII", tag, 2, len(raw), data_at + len(blobs))
            blobs += raw
    tiff += ifd + struct.pack("<I", 0) + blobs
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path.write_bytes(data[:2] + segment + data[2:])
    return path


def test_folder_timed_by_exif(tmp_path: Path) -> None:
    """A 5 fps burst: EXIF says 0.2 s apart; names (a frame counter) say nothing."""
    folder = tmp_path / "burst"
    folder.mkdir()
    for i in range(6):
        second, ms = divmod(2000 + 200 * i, 1000)
        _jpeg_with_exif(folder / f"img_{i:04d}.jpg", 10 * i, f"2026:12:03 08:15:{second:02d}", f"{ms:03d}")
    source = open_source(folder)
    frames = list(source)
    assert source.info.fps is None
    assert [frame.ts for frame in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert frames[1].wall_time == datetime(2026, 12, 3, 8, 15, 2, 200_000)


def test_exif_wins_over_names_and_orders_the_images(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    # names say 1 s apart, in the opposite order; EXIF (with an offset) is what the camera measured
    _jpeg_with_exif(folder / "20261203_081500.jpg", 10, "2026:12:03 08:15:02", "500", "+08:00")
    _jpeg_with_exif(folder / "20261203_081501.jpg", 20, "2026:12:03 08:15:02", "000", "+08:00")
    frames = list(open_source(folder))
    assert [_gray(frame) for frame in frames] == [pytest.approx(20, abs=3), pytest.approx(10, abs=3)]
    assert [frame.ts for frame in frames] == pytest.approx([0.0, 0.5])
    eight = timezone(timedelta(hours=8))
    assert frames[0].wall_time == datetime(2026, 12, 3, 8, 15, 2, tzinfo=eight)


def test_exif_without_subseconds_that_ties_falls_back_to_names(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for i, name in enumerate(["20261203_081502_000.jpg", "20261203_081502_200.jpg"]):
        _jpeg_with_exif(folder / name, 10 * i, "2026:12:03 08:15:02")
    assert [frame.ts for frame in open_source(folder)] == pytest.approx([0.0, 0.2])


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["1733212502.250.jpg", "1733212502.450.jpg"], [0.0, 0.2]),  # Unix seconds with a fraction
        (["frame_000000ms.png", "frame_000200ms.png", "frame_000400ms.png"], [0.0, 0.2, 0.4]),
        (["20261203_081502_250.jpg", "20261203_081502_450.jpg"], [0.0, 0.2]),
    ],
)
def test_folder_timed_by_other_names(tmp_path: Path, names: list[str], expected: list[float]) -> None:
    assert [frame.ts for frame in open_source(_folder(tmp_path, names))] == pytest.approx(expected)


def test_epoch_seconds_names_are_utc() -> None:
    assert datetime_from_name("1733212502.250.jpg") == datetime(2024, 12, 3, 7, 55, 2, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("names", "exif"),
    [
        (["a.png", "b.png", "c.png"], False),
        (["20261129_081502.png", "b.png", "c.png"], False),  # not every name holds a time
        (["20261129_081502.png", "20261129_081502.png.bak.png"], False),  # the same time twice
        (["img1.jpg", "img2.jpg"], True),  # EXIF on one image only
    ],
)
def test_without_rate_or_image_times_a_folder_is_refused(
    tmp_path: Path, names: list[str], exif: bool
) -> None:
    folder = _folder(tmp_path, names)
    if exif:
        _jpeg_with_exif(folder / names[0], 0, "2026:12:03 08:15:02", "000")
    with pytest.raises(SourceError, match="--image-fps") as error:
        open_source(folder)
    assert str(folder) in str(error.value)


def test_a_given_rate_needs_no_image_times(tmp_path: Path) -> None:
    frames = list(open_source(_folder(tmp_path, ["a.png", "b.png", "c.png"]), image_fps=5.0))
    assert [frame.ts for frame in frames] == pytest.approx([0.0, 0.2, 0.4])


def test_a_non_positive_rate_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="positive"):
        open_source(_folder(tmp_path, ["a.png", "b.png"]), image_fps=0.0)


def test_an_unreadable_image_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path, ["f1.png", "f2.png", "f3.png"])
    (folder / "f2.png").write_bytes(b"not a png")

    with caplog.at_level(logging.WARNING):
        frames = list(open_source(folder, image_fps=1.0))

    assert [frame.index for frame in frames] == [0, 2]
    assert any(
        "f2.png" in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    )


def test_analysis_rate_samples_a_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [f"f{i}.png" for i in range(10)])
    frames = list(open_source(folder, image_fps=10.0, analysis_fps=2.0))
    assert [frame.index for frame in frames] == [0, 5]
    assert [frame.ts for frame in frames] == [0.0, 0.5]


def test_an_unreadable_image_at_a_sampling_instant_gives_its_place_to_the_next(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [f"f{i}.png" for i in range(10)])
    (folder / "f5.png").write_bytes(b"")
    frames = list(open_source(folder, image_fps=10.0, analysis_fps=2.0))
    assert [frame.index for frame in frames] == [0, 6]


def test_single_image_is_one_frame(tmp_path: Path) -> None:
    path = write_image(tmp_path / "still.png", 77)
    frames = list(open_source(path, source_id="gate"))
    assert len(frames) == 1
    assert (_gray(frames[0]), frames[0].ts, frames[0].index, frames[0].source_id) == (77, 0.0, 0, "gate")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "holds no images"),
        ({"readme.txt": b"hello"}, "holds no images"),
        ({"a.png": b"broken", "b.jpg": b""}, "no image in the folder can be decoded"),
    ],
)
def test_folder_without_usable_images_is_a_source_error(
    tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    with pytest.raises(SourceError, match=message) as error:
        open_source(folder)
    assert str(folder) in str(error.value)
