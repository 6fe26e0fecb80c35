"""Fixtures shared by every test package."""

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Exports made on first use (model.backend: auto) go to a folder of this run, never the user's
    # ~/.cache; one export serves every test of the run.
    if "GRIDPATROL_MODEL_CACHE" not in os.environ:
        os.environ["GRIDPATROL_MODEL_CACHE"] = tempfile.mkdtemp(prefix="gridpatrol-model-cache-")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared next to the repository: real footage and weights that are never committed."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path
