"""/docs in chromium: Swagger UI from gridpatrol's own files renders every operation of the API, with no
failed request, no request to another host and no console error (a Content-Security-Policy violation
is one). A bare `gridpatrol serve` over an empty data folder is enough: no demo data is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.web.conftest import REPO, _free_port, _watch


@pytest.fixture(scope="module")
def bare_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("web-docs") / "data"
    port = _free_port()
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(data))
    env.pop("GRIDPATROL_DATABASE_URL", None)
    log = Path(str(data) + "-serve.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gridpatrol serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_docs_render_every_operation_offline(browser: Any, bare_site: str) -> None:
    operations = sum(len(item) for item in httpx.get(f"{bare_site}/openapi.json").json()["paths"].values())
    context = browser.new_context(viewport={"width": 1366, "height": 900}, service_workers="block")
    try:
        watched = _watch(context.new_page(), bare_site, "docs")
        hosts: list[str] = []
        watched.page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
        watched.goto("/docs")
        watched.page.wait_for_selector(".opblock", timeout=30_000)
        watched.page.wait_for_load_state("networkidle")
        assert watched.page.locator(".opblock").count() == operations
        assert watched.page.locator(".opblock-summary-path", has_text="/api/cases/{case_id}").count() >= 1
        # an operation opens, with its parameters
        watched.page.locator(".opblock-summary", has_text="/api/cases/{case_id}/transitions").first.click()
        watched.page.wait_for_selector(".opblock.is-open .parameters", timeout=10_000)
        watched.shot("docs")
        assert set(hosts) == {urlsplit(bare_site).netloc}, hosts
        assert not watched.problems, watched.problems
    finally:
        context.close()
