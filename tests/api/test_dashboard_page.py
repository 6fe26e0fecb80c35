"""The dashboard (GET /dashboard, api/http/static/js/dashboard.js) as district staff read and print it,
in a real browser over a real server (probe findings, 2026-12-06)."""

from __future__ import annotations

import json
import os
from collections import Counter
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


def _list_total(page: Any, href: str) -> int:
    page.goto(href)
    return int(page.get_attribute("#case-total", "data-count"))


@pytest.mark.slow
@pytest.mark.browser
def test_each_count_of_the_dashboard_opens_the_list_of_exactly_those_cases(
    make_server: Any, sqlite_url: str
) -> None:
    """The dashboard's counts were plain numbers: staff who saw "rejected 1" or a cell's 2 had to rebuild
    the list's filters by hand, and the list's own filters could not match (its dates are "seen during",
    the dashboard's "first seen on"; the dashboard leaves out the cases a corrected resend superseded).
    Each count links to the case list with its filters now, and that list holds exactly that many cases:
    a case first seen before the range and seen again in it, and two superseded ones, included."""
    from playwright.sync_api import sync_playwright

    from tests.api.test_period_report import _move, _resent_after_a_failure

    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    # 2026-11-20 (UTC+8): two cases awaiting review and two the service rejected as superseded
    server = _resent_after_a_failure(make_server, sqlite_url)
    cells = _cells()
    with server.client("device") as device, server.client("admin") as admin:
        sent = [
            incident_json(
                "a",
                category="street_vending",
                position=cells[0]["position"],
                when="2026-11-21T09:00:00+08:00",
            ),
            incident_json(
                "b", category="piled_debris", position=cells[1]["position"], when="2026-11-22T23:30:00+08:00"
            ),
            incident_json(
                "c",
                category="street_vending",
                position=cells[1]["position"],
                when="2026-11-22T10:00:00+08:00",
            ),
            incident_json("d", position=None, when="2026-11-21T08:00:00+08:00"),  # outside the grid
            # first seen before the range, seen again in it: the list's "seen during" would list it
            incident_json(
                "e",
                category="piled_debris",
                position=cells[2]["position"],
                when="2026-11-14T09:00:00+08:00",
                until="2026-11-21T09:00:00+08:00",
            ),
        ]
        ids = []
        for incident in sent:
            answer = post_incident(device, incident)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["case_id"])
        _move(admin, ids[0], "rejected", reason="false_positive")
        _move(admin, ids[1], "filed")
        range_utc = {"since": "2026-11-14T16:00:00Z", "until": "2026-11-30T15:59:59Z"}  # at UTC+8
        stats = admin.get("/api/stats", params=range_utc)
        assert stats.json()["total"] == 6, stats.text
        by_cell = admin.get("/api/stats", params={**range_utc, "by": "grid_cell"}).json()["rows"]

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "en", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            dashboard = server.url + "/dashboard?since=2026-11-15&until=2026-11-30"
            page.goto(dashboard)
            page.wait_for_selector("body[data-dash-ready=yes]")
            counts = page.locator(".kpi-value a, .totals td.num a").evaluate_all(
                "links => links.map(a => [(a.closest('.kpi-value') || a.closest('table')).id,"
                " a.closest('tr')?.dataset.key || '', a.href, Number(a.textContent)])"
            )
            # the four figures, and each table's rows and its total
            assert Counter(where for where, *_ in counts) == {
                **dict.fromkeys(("kpi-total", "kpi-open", "kpi-closed", "kpi-rejected"), 1),
                "totals-category": 3 + 1,
                "totals-status": 7 + 1,
                "totals-cell": len({row["grid_cell"] for row in by_cell}) + 1,
                "totals-day": 3 + 1,
            }, counts
            listed = {(where, key, n): _list_total(page, href) for where, key, href, n in counts}
            assert listed == {(where, key, n): n for where, key, _, n in counts}, listed
            shown = {(where, key): n for where, key, _, n in counts}
            # counts that the list's filters alone could not match before
            assert shown[("kpi-rejected", "")] == 1  # the two superseded ones left out, as counted
            assert shown[("kpi-total", "")] == 6
            assert shown[("totals-status", "filed")] == 1
            assert shown[("totals-category", "piled_debris")] == 1  # "e" was first seen before the range
            assert shown[("totals-cell", cells[1]["id"])] == 2 and shown[("totals-cell", "unassigned")] == 1
            assert shown[("totals-day", "2026-11-22")] == 2 and shown[("totals-day", "2026-11-20")] == 2
            # a real click: the cell's count opens its list
            page.goto(dashboard)
            page.wait_for_selector("body[data-dash-ready=yes]")
            page.click(f"#totals-cell tr[data-key='{cells[1]['id']}'] td.num a")
            page.wait_for_url("**/cases?**")
            numbers = page.locator("#case-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.caseId)"
            )
            assert sorted(int(n) for n in numbers) == sorted(ids[1:3])
            assert page.get_attribute("#case-total", "data-count") == "2"
            # and a click on a chart's bar: the status chart's "filed", as its row of the table
            page.goto(dashboard)
            page.wait_for_selector("body[data-dash-ready=yes]")
            x, y = page.evaluate(
                """() => {
                    const node = document.getElementById('chart-status');
                    const chart = echarts.getInstanceByDom(node);
                    const index = node.closest('#dashboard').dataset.statuses.split(',').indexOf('filed');
                    const [x, y] = chart.convertToPixel({ seriesIndex: 0 }, [0.5, index]);
                    const box = node.getBoundingClientRect();
                    return [box.left + x, box.top + y];
                }"""
            )
            page.mouse.click(x, y)
            page.wait_for_url("**/cases?**")
            assert page.get_attribute("#case-total", "data-count") == "1"
            assert page.locator("#case-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.status)"
            ) == ["filed"]
        finally:
            browser.close()
    assert problems == []


