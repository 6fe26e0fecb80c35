"""Video files: timestamp sampling on the shared dashcam clip, bad files, truncated and damaged copies."""

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from streams import Frame, FrameSource, GeoPoint, InputError, SourceError, open_source
from streams.video import container_ts
from tests.streams.conftest import DASHCAM_FRAMES
from tests.streams.footage import (
    faststart_copy,
    matroska_with_lead_in,
    mp4_without_video,
    rotated_copy,
    truncated_copy,
    write_image,
    write_video,
)


def test_dashcam_at_5_fps_is_sampled_by_timestamps(dashcam: Path) -> None:
    source = open_source(dashcam, analysis_fps=5)
    assert source.info.kind == "video"
    assert (source.info.width, source.info.height, source.info.fps) == (640, 360, 30.0)
    assert source.info.frame_count == DASHCAM_FRAMES
    assert source.info.duration_s == pytest.approx(13.8)

    frames = list(source)

    assert 69 <= len(frames) <= 70
    ts = np.array([frame.ts for frame in frames])
    assert ts[0] == 0.0
    assert np.diff(ts) == pytest.approx(0.2, abs=0.02)
    indices = np.diff([frame.index for frame in frames])
    assert set(indices.tolist()) <= {5, 6, 7}
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    assert {frame.source_id for frame in frames} == {"highway-dashcam-1"}
    assert source.stopped_early is None


@pytest.mark.parametrize(
    ("analysis_fps", "expected"),
    [
        (None, DASHCAM_FRAMES),
        (30.0, DASHCAM_FRAMES),
        (60.0, DASHCAM_FRAMES),  # faster than the footage: every frame
        (10.0, 138),  # every 3rd frame: 0, 3, ..., 411
        (1.0, 14),  # 0 s, 1 s, ..., 13 s
    ],
)
def test_analysis_rate_decides_how_many_frames(
    dashcam: Path, analysis_fps: float | None, expected: int
) -> None:
    frames = list(open_source(dashcam, analysis_fps=analysis_fps))
    assert len(frames) == expected
    assert all(b.ts > a.ts and b.index > a.index for a, b in zip(frames, frames[1:], strict=False))


@pytest.mark.parametrize("analysis_fps", [5.0, 7.0, 1.0])
def test_sampled_frames_are_the_frames_a_full_decode_gives(dashcam: Path, analysis_fps: float) -> None:
    """Frames between sampling instants are only grabbed, never converted: each kept frame must still be
    the very frame (index, container time, pixels) that decoding every frame gives, the first one at or
    after each instant k / analysis_fps."""
    sampled = list(open_source(dashcam, analysis_fps=analysis_fps))
    every = open_source(dashcam)
    times = []
    kept: dict[int, Frame] = {}
    wanted = {frame.index for frame in sampled}
    for frame in every:
        times.append(frame.ts)
        if frame.index in wanted:
            kept[frame.index] = frame
    instants = np.arange(0.0, times[-1] + 1e-9, 1.0 / analysis_fps)
    first_at = [next(i for i, ts in enumerate(times) if ts + 1e-3 >= instant) for instant in instants]
    assert [frame.index for frame in sampled] == first_at
    for frame in sampled:
        full = kept[frame.index]
        assert frame.ts == full.ts == times[frame.index]
        assert np.array_equal(frame.image, full.image)


def test_sampled_frames_show_their_own_picture(tmp_path: Path) -> None:
    """Frame i of the made (lossless) video is grey level 2 * i: a kept frame showing a skipped
    neighbour's picture (a grab that lost its place) reads 2 grey levels off."""
    video = write_video(tmp_path / "grey.avi", 90, fourcc="FFV1")
    frames = list(open_source(video, analysis_fps=5))
    assert [frame.index for frame in frames] == list(range(0, 90, 6))
    assert [frame.ts for frame in frames] == pytest.approx([i / 30 for i in range(0, 90, 6)], abs=1e-3)
    for frame in frames:
        assert np.all(frame.image == 2 * frame.index)


def test_every_frame_is_timed_by_the_container(dashcam: Path) -> None:
    frames = list(open_source(dashcam))
    assert [frame.index for frame in frames] == list(range(DASHCAM_FRAMES))
    assert frames[-1].ts == pytest.approx(413 / 30)


def test_wall_time_source_id_and_position_pass_through(dashcam: Path) -> None:
    start = datetime(2026, 11, 29, 8, 15, 0)
    where = GeoPoint(31.23, 121.47)
    frames = list(open_source(dashcam, analysis_fps=1, start_time=start, source_id="cam-7", position=where))
    assert frames[3].wall_time == start + timedelta(seconds=frames[3].ts)
    assert {(frame.source_id, frame.position) for frame in frames} == {("cam-7", where)}
    assert list(open_source(dashcam, analysis_fps=1))[3].wall_time is None


