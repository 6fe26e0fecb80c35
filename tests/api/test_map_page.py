"""The grid map (GET /map, api/http/static/js/map.js) with awkward data, in a real browser over a real
server (probe findings, 2026-12-06)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.api.api_testkit import LiveServer, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
CASE_LIMIT = 500  # the open cases map.js draws as points


@pytest.mark.slow
@pytest.mark.browser
def test_a_map_with_more_open_cases_than_it_draws_says_so(make_server: Any, sqlite_url: str) -> None:
    """A district with more open cases than the map draws as points (the latest 500) showed 500
    points beside a summary of 501 open cases, without a word: the missing case seemed not to be
    anywhere. The summary says how many of how many are drawn; the cell counts still count all."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    # every sighting its own case (no merging by distance), all in one cell of team-ziyang
    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"merge_radius_m": 0.0})
    total = CASE_LIMIT + 1
    with server.client("device") as device:
        for i in range(total):
            position = (30.2500 + (i % 20) * 2e-5, 120.16 + (i // 20) * 2e-5)
            created = post_incident(device, incident_json(f"crowd-{i}", position=position))
            assert created.status_code == 201, created.text
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "zh-CN", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "/map")
            page.wait_for_selector("body[data-map-ready=yes]")
            assert page.get_attribute("#grid-map", "data-points") == str(CASE_LIMIT)
            assert page.get_attribute("#map-summary", "data-open-total") == str(total)
            assert page.get_attribute("#map-summary", "data-points-limited") == str(CASE_LIMIT)
            summary = page.inner_text("#map-summary")
            assert f"地图仅标出最近发现的 {CASE_LIMIT} 件未结案件的位置（共 {total} 件）" in summary, summary
            assert page.inner_text("#open-total") == str(total)
        finally:
            browser.close()
    assert problems == []
