"""The review page's idle pause comes at the idle limit itself, in a real browser over a real server
whose claims last LEASE_S (renewed every third of it) and whose page pauses after IDLE_S without input:
input keeps putting the pause off; once it stops, the page pauses IDLE_S later and its case goes to
another operator at once. Before, the pause waited for the next renewal beat (up to LEASE_S / 3 after
the limit), and the operator's cases stayed held all that while."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.storage.models import ReviewClaim
from tests.api.api_testkit import LiveServer, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
LEASE_S = 30.0  # a renewal beat every 10 s: far later than the idle limit
IDLE_S = 1.5


def _claims(server: LiveServer) -> list[int]:
    """The cases some operator holds a claim on."""
    with server.services.factory() as session:
        return list(session.scalars(select(ReviewClaim.case_id)))


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_pauses_and_lets_go_at_the_idle_limit(make_server: Any, sqlite_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    settings = {"review_lease_s": LEASE_S, "review_idle_s": IDLE_S}
    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings=settings)
    with server.client("device") as device:
        ids = [
            post_incident(
                device, incident_json(f"idle-{i}", position=(30.2741 + i * 0.001, 120.1551))
            ).json()["case_id"]
            for i in range(2)
        ]
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "en", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "/review")
            page.wait_for_selector(f"#current article[data-case-id='{ids[0]}']")
            page.wait_for_selector(f"#upcoming article[data-case-id='{ids[1]}']", state="attached")
            # the operator at the desk for twice the idle limit: the pointer moving puts the pause off
            for step in range(10):
                page.mouse.move(40 + step * 10, 60)
                page.wait_for_timeout(IDLE_S * 1000 / 5)
                assert page.is_hidden("#review-paused"), f"paused after {step} moves"
            page.mouse.move(300, 60)
            left_desk = time.monotonic()
            # at the limit (give or take the browser's timers), long before the next beat (LEASE_S / 3)
            page.wait_for_selector("#review-paused", state="visible", timeout=IDLE_S * 1000 + 2500)
            assert time.monotonic() - left_desk >= IDLE_S - 0.3
            assert "Paused" in page.inner_text("#review-paused")
            # released then: another operator gets both cases without waiting for a lease or a beat
            deadline = time.monotonic() + 2  # the two releases the pause posted land
            while _claims(server):
                assert time.monotonic() < deadline, _claims(server)
                time.sleep(0.05)
            with server.browser("admin") as other:
                card = other.get("/review").text
                assert f'data-case-id="{ids[0]}"' in card, card[:500]
                ahead = other.get(f"/review/next?skip={ids[0]}").text
                assert f'data-case-id="{ids[1]}"' in ahead, ahead[:500]
        finally:
            browser.close()
    assert problems == []