@pytest.mark.parametrize(
    ("reported_s", "previous_s", "expected"),
    [
        (0.0, None, (0.0, False)),  # the first frame
        (0.5, None, (0.5, False)),  # footage that starts late keeps its offset
        (0.2, 0.1, (0.2, False)),
        (0.0, 0.1, (0.1 + 0.04, True)),  # no timestamp: one frame period (25 fps) later
        (0.1, 0.1, (0.1 + 0.04, True)),  # a repeated timestamp never goes back or stands still
    ],
)
def test_container_timestamps_fall_back_to_the_frame_rate(
    reported_s: float, previous_s: float | None, expected: tuple[float, bool]
) -> None:
    ts, estimated = container_ts(reported_s, previous_s, period_s=0.04)
    assert (ts, estimated) == (pytest.approx(expected[0]), expected[1])


NOT_A_VIDEO = b"this is not a video\n" * 20


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "file is empty"),
        ("notes.mp4", NOT_A_VIDEO, "not a readable video"),
        ("notes.avi", NOT_A_VIDEO, "not a readable video"),
        ("notes.txt", NOT_A_VIDEO, "not a readable video"),
        ("photo.jpg", NOT_A_VIDEO, "cannot be decoded as an image"),
    ],
)
def test_bad_input_is_a_source_error_naming_it(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as error:
        open_source(path)
    assert str(path) in str(error.value)
    # caught by name: a bug's ValueError is never shown to a user as unreadable footage
    assert isinstance(error.value, InputError) and not isinstance(error.value, ValueError)


def test_a_file_is_an_image_or_a_video_by_its_content_not_its_name(dashcam: Path, tmp_path: Path) -> None:
    # Before, by its name: the clip saved as .jpg was "cannot be decoded as an image", the photo saved
    # as .mp4 a one-frame "video" at FFmpeg's made-up 25 fps.
    clip = tmp_path / "patrol-0812.jpg"
    shutil.copy(dashcam, clip)
    source = open_source(clip, analysis_fps=1)
    assert (source.info.kind, source.info.frame_count, len(list(source))) == ("video", DASHCAM_FRAMES, 14)
    for name, write in (("photo.mp4", ".jpg"), ("shot.avi", ".png")):
        photo = tmp_path / name
        shutil.copy(write_image(tmp_path / f"real{write}", 77), photo)
        source = open_source(photo)
        assert (source.info.kind, source.info.fps, source.info.frame_count) == ("images", None, 1)
        assert [int(frame.image[0, 0, 0]) for frame in source] == [77]

    # named as an image, neither one nor a readable video: both said, with what the video reader found
    cut = truncated_copy(dashcam, tmp_path / "patrol-0813.jpg", keep=0.5)
    with pytest.raises(SourceError) as error:
        open_source(cut)
    assert str(error.value).startswith(f"{cut}: cannot be decoded as an image (its content is no JPEG")
    assert "nor read as a video: not a readable video" in str(error.value) and "moov" in str(error.value)


@pytest.mark.parametrize("keep", [0.4, 0.9])
def test_truncated_mp4_loses_its_index_and_cannot_open(dashcam: Path, tmp_path: Path, keep: float) -> None:
    # The clip keeps its moov atom (the index) at the end, as cameras write it: any truncation loses it.
    path = truncated_copy(dashcam, tmp_path / "cut.mp4", keep)
    with pytest.raises(SourceError, match="moov") as error:
        open_source(path)
    assert str(path) in str(error.value)


# cut at the end of the index, in the header of the frames (mdat), a little past it
@pytest.mark.parametrize("extra", [0, 5, 1000])
def test_faststart_mp4_cut_just_after_its_index_is_named_cut_short(
    dashcam: Path, tmp_path: Path, extra: int
) -> None:
    # A phone's faststart MP4 keeps its index (moov) ahead of its frames (mdat): cut just after the index,
    # it opens, then decodes nothing. Before, "holds no decodable video frames", which reads as a file
    # of no video rather than a recording cut short.
    whole = faststart_copy(dashcam, tmp_path / "whole.mp4")
    assert len(list(open_source(whole, analysis_fps=1))) == 14  # the whole copy reads as the clip does
    data = whole.read_bytes()
    index_end = data.index(b"mdat") - 4
    cut = tmp_path / "VID_20261203_0812.mp4"
    cut.write_bytes(data[: index_end + extra])
    with pytest.raises(SourceError) as error:
        open_source(cut)
    assert str(error.value) == (
        f"{cut}: cut short just after its index (moov atom): "
        "the frames it lists are not in the file (truncated)"
    )


def _assert_stopped_after_last_frame(
    source: FrameSource, frames: list[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    assert source.stopped_early is not None
    last = frames[-1]
    assert f"frame {last.index} at {last.ts:.2f} s" in source.stopped_early
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(source.stopped_early in message and source.info.name in message for message in warnings)


def test_mp4_damaged_in_the_middle_yields_the_frames_before(
    dashcam: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "damaged.mp4"
    shutil.copy(dashcam, path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 100_000] = bytes(100_000)
    path.write_bytes(bytes(data))

    source = open_source(path)
    with caplog.at_level(logging.WARNING):
        frames = list(source)

    assert 30 < len(frames) < DASHCAM_FRAMES
    assert [frame.index for frame in frames] == list(range(len(frames)))
    _assert_stopped_after_last_frame(source, frames, caplog)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_truncated_avi_and_mkv_yield_the_frames_before_the_cut(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    whole = write_video(tmp_path / f"whole{suffix}", frame_count=90)
    complete = open_source(whole)
    assert len(list(complete)) == 90 and complete.stopped_early is None

    source = open_source(truncated_copy(whole, tmp_path / f"cut{suffix}", keep=0.4))
    assert source.info.frame_count == 90  # the container still states the whole length
    with caplog.at_level(logging.WARNING):
        frames = list(source)

    assert 20 < len(frames) < 90
    assert frames[-1].ts == pytest.approx(frames[-1].index / 30, abs=0.002)
    _assert_stopped_after_last_frame(source, frames, caplog)


def test_a_source_is_read_once(tmp_path: Path) -> None:
    source = open_source(write_video(tmp_path / "short.avi", frame_count=3))
    assert len(list(source)) == 3
    with pytest.raises(RuntimeError, match="already iterated"):
        list(source)


def test_mkv_whose_clock_starts_late_is_whole_and_timed_from_its_first_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A recorder that keeps its clock (a segment of a longer recording, ffmpeg -copyts) puts the first
    # frame at 10 s; Matroska's Duration runs from 0, so the stated length counted 10 s that never come
    # and the whole file read as "truncated or damaged".
    path = matroska_with_lead_in(write_video(tmp_path / "segment-0002.mkv", frame_count=20, fps=10.0), 10_000)
    source = open_source(path)
    assert (source.info.frame_count, source.info.duration_s) == (20, pytest.approx(2.0))
    with caplog.at_level(logging.WARNING):
        frames = list(source)
    assert source.stopped_early is None, source.stopped_early
    assert [round(frame.ts, 3) for frame in frames] == [i / 10 for i in range(20)]

    # cut short, it still says so, against the length it really has
    cut = open_source(truncated_copy(path, tmp_path / "cut.mkv", keep=0.5))
    assert cut.info.frame_count == 20
    frames = list(cut)
    assert 3 < len(frames) < 20
    assert cut.stopped_early is not None and "of 20 frames" in cut.stopped_early


@pytest.mark.parametrize("name", ["voice-memo.mp4", "voice-memo.avi"])  # known by its content, not its name
def test_mp4_with_only_audio_is_refused_as_holding_no_video(dashcam: Path, tmp_path: Path, name: str) -> None:
    # Before, "not a readable video (damaged, cut short, ...); an mp4/mov cut short loses its index":
    # a crew re-sent a whole recording thinking it damaged.
    path = mp4_without_video(dashcam, tmp_path / name)
    with pytest.raises(SourceError) as error:
        open_source(path)
    assert str(error.value) == f"{path}: holds no video track (only audio): there is nothing to analyse"

    # cut before its index, whatever its name, it is still named as cut short
    cut = truncated_copy(dashcam, tmp_path / "patrol.avi", keep=0.9)
    with pytest.raises(SourceError, match="moov"):
        open_source(cut)


@pytest.mark.parametrize(("degrees", "turns"), [(90, -1), (180, 2), (270, 1)])
def test_a_phone_clip_s_rotation_is_applied(dashcam: Path, tmp_path: Path, degrees: int, turns: int) -> None:
    """A phone held upright records landscape pictures with a display matrix (`rotate=90`): its frames,
    their width and height are upright, each the landscape picture turned as the matrix says
    (clockwise), so that detections, evidence images and their boxes are upright too."""
    landscape = next(iter(open_source(dashcam))).image
    source = open_source(rotated_copy(dashcam, tmp_path / f"phone-{degrees}.mp4", degrees))
    upright = np.rot90(landscape, turns)
    assert (source.info.width, source.info.height) == (upright.shape[1], upright.shape[0])
    frame = next(iter(source))
    source.close()
    assert frame.image.shape == upright.shape and np.array_equal(frame.image, upright)
