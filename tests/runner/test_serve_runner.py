"""The embedded default: `gridpatrol serve --runner` analyses the registered live cameras on the same
machine (a local runner with its own key, Ray in a child process) and stops them with the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.api_testkit import free_port
from tests.streams.test_rtsp import PASSWORD, rtsp_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="ray is not installed (pip install 'ray>=2.40')")

REPO = Path(__file__).resolve().parents[2]
ZONES = [{"id": "all", "kind": "no_parking", "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}]


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serve_runner_brings_a_camera_online_and_stops_with_the_server(
    rtsp_server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = rtsp_server
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(tmp_path / "data"), RAY_USAGE_STATS_ENABLED="0")
    env.pop("GRIDPATROL_DATABASE_URL", None)
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(ZONES))
    _cli(env, "db", "upgrade")
    _cli(env, "camera", "add", "cam-1", "--url", url, "--zones-file", str(zones))
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--no-worker", "--runner", "--port", str(free_port())],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        listing = ""
        while time.monotonic() < deadline and "online" not in listing:
            assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            time.sleep(2)
            listing = _cli(env, "camera", "list")
        assert "online" in listing and "local-runner" in listing, listing
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
        log.close()
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert PASSWORD not in text
    assert "gpd_" not in text  # the runner's key is in no log line
