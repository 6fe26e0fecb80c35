"""`gridpatrol serve --workers 2`: two server processes on one port and one data folder. Incidents
posted to both at once (single and batched) become cases with one custody chain; the background
threads run in one process only, and when that process is killed the one that replaces it takes
them over. A real server (subprocess) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.api_testkit import free_port, incident_json, jpeg_bytes

REPO = Path(__file__).resolve().parents[2]
BACKGROUND = "runs the background threads"


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _children(pid: int) -> list[int]:
    """The server processes uvicorn started (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:  # gone meanwhile
            continue
    return found


def _wait(condition, what: str, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _parts(data: dict) -> list[tuple[str, tuple[str | None, bytes, str]]]:
    files = {"annotated": jpeg_bytes(data["id"] + "a"), "crop": jpeg_bytes(data["id"] + "c")}
    parts: list[tuple[str, tuple[str | None, bytes, str]]] = [
        ("incident", (None, json.dumps(data).encode(), "application/json"))
    ]
    return parts + [("files", (f"{role}.jpg", body, "image/jpeg")) for role, body in files.items()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc for the server's processes")
def test_two_server_processes_share_the_work_and_the_background(tmp_path: Path, db_url: str) -> None:
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(tmp_path / "data"), GRIDPATROL_DATABASE_URL=db_url)
    _cli(env, "db", "upgrade")
    _cli(env, "grid", "import", str(REPO / "configs" / "demo-grid.geojson"))
    key = _cli(env, "device", "add", "van-1").strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--no-worker", "--workers", "2", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def log() -> str:
        return log_path.read_text(errors="replace")

    try:
        _wait(
            lambda: _healthy(base) and len(_children(server.pid)) == 2 and BACKGROUND in log(), "2 processes"
        )
        assert log().count(BACKGROUND) == 1

        singles = [incident_json(f"w-{i}", position=(30.2741 + i * 0.001, 120.1551)) for i in range(40)]
        batches = [
            [
                incident_json(f"wb-{b}-{i}", position=(30.2741 + i * 0.001, 120.1571 + b * 0.001))
                for i in range(8)
            ]
            for b in range(5)
        ]

        def post_single(data: dict) -> int:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                return c.post("/api/incidents", files=_parts(data)).status_code

        def post_batch(group: list[dict]) -> list[int]:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                answer = c.post("/api/incidents/batch", files=[p for d in group for p in _parts(d)])
                assert answer.status_code == 200, answer.text
                return [e["status_code"] for e in answer.json()["results"]]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post_single, singles))
            batch_statuses = list(pool.map(post_batch, batches))
        assert statuses == [201] * 40 and batch_statuses == [[201] * 8] * 5

        # the process with the background threads killed: its replacement takes them over
        holder = next(pid for pid in _children(server.pid) if _holds_lock(pid, tmp_path / "data"))
        os.kill(holder, signal.SIGKILL)
        _wait(lambda: log().count(BACKGROUND) == 2, "the replacement to take the background threads")
        _wait(lambda: _healthy(base) and len(_children(server.pid)) == 2, "2 processes again")
        assert post_single(incident_json("w-after", position=(30.2841, 120.1651))) == 201
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)

    verified = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", "evidence", "verify"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "81 custody entries" in verified.stdout + verified.stderr, verified.stdout + verified.stderr


def _holds_lock(pid: int, data_dir: Path) -> bool:
    """Whether the process has the data folder's background lock file open (the holder keeps it)."""
    lock = (data_dir / "serve-background.lock").resolve()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if Path(os.readlink(fd)) == lock:
                return True
        except OSError:
            continue
    return False