def test_the_api_lists_what_api_stats_counts(make_server: Any, sqlite_url: str) -> None:
    """GET /api/cases takes the filters the dashboard's links give the list: first_seen_since and
    first_seen_until (the days /api/stats counts by) and superseded=false (the cases /api/stats leaves
    out); its total is then /api/stats' count, by status as in all."""
    from tests.api.test_period_report import RESENT_DAY, _resent_after_a_failure

    server = _resent_after_a_failure(make_server, sqlite_url)
    with server.client("device") as device:
        early = incident_json("early", position=(30.2841, 120.1651), when="2026-11-19T09:00:00+08:00")
        early["last_seen_wall"] = "2026-11-20T10:00:00+08:00"  # seen again on the day, first seen before it
        assert post_incident(device, early).status_code == 201
    day = {"first_seen_since": RESENT_DAY["since"], "first_seen_until": RESENT_DAY["until"]}
    with server.client("operator") as op:
        stats = op.get("/api/stats", params={**RESENT_DAY, "by": "status"}).json()

        def total(**params: Any) -> int:
            got = op.get("/api/cases", params=params)
            assert got.status_code == 200, got.text
            return int(got.json()["total"])

        assert total(**day, superseded="false") == stats["total"] == 2
        assert {
            row["status"]: total(**day, superseded="false", status=row["status"]) for row in stats["rows"]
        } == {row["status"]: row["count"] for row in stats["rows"]}
        assert total(**day) == 4 and total(**day, superseded="true") == 2  # the superseded two alone
        assert total(since=RESENT_DAY["since"], until=RESENT_DAY["until"]) == 5  # "seen during": "early" too
        backwards = op.get(
            "/api/cases",
            params={"first_seen_since": day["first_seen_until"], "first_seen_until": day["first_seen_since"]},
        )
        assert backwards.status_code == 422
        assert [e["field"] for e in backwards.json()["errors"]] == ["first_seen_until"], backwards.text
