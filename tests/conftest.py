"""Fixtures shared by every test package."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared next to the repository: real footage and weights that are never committed."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path
