"""`gridpatrol detect` as a newcomer meets it: a missing default config or input is named before the model
loads, the progress bar ends at 100 %, and index.html beside incidents.jsonl shows the evidence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli.contact_sheet import write_contact_sheet
from api.cli.main import main
from tests.api.test_gps_tracks import IdentityTracker, SurestAtFive, still_video
from tests.detect.rule_fixtures import make_config

SITE = Path(__file__).resolve().parents[2] / "configs" / "site.yaml"


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model is a test failure: the command must stop before it."""

    def refuse(config: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("detect.pipeline.build_detector", refuse)


def test_outside_the_repository_the_missing_default_config_asks_for_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    monkeypatch.chdir(tmp_path)
    footage = tmp_path / "clip.avi"
    still_video(footage, 1, frames=2)
    assert main(["detect", str(footage), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "pass --config" in err and str(tmp_path / "configs" / "site.yaml") in err


@pytest.mark.parametrize("name", ["missing.mp4", "missing-folder"])
def test_a_missing_input_is_named_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None, name: str
) -> None:
    missing = tmp_path / name
    assert main(["detect", str(missing), "--config", str(SITE), "--out", str(tmp_path / "out")]) == 1
    assert f"{missing}: no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("rtsp://admin:pa#ss@cam.local/live", "rtsp://admin:***@cam.local/live: an '@' after the host"),
        ("rtsp://admin:pass@cam.local:99999/live", "rtsp://admin:***@cam.local:99999/live: not a valid URL"),
        ("rtsp://admin:pa ss@cam.local/live", "rtsp://cam.local: holds a space or a control character"),
        ("rstp://admin:pass@cam.local/live", "rstp://admin:***@cam.local/live: cannot read rstp:// URLs"),
    ],
)
def test_a_bad_stream_url_is_named_masked_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None, url: str, named: str
) -> None:
    """Worded as the API and `gridpatrol camera add` refuse a camera's stream URL; before, the model
    loaded and FFmpeg was asked to connect to what it made of the URL."""
    assert main(["detect", url, "--config", str(SITE), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert named in err and "pa#ss" not in err and ":pass@" not in err and "pa ss" not in err


def _one_incident_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A 15-frame still clip, a site config and an output folder, with a detector and tracker that make
    one incident of it: (footage, config, out)."""
    monkeypatch.setattr("detect.pipeline.build_detector", lambda config: SurestAtFive())
    monkeypatch.setattr("detect.pipeline.build_tracker", lambda config, fps: IdentityTracker())
    footage = tmp_path / "clip.avi"
    still_video(footage, 1, frames=15)
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(make_config().model_dump(mode="json")))
    out = tmp_path / "out"
    return footage, config, out


def test_detect_ends_at_100_percent_and_writes_a_contact_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    footage, config, out = _one_incident_clip(tmp_path, monkeypatch)

    assert main(["detect", str(footage), "--config", str(config), "--out", str(out)]) == 0

    captured = capsys.readouterr()
    assert "100%" in captured.err
    sheet = out / "index.html"
    assert f"contact sheet: {sheet}" in captured.out
    html = sheet.read_text()
    assert "1 incident(s)" in html and "illegal_parking" in html and "<dd>cam</dd>" in html
    sources = re.findall(r'<img class="(\w+)" src="([^"]+)"', html)
    assert [role for role, _ in sources] == ["annotated", "crop"]
    assert all(not Path(src).is_absolute() and (out / src).is_file() for _, src in sources)
    assert "http:" not in html and "https:" not in html and "<script" not in html


def test_detect_reads_a_video_saved_under_an_image_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Told by its content; before, by its name: "clip.jpg: cannot be decoded as an image"."""
    footage, config, out = _one_incident_clip(tmp_path, monkeypatch)
    misnamed = footage.rename(footage.with_name("clip.jpg"))

    assert main(["detect", str(misnamed), "--config", str(config), "--out", str(out)]) == 0

    assert "1 incident(s) written" in capsys.readouterr().out


def test_a_run_whose_source_fails_keeps_the_previous_incidents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a run that has read a frame replaces incidents.jsonl and its contact sheet."""
    footage, config, out = _one_incident_clip(tmp_path, monkeypatch)
    assert main(["detect", str(footage), "--config", str(config), "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("incidents.jsonl", "index.html")}
    assert before["incidents.jsonl"].count(b"\n") == 1
    capsys.readouterr()

    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    assert main(["detect", str(fake), "--config", str(config), "--out", str(out)]) == 1
    assert "notes.mp4" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in before} == before


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--fps", "nan"], "--fps must be a positive number, got nan"),
        (["--fps", "inf"], "--fps must be a positive number, got inf"),
        (["--start-time", "9999-12-31T23:59:59+00:00"], "is not a camera clock's time"),
        (["--out", "FILE"], "cannot make the output folder"),
    ],
)
def test_detect_arguments_out_of_range_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None, flags: list[str], named: str
) -> None:
    footage = tmp_path / "clip.avi"
    still_video(footage, 1, frames=2)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    flags = [str(a_file) if f == "FILE" else f for f in flags]
    out = ["--out", str(tmp_path / "out")] if "--out" not in flags else []
    assert main(["detect", str(footage), "--config", str(SITE), *out, *flags]) == 1
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_the_contact_sheet_escapes_every_text(tmp_path: Path) -> None:
    record = {
        "id": "x",
        "category": "<script>alert(1)</script>",
        "source_id": 'cam"&',
        "first_seen_ts": 0.0,
        "last_seen_ts": 1.0,
        "confidence_median": 0.5,
        "confidence_max": 0.9,
        "evidence": [],
    }
    html = write_contact_sheet(tmp_path, [record], title="<b>run</b>").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "cam&quot;&amp;" in html
    assert "<b>run" not in html
