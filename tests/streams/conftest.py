"""The shared dashcam clip for the stream tests."""

from pathlib import Path

import pytest

DASHCAM_FRAMES = 414  # 640x360, 30 fps, ~13.8 s


@pytest.fixture(scope="session")
def dashcam(shared_dir: Path) -> Path:
    path = shared_dir / "footage" / "highway-dashcam-1.mp4"
    if not path.is_file():
        pytest.skip(f"shared clip not found at {path}")
    return path
