"""The worker with the real detection pipeline on real footage (slow; needs detect.pipeline and
the shared clip and weights)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from api.settings import Settings
from tests.api.api_testkit import LiveServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
SITE = REPO / "configs" / "site.yaml"


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("detect.pipeline") is None:
        pytest.skip("detect.pipeline is not there yet")
    if not CLIP.is_file():
        pytest.skip(f"real footage not found at {CLIP}")
    weights = Settings(site_config=SITE)  # the default site config names shared weights
    return make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        settings={"site_config": weights.site_config, "worker_poll_s": 0.1},
    )


def _wait(client, job_id: int, timeout: float = 300) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def test_real_footage_and_corrupt_footage(server: LiveServer) -> None:
    with server.client("device") as device:
        corrupt = device.post(
            "/api/uploads",
            files={"file": ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x13\x37" * 5000, "video/mp4")},
        ).json()
        real = device.post("/api/uploads", files={"file": (CLIP.name, CLIP.read_bytes(), "video/mp4")}).json()
        bad_job = _wait(device, corrupt["id"])
        assert bad_job["status"] == "failed" and bad_job["error"], bad_job
        assert "Traceback" not in bad_job["error"]
        job = _wait(device, real["id"])
        # moving highway traffic: the pipeline runs to the end; no parking case is expected
        assert job["status"] == "done", job
        assert job["progress"] == 1.0
