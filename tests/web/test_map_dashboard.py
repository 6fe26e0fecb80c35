"""The dashboard and the grid map in a real browser: drawn on canvas (ECharts, nothing from another
host) with the numbers of /api/stats and /api/grids, filters as a GET form, a real click on a grid
cell listing its cases, case points and a patrol track drawn, the visibility of each role, and both
languages."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from api.cases.workflow import OPEN_STATUSES, STATUSES
from tests.web.conftest import Site


def _page(open_page: Any, username: str, **kwargs: Any) -> Any:
    watched = open_page(**kwargs)
    watched.login(username)
    return watched


def _sums(stats: dict[str, Any]) -> dict[str, Counter[str]]:
    """/api/stats's rows summed by category, status, grid cell and day."""
    sums: dict[str, Counter[str]] = {key: Counter() for key in ("category", "status", "grid_cell", "day")}
    for row in stats["rows"]:
        for key, counter in sums.items():
            counter[row[key]] += row["count"]
    return sums


def _table(p: Any, table_id: str) -> dict[str, int]:
    """A table of totals as the page shows it: key -> count (rows with a count of 0 left out)."""
    rows = p.locator(f"#{table_id} tbody tr[data-key]").evaluate_all(
        "rows => rows.map(r => [r.dataset.key, r.querySelector('td.num').textContent])"
    )
    return {key: int(count) for key, count in rows if int(count)}


def _open_dashboard(page: Any, query: str = "") -> Any:
    page.goto("/dashboard" + query)
    page.page.wait_for_selector("body[data-dash-ready=yes]")
    return page.page


def _assert_dashboard_shows(p: Any, stats: dict[str, Any]) -> None:
    sums = _sums(stats)
    assert _table(p, "totals-category") == {k: n for k, n in sums["category"].items() if n}
    assert _table(p, "totals-status") == {k: n for k, n in sums["status"].items() if n}
    assert _table(p, "totals-cell") == {k: n for k, n in sums["grid_cell"].items() if n}
    assert _table(p, "totals-day") == {k: n for k, n in sums["day"].items() if n}
    for table in ("totals-category", "totals-status", "totals-cell", "totals-day"):
        assert p.inner_text(f"#{table} tfoot td.num") == str(stats["total"])
    assert p.inner_text("#kpi-total") == str(stats["total"])
    assert p.inner_text("#kpi-open") == str(sum(n for s, n in sums["status"].items() if s in OPEN_STATUSES))
    assert p.inner_text("#kpi-closed") == str(sums["status"]["closed"])
    assert p.get_attribute("#dashboard", "data-total") == str(stats["total"])


def test_dashboard_shows_the_numbers_of_api_stats(open_page: Any, site: Site) -> None:
    stats = site.api("op1").get("/api/stats").json()
    assert stats["total"] >= 2  # the demo's parked car and piled garbage
    page = _page(open_page, "op1", label="op1")
    p = _open_dashboard(page)
    for chart in ("trend", "category", "status", "cells"):
        assert p.locator(f"#chart-{chart} canvas").count() >= 1, chart
    _assert_dashboard_shows(p, stats)
    assert p.locator("#totals-status tbody tr[data-key]").count() == len(STATUSES)
    assert p.inner_text("#totals-category tr[data-key=illegal_parking] td") == "乱停乱放"
    assert p.is_hidden("#dash-empty")
    page.shot("dashboard")

    # the filter form is a GET form: a category chosen and applied
    p.select_option("select[name=category]", "piled_debris")
    p.click("#dash-filter button[type=submit]")
    p.wait_for_url(re.compile(r"category=piled_debris"))
    p.wait_for_selector("body[data-dash-ready=yes]")
    _assert_dashboard_shows(p, site.api("op1").get("/api/stats", params={"category": "piled_debris"}).json())
    assert p.inner_text("#kpi-total") == "1"
    page.shot("dashboard-debris")

    # dates are local days (UTC+8): the range of the days (UTC+8) the demo's cases were first seen holds
    # them all, a day long ago none. The days come from the cases, not the clock: a site made before local
    # midnight and tested after it still holds yesterday's cases.
    cases = site.api("op1").get("/api/cases", params={"limit": 100}).json()["items"]
    days = sorted(
        (datetime.fromisoformat(c["first_seen"]).astimezone(UTC) + timedelta(hours=8)).date().isoformat()
        for c in cases
    )
    assert len(cases) == stats["total"]
    p = _open_dashboard(page, f"?since={days[0]}&until={days[-1]}")
    assert p.inner_text("#kpi-total") == str(stats["total"])
    day_before = (datetime.fromisoformat(days[0]) - timedelta(days=1)).date().isoformat()
    p = _open_dashboard(page, f"?since={day_before}&until={day_before}")
    assert p.inner_text("#kpi-total") == "0"
    p = _open_dashboard(page, "?since=2001-01-01&until=2001-01-31")
    assert p.inner_text("#kpi-total") == "0" and p.is_visible("#dash-empty") and p.is_hidden(".charts")
    assert p.input_value("input[name=since]") == "2001-01-01"

    # a bad date or category is named on the page, never an error page
    p = _open_dashboard(page, "?since=2026-13-45&category=fireworks")
    errors = p.locator(".flash.error[role=alert]").all_inner_texts()
    assert errors == [
        "开始日期：“2026-13-45”不是有效日期（年-月-日），已忽略",
        "没有“fireworks”这个类别，已显示全部类别",
    ]
    assert p.inner_text("#kpi-total") == str(stats["total"])


