"""The grid map (GET /map, api/http/static/js/map.js) with awkward data, in a real browser over a real
server (probe findings, 2026-12-06)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from shapely.geometry import shape

from api.cases.workflow import OPEN_STATUSES
from tests.api.api_testkit import LiveServer, evidence_files, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
DEMO_GRID = Path(__file__).resolve().parents[2] / "configs" / "demo-grid.geojson"
A4_WIDTH_PX = 703  # the A4 page inside the print margins (186 mm at 96 px to the inch)
# whether the map's drawing lies inside its card, on the page as wide as the paper
MAP_FITS = """() => { const card = document.querySelector(".map-card").getBoundingClientRect();
    return [...document.querySelectorAll("#grid-map canvas")].every(
        (canvas) => canvas.getBoundingClientRect().right <= card.right + 1); }"""
CASE_LIMIT = 500  # the open cases map.js draws as points
OPEN_PANEL_LIMIT = 200  # the open cases map.js lists in a cell's panel


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


def _open_map(server: LiveServer, page: Any, lang: str) -> None:
    page.context.add_cookies(
        [
            {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
            {"name": "gp_lang", "value": lang, "url": server.url},
        ]
    )
    page.goto(server.url + "/map")
    page.wait_for_selector("body[data-map-ready=yes]")


def _panel(page: Any, cell: str) -> tuple[list[int], str]:
    """A click on a cell: the case ids its panel lists, in order, and the panel's text."""
    page.evaluate(f"window.gpMap.selectCell({cell!r})")
    page.wait_for_selector(f"#cell-panel[data-cell={cell!r}] #cell-cases[data-total]")
    ids = page.locator("#cell-cases li[data-case-id]").evaluate_all(
        "items => items.map(li => li.dataset.caseId)"
    )
    return [int(i) for i in ids], page.inner_text("#cell-cases")


