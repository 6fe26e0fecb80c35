"""Image folders and single images: order, timing by rate or by file names, unreadable files."""

import logging
from datetime import UTC, datetime, timedelta
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


@pytest.mark.parametrize(
    "names",
    [
        ["a.png", "b.png", "c.png"],
        ["20261129_081502.png", "b.png", "c.png"],  # not every name holds a time
    ],
)
def test_without_rate_or_names_assume_1_fps_and_warn(
    tmp_path: Path, names: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        source = open_source(_folder(tmp_path, names))
    assert [frame.ts for frame in source] == [0.0, 1.0, 2.0]
    assert any("assuming 1 fps" in record.getMessage() for record in caplog.records)


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
