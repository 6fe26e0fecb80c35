"""Browser tests: a real `gridpatrol serve` on a free port, a fresh data folder holding the real
evidence of the pipeline (the demo's footage, run once per session), and Debian's chromium driven by
Playwright. Every page a test opens fails the test on a browser console error or a failed request,
and is screenshotted into build/test-artifacts/ for a person to look at."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
ARTIFACTS = REPO / "build" / "test-artifacts"
CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "correct-horse-battery"

# people the tests log in as: (username, role, team)
PEOPLE = (
    ("op1", "operator", None),
    ("op2", "operator", None),
    ("ziyang1", "enforcement", "team-ziyang"),
    ("nanxing1", "enforcement", "team-nanxing"),
    ("viewer1", "viewer", None),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/web/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gridpatrol(*args: str, data: Path, timeout: float = 120, stdin: str | None = None) -> str:
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(data))
    env.pop("GRIDPATROL_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "-q", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
    assert result.returncode == 0, f"gridpatrol {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder after `gridpatrol demo`: the demo grid, devices and the pipeline's real cases
    (a parked car in DEMO-ZIYANG-04, piled garbage in DEMO-NANXING-03), with their evidence."""
    if not (SHARED / "footage" / "highway-dashcam-1.mp4").is_file():
        pytest.skip("../shared/footage is not there")
    data = tmp_path_factory.mktemp("web-demo") / "data"
    _gridpatrol("demo", data=data, timeout=1800)
    for username, role, team in PEOPLE:
        extra = ["--team", team] if team else []
        _gridpatrol(
            "user", "add", username, "--role", role, *extra, "--password-stdin", data=data, stdin=PASSWORD
        )
    return data


@dataclass
class Site:
    base_url: str
    data: Path
    process: subprocess.Popen[bytes]
    admin_password: str
    log: Path

    def api(self, username: str) -> httpx.Client:
        """An API client logged in as this person (bearer token)."""
        password = self.admin_password if username == "demo-admin" else PASSWORD
        client = httpx.Client(base_url=self.base_url, timeout=30)
        r = client.post("/api/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return client

    def gridpatrol(self, *args: str) -> str:
        return _gridpatrol(*args, data=self.data)


@contextmanager
def serve(demo_data: Path, tmp_path_factory: pytest.TempPathFactory, **settings: str) -> Iterator[Site]:
    """`gridpatrol serve` (API, pages and the in-process worker) over a copy of the demo's data;
    `settings`: more GRIDPATROL_* variables (review_lease_s="3": GRIDPATROL_REVIEW_LEASE_S=3)."""
    data = tmp_path_factory.mktemp("web-site") / "data"
    shutil.copytree(demo_data, data)
    port = _free_port()
    env = dict(
        os.environ,
        GRIDPATROL_DATA_DIR=str(data),
        GRIDPATROL_AUTH_CACHE_S="10",
        GRIDPATROL_WEBHOOK_ALLOW_HOSTS="127.0.0.1",  # test_admin's webhook posts to 127.0.0.1:9
        **{f"GRIDPATROL_{name.upper()}": value for name, value in settings.items()},
    )
    env.pop("GRIDPATROL_DATABASE_URL", None)
    log = data / "serve.log"
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
    admin_password = json.loads((data / "demo-credentials.json").read_text())["admin_password"]
    try:
        yield Site(base, data, process, admin_password, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def site(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The service with its default settings (a test module may define its own `site` with `serve`)."""
    with serve(demo_data, tmp_path_factory) as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: apt-get install chromium (set GRIDPATROL_TEST_CHROMIUM elsewhere)"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Watched:
    """A browser page whose console errors and failed requests fail the test."""

    page: Any
    base_url: str
    name: str
    problems: list[str] = field(default_factory=list)
    shots: int = 0
    allowed_statuses: set[int] = field(default_factory=set)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.name}-{self.shots:02d}-{label}")
        path = ARTIFACTS / f"{safe}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.goto("/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit].primary")
        self.page.wait_for_load_state("networkidle")


def _watch(page: Any, base_url: str, name: str) -> Watched:
    watched = Watched(page, base_url, name)

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        # chromium also logs each 4xx/5xx answer as a console error: one the test provoked on purpose
        # (an allowed status) is not a problem; any other is already reported by on_response
        status = re.search(r"status of (\d{3})", message.text)
        if status and message.text.startswith("Failed to load resource"):
            return
        watched.problems.append(f"console error: {message.text}")

    def on_response(response: Any) -> None:
        if response.status >= 400 and response.status not in watched.allowed_statuses:
            watched.problems.append(f"HTTP {response.status} {response.request.method} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.problems.append(f"page error: {exc}"))
    page.on(
        "requestfailed",
        lambda req: watched.problems.append(f"request failed: {req.method} {req.url} {req.failure}"),
    )
    page.on("response", on_response)
    page.on("dialog", lambda dialog: (watched.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return watched


@pytest.fixture
def open_page(browser: Any, site: Site, request: pytest.FixtureRequest) -> Iterator[Any]:
    """open_page(viewport=(w, h)) -> a Watched page in a fresh browser context (its own cookies)."""
    contexts: list[Any] = []
    pages: list[Watched] = []

    def make(viewport: tuple[int, int] = (1366, 900), *, mobile: bool = False, label: str = "") -> Watched:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            is_mobile=mobile,
            has_touch=mobile,
            locale="zh-CN",
            service_workers="block",
        )
        contexts.append(context)
        name = f"{request.node.name}{'-' + label if label else ''}"
        watched = _watch(context.new_page(), site.base_url, name)
        pages.append(watched)
        return watched

    yield make
    problems = [p for w in pages for p in w.problems]
    for context in contexts:
        context.close()
    assert not problems, "browser problems:\n" + "\n".join(problems)
