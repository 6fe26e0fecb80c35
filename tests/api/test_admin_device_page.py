"""The admin devices page over a real server: a new device key is shown once, on the answer to the
POST that issued it, and a reload of that page GETs the device list saying what was done (the form is
not sent again: no device added twice, no 409 asking to rotate, the key not shown again). The same
after a rotation. Checked in chromium (a reload is the browser's), the pages' parts over plain HTTP."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_testkit import LiveServer

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture
def server(make_server: Any, sqlite_url: str) -> LiveServer:
    return make_server(sqlite_url, run_webhooks=False)


def _device_call(server: LiveServer, key: str) -> int:
    """A feeder call with a device key: a working key gets the upload's own 4xx, a dead one 401."""
    return httpx.post(
        f"{server.url}/api/uploads", headers={"Authorization": f"Bearer {key}"}, content=b"x", timeout=30
    ).status_code


def test_the_key_page_names_the_list_to_reload_without_the_key(server: LiveServer) -> None:
    with server.browser("admin") as admin:
        shown = admin.post("/admin/devices", data={"name": "patrol-11", "camera": "cam-11"})
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        key = re.search(r'id="secret"[^>]* value="(gpd_[^"]+)"', shown.text)
        assert key is not None
        then = re.search(r'id="secret-card" data-then="([^"]+)"', shown.text)
        assert then is not None and then.group(1) == "/admin/devices?done=added&amp;name=patrol-11"
        assert key.group(1) not in then.group(1)

        listed = admin.get("/admin/devices?done=added&name=patrol-11")
        assert listed.status_code == 200 and key.group(1) not in listed.text
        assert "Device patrol-11 added." in listed.text and 'id="admin-problem"' not in listed.text
        assert listed.text.count('data-device="patrol-11"') == 1


def test_reloading_the_page_that_shows_a_new_key_sends_nothing_again(server: LiveServer) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    from api.http.cookies import SESSION_COOKIE

    problems: list[str] = []
    posts: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies(
                [
                    {"name": SESSION_COOKIE, "value": server.tokens["admin"], "url": server.url},
                    {"name": "gp_lang", "value": "en", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None
            )
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            page.goto(server.url + "/admin/devices")
            page.fill("#add-device input[name=name]", "patrol-12")
            with page.expect_navigation():
                page.click("#add-device button[type=submit]")
            key = page.input_value("#secret")
            assert key.startswith("gpd_") and len(posts) == 1

            answer = page.reload()
            assert answer is not None and answer.status == 200 and answer.request.method == "GET"
            assert len(posts) == 1  # the form was not sent again
            assert page.url == server.url + "/admin/devices?done=added&name=patrol-12"  # no key in it
            assert "Device patrol-12 added." in page.inner_text("#admin-done")
            assert page.locator("#admin-problem").count() == 0 and page.locator("#secret").count() == 0
            assert key not in page.content()
            assert page.locator("tr[data-device='patrol-12']").count() == 1
            assert _device_call(server, key) not in (401, 403)  # the key shown once is the one in force

            with page.expect_navigation():
                page.click("tr[data-device='patrol-12'] button[data-action=rotate]")
            new_key = page.input_value("#secret")
            assert new_key.startswith("gpd_") and new_key != key and len(posts) == 2
            answer = page.reload()
            assert answer is not None and answer.request.method == "GET" and answer.status == 200
            assert len(posts) == 2 and new_key not in page.content()
            assert "patrol-12 has a new key" in page.inner_text("#admin-done")
            assert _device_call(server, key) == 401 and _device_call(server, new_key) not in (401, 403)
        finally:
            browser.close()
    assert problems == []
