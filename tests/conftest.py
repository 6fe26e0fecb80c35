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
    # Argon2id at its default cost takes some 0.3 s a hash on these machines, and each test server's
    # people (tests/api/api_testkit.seed_people) are five hashes and five checks. In the tests' own
    # process passwords are Argon2id at its lowest cost: the same format and code, a thousandth of the
    # time. Servers the tests start as processes (`gridpatrol serve`) keep the default cost; a hash of
    # either cost verifies under the other, and a login rehashes it to its own (tokens.login).
    from argon2 import PasswordHasher

    from api.accounts import accounts

    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared next to the repository: real footage and weights that are never committed."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}")
    return path