def _post_cases(device: httpx.Client, numbers: range, *, day: str) -> list[int]:
    """Cases of one cell of team-ziyang, each its own (apart), seen on a day a minute after another, in
    batches (one request for many incidents): their ids."""
    cases: list[int] = []
    for first in range(numbers.start, numbers.stop, 50):
        parts = []
        for i in range(first, min(first + 50, numbers.stop)):
            data = incident_json(
                f"case-{i}",
                when=f"{day}T{i // 60 % 24:02d}:{i % 60:02d}:00+08:00",
                position=(30.2500 + (i % 20) * 2e-5, 120.16 + (i // 20) * 2e-5),
            )
            parts += [("incident", (None, json.dumps(data).encode(), "application/json"))]
            parts += evidence_files(data)
        sent = device.post("/api/incidents/batch", files=parts)
        assert sent.status_code == 200, sent.text
        cases += [result["outcome"]["case_id"] for result in sent.json()["results"]]
    return cases


def _browser_page(pw: Any, problems: list[str]) -> Any:
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
    page = browser.new_context().new_page()
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    return page


@pytest.mark.slow
@pytest.mark.browser
def test_a_cells_open_case_is_listed_before_its_many_newer_closed_ones(
    make_server: Any, sqlite_url: str
) -> None:
    """The panel listed a cell's latest 100 cases whatever their status: an open case seen before 100
    newer ones that were rejected since was not listed at all, though it is what the district acts on.
    Open cases come first, then the latest closed or rejected (20 of them, saying of how many)."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"merge_radius_m": 0.0})
    rejected = 101
    with server.client("device") as device, server.client("operator") as operator:
        old = post_incident(
            device,
            incident_json("old-open", when="2026-11-01T09:00:00+08:00", position=(30.25001, 120.16001)),
        )
        assert old.status_code == 201, old.text
        old_id = old.json()["case_id"]
        cell = operator.get(f"/api/cases/{old_id}").json()["grid_cell"]
        assert cell
        for case_id in _post_cases(device, range(rejected), day="2026-11-20"):
            case = operator.get(f"/api/cases/{case_id}").json()
            assert case["grid_cell"] == cell
            moved = operator.post(
                f"/api/cases/{case_id}/transitions", json={"to": "rejected", "reason": "false_positive"}
            )
            assert moved.status_code == 200, moved.text
    problems: list[str] = []
    with sync_playwright() as pw:
        page = _browser_page(pw, problems)
        _open_map(server, page, "en")
        ids, text = _panel(page, cell)
        assert ids[0] == old_id
        assert len(ids) == 1 + 20
        assert page.get_attribute("#cell-cases", "data-open-total") == "1"
        assert page.get_attribute("#cell-cases", "data-total") == str(1 + rejected)
        assert f"The latest 20 are listed, of {rejected} closed or rejected." in text, text

        # more open cases than the panel lists: it says so and links to the list of them all
        with server.client("device") as device:
            _post_cases(device, range(rejected, rejected + OPEN_PANEL_LIMIT), day="2026-11-21")
        _open_map(server, page, "en")
        ids, text = _panel(page, cell)
        assert len(ids) == OPEN_PANEL_LIMIT + 20 and old_id not in ids
        assert page.get_attribute("#cell-cases", "data-open-total") == str(OPEN_PANEL_LIMIT + 1)
        listed, total = OPEN_PANEL_LIMIT, OPEN_PANEL_LIMIT + 1
        assert f"Only the {listed} open cases seen most recently are listed here, of {total}." in text, text
        link = page.get_attribute("#cell-cases li[data-more=open] a", "href")
        assert link == f"/cases?grid_cell={cell}&" + "&".join(f"status={s}" for s in OPEN_STATUSES)
    assert problems == []


@pytest.mark.slow
@pytest.mark.browser
def test_english_counts_say_1_open_case_and_2_open_cases(make_server: Any, sqlite_url: str) -> None:
    """The map said "1 open cases" (its summary, the panel of a cell); Chinese has one form."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"merge_radius_m": 0.0})
    problems: list[str] = []
    with sync_playwright() as pw, server.client("device") as device:
        page = _browser_page(pw, problems)
        first = post_incident(device, incident_json("first", position=(30.25001, 120.16001)))
        assert first.status_code == 201, first.text
        with server.client("operator") as operator:
            cell = operator.get(f"/api/cases/{first.json()['case_id']}").json()["grid_cell"]
        _open_map(server, page, "en")
        assert page.inner_text("#map-summary") == "36 cells, 1 of them with open cases; 1 open case in all"
        assert _panel(page, cell)[1].startswith("1 open case\n")

        second = post_incident(device, incident_json("second", position=(30.25003, 120.16001)))
        assert second.status_code == 201, second.text
        _open_map(server, page, "en")
        assert page.inner_text("#map-summary") == "36 cells, 1 of them with open cases; 2 open cases in all"
        assert _panel(page, cell)[1].startswith("2 open cases\n")

        _open_map(server, page, "zh-CN")
        assert page.inner_text("#map-summary") == "36 个网格，其中 1 个有未结案件；未结案件共 2 件"
        assert _panel(page, cell)[1].startswith("未结案件 2 件\n")
    assert problems == []


ZIYANG = "DEMO-ZIYANG-04"  # team-ziyang
HUBIN = "DEMO-HUBIN-04"  # team-hubin


def _a_cell_removed_with_open_cases(server: LiveServer) -> None:
    """Three open cases in ZIYANG and one in HUBIN; then a grid import (forced) without ZIYANG: its
    cases keep their cell, which no feature of the grid draws any more."""
    from tests.api.api_testkit import DEMO_GRID

    with server.client("device") as device, server.client("admin") as admin:
        for i, position in enumerate([(30.2710, 120.1560), (30.2710, 120.1610), (30.2750, 120.1560)]):
            made = post_incident(device, incident_json(f"kept-{i}", position=position))
            assert made.status_code == 201 and made.json()["case_id"] == i + 1, made.text
        assert post_incident(device, incident_json("hubin", position=(30.2741, 120.1340))).status_code == 201
        grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
        grid["features"] = [f for f in grid["features"] if f["properties"]["id"] != ZIYANG]
        assert admin.put("/api/grids", params={"force": "true"}, json=grid).status_code == 200


def test_the_grid_map_counts_the_open_cases_of_a_removed_cell(make_server: Any, sqlite_url: str) -> None:
    """/api/grids counted the open cases per cell of the grid and outside every cell: those of a cell
    a later grid import removed (the cases keep it) were in neither, so the map's open cases (1) fell
    short of the dashboard's (/api/stats: 4) without a word. They are counted as `removed`."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    _a_cell_removed_with_open_cases(server)
    with server.client("operator") as op, server.client("ziyang") as ziyang:
        grid = op.get("/api/grids").json()
        stats = op.get("/api/stats", params={"by": "status"}).json()
        team = ziyang.get("/api/grids").json()
    assert grid["removed"] == {"open_cases": 3, "cells": [ZIYANG]}, grid["removed"]
    drawn = sum(f["properties"]["open_cases"] for f in grid["features"]) + grid["unassigned"]["open_cases"]
    open_now = sum(r["count"] for r in stats["rows"] if r["status"] not in ("closed", "rejected"))
    assert drawn + grid["removed"]["open_cases"] == open_now == 4
    assert team["removed"] == {"open_cases": 3, "cells": [ZIYANG]}  # their team's cases, as every count
    with server.client("hubin") as hubin:
        assert hubin.get("/api/grids").json()["removed"] == {"open_cases": 0, "cells": []}


@pytest.mark.slow
@pytest.mark.browser
def test_the_map_page_counts_the_open_cases_of_a_removed_cell(make_server: Any, sqlite_url: str) -> None:
    """The map's summary and its table of cells count the open cases of a removed cell, and say where
    they are; they showed 1 open case in all beside the dashboard's 4."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    _a_cell_removed_with_open_cases(server)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for lang, said in (
                ("en", "(3 in cells removed from the grid)"),
                ("zh-CN", "（3 件在已从网格中移除的网格内）"),
            ):
                context = browser.new_context()
                context.add_cookies(
                    [
                        {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                        {"name": "gp_lang", "value": lang, "url": server.url},
                    ]
                )
                page = context.new_page()
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                page.goto(server.url + "/map")
                page.wait_for_selector("body[data-map-ready=yes]")
                assert page.get_attribute("#map-summary", "data-open-total") == "4"
                assert said in page.inner_text("#map-summary"), page.inner_text("#map-summary")
                assert page.inner_text("#open-total") == "4"
                row = page.locator('tr[data-cell="removed"]')
                assert row.get_attribute("data-open") == "3" and ZIYANG in row.inner_text()
                context.close()
        finally:
            browser.close()
    assert problems == []


@pytest.mark.slow
@pytest.mark.browser
def test_the_maps_legend_names_the_category_of_each_points_colour(make_server: Any, sqlite_url: str) -> None:
    """The map coloured its case points by category (orange, violet, green) while its legend showed one
    grey dot, "案件位置": nobody reading the map, or a printout of it, could tell what a colour meant.
    The legend names each category with its colour."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        for i, category in enumerate(("illegal_parking", "piled_debris", "illegal_parking")):
            sent = incident_json(f"p{i}", category=category, position=(30.2500 + i * 1e-3, 120.16))
            assert post_incident(device, sent).status_code == 201
    problems: list[str] = []
    with sync_playwright() as pw:
        page = _browser_page(pw, problems)
        try:
            _open_map(server, page, "zh-CN")
            legend, series = page.evaluate(
                """() => { const option = echarts.getInstanceByDom(document.getElementById('grid-map'))
                    .getOption();
                  return [option.legend[0].data,
                          option.series.filter((s) => s.type === 'scatter')
                            .map((s) => [s.name, s.itemStyle.color, s.data.length])]; }"""
            )
        finally:
            page.context.browser.close()
    assert sorted(series) == [["乱停乱放", "#d9480f", 2], ["乱堆乱放", "#2b8a3e", 1]]
    shown = {entry["name"]: entry["itemStyle"]["color"] for entry in legend}
    assert shown == {name: colour for name, colour, _ in series}
    assert problems == []


@pytest.mark.slow
@pytest.mark.browser
def test_the_printed_map_leaves_out_the_menu_and_totals_its_table_once(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The map printed with the menu above it, the map cut off at the paper's edge, and its table's
    total at the foot of every page the table ran over. On paper it has no menu, the map scaled to
    the A4 page's width, and the total once, after the last row."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    gs = shutil.which("gs")
    if gs is None:
        pytest.fail("no gs to read the printed PDF: apt-get install ghostscript")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    features = json.loads(DEMO_GRID.read_text(encoding="utf-8"))["features"]
    with server.client("device") as device:  # an open case in every cell: a table of some pages
        for i, feature in enumerate(features):
            inside = shape(feature["geometry"]).representative_point()
            made = post_incident(device, incident_json(f"cell-{i}", position=(inside.y, inside.x)))
            assert made.status_code == 201, made.text
    pdf = tmp_path / "map.pdf"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "en", "url": server.url},
                ]
            )
            page.goto(server.url + "/map")
            page.wait_for_selector("body[data-map-ready=yes]")
            assert page.locator("#cell-table tbody tr").count() == len(features)
            pdf.write_bytes(page.pdf(prefer_css_page_size=True))
            page.emulate_media(media="print")
            page.evaluate(f"document.documentElement.style.width = '{A4_WIDTH_PX}px'")
            assert page.evaluate(MAP_FITS), "the map runs past the paper's edge"
            assert not page.locator(".topbar").is_visible()
            assert page.evaluate("getComputedStyle(document.querySelector('#cell-table tfoot')).display") == (
                "table-row-group"
            )
        finally:
            browser.close()
    text = pdf.with_suffix(".txt")
    subprocess.run(
        [gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", f"-sOutputFile={text}", str(pdf)],
        check=True,
        timeout=60,
    )
    printed = text.read_text(encoding="utf-8")
    assert "Log out" not in printed  # the menu
    assert len(re.findall(r"^\s*Total\s+\d+\s*$", printed, re.M)) == 1, printed[-1500:]
