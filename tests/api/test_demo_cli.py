"""`gridpatrol demo`'s own errors, without a model: the site config it finds or is given, failed
jobs as a failed command, and kept credentials it cannot read (fast; the main job is test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import CommandError
from api.cli.demo import SITE_CONFIG, _site_config
from api.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _clip(path: Path) -> Path:
    """A 2 s clip of grey frames (a patrol vehicle's footage that shows nothing)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a folder outside the repository, with a fresh data folder and no GRIDPATROL_*."""
    for key in ("GRIDPATROL_SITE_CONFIG", "GRIDPATROL_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_site_config_is_found_from_elsewhere(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _site_config(None) == SITE_CONFIG.resolve() == (REPO / "configs" / "site.yaml").resolve()
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "site.yaml").write_text(SITE_CONFIG.read_text(encoding="utf-8"))
    assert _site_config(None) == elsewhere / "configs" / "site.yaml"  # the one here comes first
    monkeypatch.setenv("GRIDPATROL_SITE_CONFIG", str(elsewhere / "nope.yaml"))
    with pytest.raises(CommandError, match=r"^GRIDPATROL_SITE_CONFIG: .*nope.yaml: no such config file$"):
        _site_config(None)
    with pytest.raises(CommandError, match=r"^--config: .*other.yaml: no such config file$"):
        _site_config(elsewhere / "other.yaml")
    (elsewhere / "bad.yaml").write_text("model: {weights: x.pt}\nnot_a_key: 1\n")
    with pytest.raises(CommandError, match=r"(?s)^--config: .*bad.yaml: .*not_a_key: unknown key"):
        _site_config(elsewhere / "bad.yaml")


def test_failed_jobs_fail_the_demo(
    elsewhere: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = elsewhere / "site.yaml"
    config.write_text(
        SITE_CONFIG.read_text(encoding="utf-8").replace("../models/gridpatrol-n.pt", "/nonexistent/w.pt")
    )
    code = main(["-q", "demo", "--footage", str(_clip(elsewhere / "clip.mp4")), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "0 case(s)" in out
    assert err.strip().splitlines() == [
        "gridpatrol demo: error: 3 of 3 job(s) failed: job 1 (patrol vehicle dashcam), job 2 (fixed camera "
        "at a garbage collection point), job 3 (fixed camera over a lane) (see above)"
    ]


@pytest.mark.parametrize("kept", ["{bad", '["a list"]', '{"admin_password": 5}'])
def test_unreadable_kept_credentials_are_named_and_kept(
    kept: str, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = elsewhere / "data" / "demo-credentials.json"
    creds.parent.mkdir()
    creds.write_text(kept)
    footage = elsewhere / "footage.mp4"
    footage.write_bytes(b"not looked at before the credentials")
    assert main(["-q", "demo", "--footage", str(footage)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"gridpatrol demo: error: {creds}: ")
    assert "remove it together with the database, or restore it" in err
    assert creds.read_text() == kept  # nothing stored is lost
