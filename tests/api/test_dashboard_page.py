"""The dashboard (GET /dashboard, api/http/static/js/dashboard.js) as district staff read and print it,
in a real browser over a real server (probe findings, 2026-12-06)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from shapely.geometry import shape

from tests.api.api_testkit import LiveServer, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
DEMO_GRID = Path(__file__).resolve().parents[2] / "configs" / "demo-grid.geojson"
CELLS = 12  # more rows than the totals tables show on screen without scrolling


def _cells() -> list[dict[str, Any]]:
    """The first CELLS cells of the demo grid: id, name and a point inside."""
    features = json.loads(DEMO_GRID.read_text(encoding="utf-8"))["features"][:CELLS]
    cells = []
    for feature in features:
        point = shape(feature["geometry"]).representative_point()
        cells.append({**feature["properties"], "position": (point.y, point.x)})
    return cells


@pytest.fixture
def dashboard(make_server: Any, sqlite_url: str) -> Iterator[tuple[LiveServer, Any]]:
    """A server with one case in each of CELLS cells, each first seen on its own day, and a browser
    page (1366 x 768, Chinese) on its dashboard, the charts drawn."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        for day, cell in enumerate(_cells(), start=1):
            when = f"2026-11-{day:02d}T09:00:00+08:00"
            sent = incident_json(f"c{day}", position=cell["position"], when=when)
            assert post_incident(device, sent).status_code == 201
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "zh-CN", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "/dashboard?since=2026-11-01&until=2026-11-30")
            page.wait_for_selector("body[data-dash-ready=yes]")
            yield server, page
        finally:
            browser.close()
    assert problems == []


@pytest.mark.slow
@pytest.mark.browser
def test_a_printed_dashboard_shows_its_charts_and_tables_whole(dashboard: tuple[LiveServer, Any]) -> None:
    """Printed for the weekly meeting, the dashboard came out with the menu and the filter form on top,
    its charts cut off at the right (drawn for the screen's width, wider than the paper) and its tables
    of totals cut off after nine rows (a scroll box on screen): 12 cells and 12 days showed 9. On paper
    the menu and the form go, the charts are drawn for the paper's width and every row is printed."""
    _server, page = dashboard
    charts = """() => [...document.querySelectorAll('.chart')].map((chart) => {
        const box = chart.closest('figure').getBoundingClientRect();
        const canvas = chart.querySelector('canvas');
        const shown = canvas.getBoundingClientRect();
        const drawn = canvas.width / window.devicePixelRatio;
        return [chart.id, Math.round(shown.right - box.right), Math.round(shown.width), Math.round(drawn)];
    })"""
    # as the browser prints: beforeprint, then the page laid out for the paper (no resize event)
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator("#dash-filter").is_visible()
    drawn = page.evaluate(charts)
    assert len(drawn) == 4
    # drawn for the A4 page (not a screen's drawing shrunk), within their boxes
    assert all(beyond <= 0 and 250 < width == at <= 720 for _, beyond, width, at in drawn), drawn
    # a page laid out narrower still (another paper, wider margins): scaled down, never cut off
    page.evaluate("document.documentElement.style.width = '500px'")
    shrunk = page.evaluate(charts)
    assert all(beyond <= 0 and 100 < width < at for _, beyond, width, at in shrunk), shrunk
    for table in ("totals-cell", "totals-day"):
        rows = page.locator(f"#{table} tbody tr")
        assert rows.count() == CELLS
        assert rows.last.evaluate(
            "row => { const box = row.closest('.scroll').getBoundingClientRect();"
            " return row.getBoundingClientRect().bottom <= box.bottom + 1; }"
        ), f"{table}: its last row is cut off on paper"
    page.evaluate("document.documentElement.style.width = ''")
    page.emulate_media(media="screen")
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert all(width == at > 1000 for name, _, width, at in page.evaluate(charts) if name == "chart-trend")


@pytest.mark.slow
@pytest.mark.browser
def test_the_dashboard_names_each_cell_as_the_map_and_the_report_do(
    dashboard: tuple[LiveServer, Any],
) -> None:
    """The chart of the cells with most cases and the table of totals named a cell by its code alone
    (0440305004002), where the map and the periodic report name it (蛇口街道第2网格): staff know their
    cells by name. Both name it now, the table with its code beside."""
    _server, page = dashboard
    cells = _cells()
    axis = page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-cells')).getOption().yAxis[0].data"
    )
    assert sorted(axis) == sorted(cell["name"] for cell in cells)
    for cell in cells:
        shown = page.inner_text(f"#totals-cell tr[data-key={cell['id']!r}] td:first-child")
        assert cell["name"] in shown and cell["id"] in shown, shown


def test_the_dashboard_says_its_figures_are_statuses_now_and_names_a_rejection_as_the_report_does(
    make_server: Any, sqlite_url: str
) -> None:
    """For one month the dashboard showed "未结 116" and the report "期末未结 155" without saying why (the
    dashboard counts each case at its status now, the report at the period's end), and the report
    called a rejection "不予立案" where every other page says "驳回". The dashboard says what it counts
    now, in both languages, and the report names a rejection as the other pages do."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        assert post_incident(device, incident_json("a", when="2026-11-25T09:00:00+08:00")).status_code == 201
    week = {"range": "custom", "since": "2026-11-23", "until": "2026-11-29"}
    for lang, words in (
        ("en", ("at their status now", "By status now", "Open now", "the periodic report")),
        ("zh-CN", ("按案件当前的状态统计", "按当前状态", "当前未结", "定期报表")),
    ):
        cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": lang}
        with httpx.Client(base_url=server.url, cookies=cookies) as browser:
            dashboard = browser.get("/dashboard")
            report = browser.get("/reports", params=week)
        assert dashboard.status_code == 200 and report.status_code == 200
        head = dashboard.text.split('class="dash-head"')[1].split("</section>")[0]
        assert words[0] in head and words[3] in head, (lang, head)
        assert all(word in dashboard.text for word in words[1:3]), lang
        if lang == "zh-CN":
            assert '<th scope="row">驳回</th>' in report.text and "不予立案" not in report.text
    catalogue = Path(__file__).resolve().parents[2] / "api" / "http" / "i18n" / "zh-CN"
    for part in catalogue.glob("*.json"):
        assert "不予立案" not in part.read_text(encoding="utf-8"), part.name