def test_on_a_phone_the_category_ring_names_its_categories_whole(open_page: Any, site: Site) -> None:
    """The ring by category labels each slice with its category and count; on a phone those labels
    were cut to '...' for want of room beside the ring."""
    for lang, names in (("zh-CN", {"乱停乱放", "乱堆乱放"}), ("en", {"Illegal parking", "Piled debris"})):
        page = _page(open_page, "viewer1", viewport=(390, 844), mobile=True, label=f"viewer1-{lang}")
        page.page.context.add_cookies([{"name": "gp_lang", "value": lang, "url": site.base_url}])
        p = _open_dashboard(page)
        texts = p.evaluate(
            """() => echarts.getInstanceByDom(document.getElementById('chart-category')).getZr().storage
                 .getDisplayList().filter(e => e.style && typeof e.style.text === 'string')
                 .map(e => e.style.text)"""
        )
        assert not [t for t in texts if "..." in t], texts
        assert names <= set(texts), texts
        page.shot(f"ring-{lang}")


def test_dashboard_of_an_enforcement_officer_counts_their_team_only(open_page: Any, site: Site) -> None:
    stats = site.api("ziyang1").get("/api/stats").json()
    assert {row["grid_cell"] for row in stats["rows"]} == {"DEMO-ZIYANG-04"}
    page = _page(open_page, "ziyang1", label="ziyang1", viewport=(390, 844), mobile=True)
    p = _open_dashboard(page)
    _assert_dashboard_shows(p, stats)
    page.shot("dashboard-mobile")


def _open_map(page: Any) -> Any:
    page.goto("/map")
    page.page.wait_for_selector("body[data-map-ready=yes]")
    return page.page


def _click_cell(p: Any, cell: str) -> None:
    """A real mouse click on the cell's centre in the canvas (where ECharts draws it)."""
    spot = p.evaluate(f"window.gpMap.cellPixel({cell!r})")
    box = p.locator("#grid-map").bounding_box()
    p.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])


def _panel_ids(p: Any, cell: str) -> list[int]:
    p.wait_for_selector(f"#cell-panel[data-cell={cell!r}] #cell-cases[data-total]")
    ids = p.locator("#cell-cases li[data-case-id]").evaluate_all(
        "items => items.map(li => li.dataset.caseId)"
    )
    return [int(i) for i in ids]


def test_map_shows_the_open_cases_of_each_cell_and_a_click_lists_them(open_page: Any, site: Site) -> None:
    api = site.api("op1")
    grids = api.get("/api/grids").json()
    stats = api.get("/api/stats").json()
    open_total = sum(row["count"] for row in stats["rows"] if row["status"] in OPEN_STATUSES)
    busy = {
        f["id"]: f["properties"]["open_cases"] for f in grids["features"] if f["properties"]["open_cases"]
    }
    assert busy == {"DEMO-ZIYANG-04": 1, "DEMO-NANXING-03": 1}

    page = _page(open_page, "op1", label="op1")
    p = _open_map(page)
    assert p.locator("#grid-map canvas").count() >= 1
    assert p.get_attribute("#map-summary", "data-open-total") == str(open_total)
    assert p.get_attribute("#map-summary", "data-cells") == str(len(grids["features"]))
    assert p.inner_text("#map-summary") == f"36 个网格，其中 2 个有未结案件；未结案件共 {open_total} 件"
    rows = p.locator("#cell-table tbody tr[data-cell]").evaluate_all(
        "rows => rows.map(r => [r.dataset.cell, Number(r.dataset.open)])"
    )
    assert dict(rows) == busy
    assert p.inner_text("#open-total") == str(open_total)
    positioned = [c for c in api.get("/api/cases").json()["items"] if c["position"]]
    assert p.get_attribute("#grid-map", "data-points") == str(len(positioned))

    for cell in ("DEMO-ZIYANG-04", "DEMO-NANXING-03"):
        _click_cell(p, cell)
        items = api.get("/api/cases", params={"grid_cell": cell}).json()["items"]
        expected = [c["id"] for c in items]
        assert _panel_ids(p, cell) == expected and expected
        for item in items:
            case_id = item["id"]
            assert (
                p.get_attribute(f"#cell-cases li[data-case-id='{case_id}'] a", "href") == f"/cases/{case_id}"
            )
            # last seen at the site's offset (UTC+8), as the other pages show times, not the browser's
            seen = datetime.fromisoformat(item["last_seen"]).astimezone(UTC) + timedelta(hours=8)
            shown = p.inner_text(f"#cell-cases li[data-case-id='{case_id}'] .when")
            assert shown == f"最后发现：{seen:%Y-%m-%d %H:%M}", shown
        assert cell in p.inner_text("#cell-meta")
        assert p.locator(f"#cell-table tr.selected[data-cell={cell!r}]").count() == 1
    page.shot("map-clicked")

    # a cell without cases says so; the table's buttons pick a cell like a click does
    _click_cell(p, "DEMO-HUBIN-01")
    assert _panel_ids(p, "DEMO-HUBIN-01") == []
    assert p.inner_text("#cell-cases") == "此网格内没有您可查看的案件。"
    p.click("#cell-table button[data-cell=DEMO-ZIYANG-04]")
    assert len(_panel_ids(p, "DEMO-ZIYANG-04")) == 1


