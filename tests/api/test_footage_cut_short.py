"""Footage that decodes only in part (a dashcam file cut short when the car was switched off): its job
is done with what could be read, and says so; before, it was done with no word of the missing part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detect.pipeline import FootageRun, detect_footage
from tests.api.api_testkit import LiveServer, wait_job
from tests.api.test_gps_tracks import IdentityTracker, SurestAtFive, still_video, worker_server
from tests.streams.footage import matroska_with_lead_in, write_video


def pipeline(input: Any, config: Any, **kwargs: Any) -> FootageRun:
    """detect_footage with the fakes, its notes kept as detect.pipeline.ReusingPipeline keeps them."""
    return FootageRun(
        lambda notes: detect_footage(
            input, config, detector=SurestAtFive(), tracker=IdentityTracker(), notes=notes, **kwargs
        )
    )


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return worker_server(make_server, sqlite_url, pipeline)


def test_footage_cut_short_is_done_with_a_warning_naming_it(server: LiveServer, tmp_path: Path) -> None:
    whole = still_video(tmp_path / "whole.avi", 7, frames=20)  # an AVI's frame count is in its header
    cut = whole[: len(whole) // 2]
    with server.client("device") as device:
        receipts = [
            device.post(
                "/api/uploads",
                files={"file": (name, data, "video/x-msvideo")},
                data={"start_time": "2026-11-20T01:00:00Z"},  # dated: no note on that
            )
            for name, data in (("whole.avi", whole), ("patrol-0812.avi", cut))
        ]
        assert [r.status_code for r in receipts] == [201, 201], receipts
        whole_job, cut_job = (wait_job(device, r.json()["id"]) for r in receipts)
    assert whole_job["status"] == "done" and whole_job["warning"] is None, whole_job
    assert cut_job["status"] == "done", cut_job
    warning = cut_job["warning"] or ""
    assert warning.startswith(
        "the footage was analysed only in part (patrol-0812.avi: decode failed after"
    ), warning
    assert "of 20 frames: truncated or damaged data); nothing after that point was looked at" in warning
    assert str(server.services.settings.uploads_dir) not in warning  # the sender's name, not our path


def test_whole_mkv_whose_clock_starts_late_is_done_without_warnings(
    server: LiveServer, tmp_path: Path
) -> None:
    """A segment of a longer Matroska recording (its first frame at 30 s on its clock) with a GPS track
    for its 2 s: done, no warning. Before, its stated length counted the 30 s before its first frame:
    warned as cut short, and the track as placing only a fifth of its frames."""
    video = write_video(tmp_path / "segment.mkv", frame_count=20, fps=10.0)
    footage = matroska_with_lead_in(video, 30_000).read_bytes()
    fixes = "".join(f"2026-11-20T01:00:{s:02d}Z,30.2600{s},120.14\n" for s in range(3))
    with server.client("device") as device:
        receipt = device.post(
            "/api/uploads",
            files={
                "file": ("segment-0002.mkv", footage, "video/x-matroska"),
                "track": ("segment.csv", f"time,lat,lon\n{fixes}".encode(), "text/csv"),
            },
            data={"start_time": "2026-11-20T01:00:00Z"},
        )
        assert receipt.status_code == 201, receipt.text
        job = wait_job(device, receipt.json()["id"])
    assert job["status"] == "done" and job["warning"] is None, job
