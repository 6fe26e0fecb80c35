"""The README's main job: `gridpatrol demo` on the embedded default, in a fresh data folder (slow)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def demo(data_dir: Path) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRIDPATROL_") or k == "GRIDPATROL_MODEL_CACHE"
    }
    env["GRIDPATROL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "demo"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )


def test_demo_makes_a_parking_and_a_garbage_case_and_is_idempotent(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "job 1 (patrol vehicle dashcam): done" in first.stdout  # moving traffic: no case
    assert "job 2 (fixed camera at a garbage collection point): done" in first.stdout
    assert "job 3 (fixed camera over a lane): done" in first.stdout
    assert "2 case(s)" in first.stdout
    cases = [line.split() for line in first.stdout.splitlines() if line.strip().startswith("GP-")]
    assert sorted((c[1], c[c.index("camera") + 1]) for c in cases) == [
        ("illegal_parking", "demo-cam-01"),  # the red car in the collection point's access lane
        ("piled_debris", "demo-cam-02"),  # the garbage on the lane's pavement
    ]
    assert (tmp_path / "gridpatrol.db").exists()
    assert oct((tmp_path / "demo-credentials.json").stat().st_mode & 0o777) == "0o600"

    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already uploaded" in again.stdout and "2 case(s)" in again.stdout
