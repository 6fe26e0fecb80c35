"""`gridpatrol serve` from a folder without configs/site.yaml (and no --config or
GRIDPATROL_SITE_CONFIG): it started with no site configuration and said nothing, and box labelling on
the case page was off with no word why. It now logs a warning naming where it looked and how to give
one; the repository's demo config is not taken in its place. A real server (subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.api_testkit import free_port

REPO = Path(__file__).resolve().parents[2]


def _serve(folder: Path, *options: str) -> str:
    """Run `gridpatrol serve --no-worker` in `folder` until it answers, then stop it: its log."""
    env = {k: v for k, v in os.environ.items() if k != "GRIDPATROL_SITE_CONFIG"}
    env.update(PYTHONPATH=str(REPO), GRIDPATROL_DATA_DIR=str(folder / "data"))
    port = free_port()
    log_path = folder / f"serve-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--no-worker", "--port", str(port), *options],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log_path.read_text(encoding="utf-8")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text(encoding="utf-8")
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(30)
    return log_path.read_text(encoding="utf-8")


def test_serve_without_a_site_config_warns_where_it_looked_and_how_to_give_one(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = _serve(elsewhere)
    warnings = [line for line in log.splitlines() if " WARNING " in line and "site configuration" in line]
    assert len(warnings) == 1, log
    warning = warnings[0]
    assert f"no site configuration found at {elsewhere.resolve() / 'configs' / 'site.yaml'}" in warning
    assert "box labelling" in warning and "--config FILE" in warning and "GRIDPATROL_SITE_CONFIG" in warning

    given = _serve(elsewhere, "--config", str(REPO / "configs" / "site.yaml"))
    assert "site configuration" not in given, given


def test_serve_refuses_a_config_file_that_is_not_there(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), GRIDPATROL_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--config", "nowhere.yaml"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "gridpatrol serve: error: --config: nowhere.yaml: no such config file\n"
    assert not (tmp_path / "data").exists()  # refused before anything was made


def _worker(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`gridpatrol worker --once` in `folder`, on a database `gridpatrol db upgrade` made there."""
    env = {k: v for k, v in os.environ.items() if k != "GRIDPATROL_SITE_CONFIG"}
    env.update(PYTHONPATH=str(REPO), GRIDPATROL_DATA_DIR=str(folder / "data"))
    env.pop("GRIDPATROL_DATABASE_URL", None)
    made = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "upgrade"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "worker", "--once", *options],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_worker_alone_warns_without_a_site_config_and_takes_one_with_config(tmp_path: Path) -> None:
    """`gridpatrol worker` with no site config said nothing at its start, and every upload's job then
    failed on the missing file: it now logs serve's warning, naming its own --config."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _worker(elsewhere)
    assert done.returncode == 0 and done.stdout == "no job waiting\n", done.stderr
    warnings = [line for line in done.stderr.splitlines() if " WARNING " in line and "site config" in line]
    assert len(warnings) == 1, done.stderr
    warning = warnings[0]
    assert f"no site configuration found at {elsewhere.resolve() / 'configs' / 'site.yaml'}" in warning
    assert "jobs fail" in warning and "box labelling" not in warning
    assert "`gridpatrol worker --config FILE` or GRIDPATROL_SITE_CONFIG=FILE" in warning

    given = _worker(elsewhere, "--config", str(REPO / "configs" / "site.yaml"))
    assert given.returncode == 0 and "site config" not in given.stderr, given.stderr

    missing = _worker(elsewhere, "--config", "nowhere.yaml")
    assert missing.returncode == 1
    assert missing.stderr == "gridpatrol worker: error: --config: nowhere.yaml: no such config file\n"