def test_map_of_an_enforcement_officer_shows_their_teams_cases_only(open_page: Any, site: Site) -> None:
    page = _page(open_page, "nanxing1", label="nanxing1", viewport=(390, 844), mobile=True)
    p = _open_map(page)
    assert p.get_attribute("#map-summary", "data-open-total") == "1"
    assert p.locator("#cell-table tbody tr[data-cell]").evaluate_all(
        "rows => rows.map(r => r.dataset.cell)"
    ) == ["DEMO-NANXING-03"]
    _click_cell(p, "DEMO-ZIYANG-04")  # another team's cell: its case is not theirs to see
    assert _panel_ids(p, "DEMO-ZIYANG-04") == []
    _click_cell(p, "DEMO-NANXING-03")
    assert len(_panel_ids(p, "DEMO-NANXING-03")) == 1
    page.shot("map-mobile")


def _still_clip(path: Path, frames: int = 5) -> bytes:
    """A still camera's clip: one textured 320x180 image, `frames` times at 1 fps (MJPG AVI)."""
    image = np.random.default_rng(7).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 1.0, (320, 180))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path.read_bytes()


def _zigzag_gpx(start: datetime, fixes: int) -> bytes:
    """A patrol van's GPX across the demo grid (lon 120.13..120.18, lat 30.25..30.29), 1 s apart."""
    points = []
    for i in range(fixes):
        share = i / (fixes - 1)
        lon = 120.133 + 0.044 * share
        lat = 30.270 + 0.012 * math.sin(share * 3 * math.pi)
        when = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        points.append(f'<trkpt lat="{lat:.6f}" lon="{lon:.6f}"><time>{when}</time></trkpt>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="van" '
        'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
        + "".join(points)
        + "</trkseg></trk></gpx>\n"
    ).encode()


def test_map_draws_a_patrol_track_for_staff_only(open_page: Any, site: Site, tmp_path: Path) -> None:
    api = site.api("op1")
    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    r = api.post(
        "/api/uploads",
        files={
            "file": ("van.avi", _still_clip(tmp_path / "van.avi"), "video/x-msvideo"),
            "track": ("van.gpx", _zigzag_gpx(start, 1200), "application/gpx+xml"),
        },
        data={"camera_id": "patrol-01", "start_time": start.isoformat()},
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 300
    while (job := api.get(f"/api/jobs/{r.json()['id']}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "done", job
    upload_id = job["upload"]["id"]
    shape = api.get(f"/api/uploads/{upload_id}/track").json()
    assert len(shape["points"]) == 500

    page = _page(open_page, "op1", label="tracks")
    p = _open_map(page)
    assert p.get_attribute("#grid-map", "data-track-count") == "1"
    item = p.locator(f"#track-list li[data-upload='{upload_id}']")
    assert "patrol-01" in item.inner_text() and "500 个轨迹点" in item.inner_text()
    assert "'van.gpx'" in item.inner_text()  # the track by the name it was sent as
    page.shot("map-track")

    viewer = _page(open_page, "viewer1", label="viewer")  # no track requests (403) for a viewer
    p = _open_map(viewer)
    assert p.locator("#track-list").count() == 0
    assert p.get_attribute("#map-summary", "data-open-total") == "2"


def test_english_versions_render(open_page: Any, site: Site) -> None:
    stats = site.api("viewer1").get("/api/stats").json()
    page = _page(open_page, "viewer1", label="en")
    p = _open_map(page)
    p.click("button[lang=en]")
    p.wait_for_selector("body[data-map-ready=yes]")
    assert p.get_attribute("html", "lang") == "en"
    assert p.inner_text("h1") == "Grid map"
    assert p.inner_text("#map-summary").startswith("36 cells, 2 of them with open cases")
    _click_cell(p, "DEMO-ZIYANG-04")
    assert len(_panel_ids(p, "DEMO-ZIYANG-04")) == 1
    assert "Pending review" in p.inner_text("#cell-cases")
    page.shot("map-en")
    p = _open_dashboard(page)
    assert p.inner_text("h1") == "Dashboard"
    assert p.inner_text("#totals-category tr[data-key=illegal_parking] td") == "Illegal parking"
    _assert_dashboard_shows(p, stats)
    page.shot("dashboard-en")
