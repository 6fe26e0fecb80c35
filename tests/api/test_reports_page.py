"""The /reports page as district staff read and print it, in a real browser over a real server, with a
grid whose cells and teams have Chinese names (probe findings, 2026-12-06)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_testkit import LiveServer, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
DEMO_GRID = Path(__file__).resolve().parents[2] / "configs" / "demo-grid.geojson"
A4_WIDTH_PX = 703  # the A4 page inside the report's print margins (186 mm at 96 px to the inch)
# how many lines each text of an element takes, by its text
LINES = """(selector) => [...document.querySelectorAll(selector)].map((node) => {
    const range = document.createRange();
    range.selectNodeContents(node);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    return [node.textContent.trim(), new Set(rects.map((r) => Math.round(r.top))).size];
})"""
FITS = """(id) => { const table = document.getElementById(id);
    const page = table.closest('.card').getBoundingClientRect();
    return table.getBoundingClientRect().right <= page.right + 1; }"""


# the page as loaded on 2000-01-01 at midnight: the time at its pages' foot then
LOADED_LONG_AGO = """() => { const margins = document.getElementById("page-margins");
    margins.textContent = margins.textContent.replace(margins.dataset.printed, "2000-01-01 00:00");
    margins.dataset.printed = "2000-01-01 00:00"; }"""


def _chinese_teams(server: LiveServer) -> None:
    """The demo grid again, each street's team named as a district names it (南头执法一中队 ...)."""
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    numbers = "一二三四五六七八九十"
    teams: dict[str, str] = {}
    for feature in grid["features"]:
        team = feature["properties"]["team"]
        teams.setdefault(team, f"南头执法{numbers[len(teams)]}中队")
        feature["properties"]["team"] = teams[team]
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=grid).status_code == 200


@pytest.mark.slow
@pytest.mark.browser
def test_the_report_keeps_chinese_words_whole_on_screen_and_on_paper(
    make_server: Any, sqlite_url: str
) -> None:
    """Each column heading of the report's tables broke between the characters of a word (发 / 现,
    结 / 案) and each team's name over two or three lines (南头执 / 法一中 / 队), printed worst of all
    in English, whose headings took the room. Chinese words are kept whole now, and the tables still
    fit the A4 page."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    _chinese_teams(server)
    with server.client("device") as device:
        assert post_incident(device, incident_json("a", when="2026-11-25T09:00:00+08:00")).status_code == 201
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for lang in ("zh-CN", "en"):
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                page.context.add_cookies(
                    [
                        {"name": "gp_session", "value": server.tokens["admin"], "url": server.url},
                        {"name": "gp_lang", "value": lang, "url": server.url},
                    ]
                )
                page.goto(server.url + "/reports?range=custom&since=2026-11-23&until=2026-11-29")
                for medium, width in (("screen", ""), ("print", f"{A4_WIDTH_PX}px")):
                    page.emulate_media(media=medium)
                    page.evaluate(f"document.documentElement.style.width = {width!r}")
                    where = f"{lang}, {medium}"
                    teams = page.evaluate(LINES, "#report-cells tbody td:nth-of-type(1)")
                    assert teams and all(lines == 1 for _, lines in teams), (where, teams)
                    assert {team for team, _ in teams} >= {"南头执法一中队", "南头执法二中队"}
                    if lang == "zh-CN":
                        heads = page.evaluate(LINES, "#report-cells thead th, #report-categories thead th")
                        short = [(text, lines) for text, lines in heads if 0 < len(text) <= 5]
                        assert short and all(lines == 1 for _, lines in short), (where, short)
                    for table in ("report-cells", "report-categories"):
                        fits = page.evaluate(FITS, table)
                        assert fits, f"{where}: #{table} runs past its page"
                page.context.close()
        finally:
            browser.close()
    assert problems == []


def test_the_row_of_the_cases_outside_every_cell_is_named_in_the_pages_language(
    make_server: Any, sqlite_url: str
) -> None:
    """The Chinese report named the row of the cases outside every grid cell "网格之外 unassigned": the
    service's own key for them, in English, beside its name. It is named alone now, as a cell a grid
    import removed is still named with its code."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        outside = incident_json("far", when="2026-11-25T09:00:00+08:00", position=(31.5, 121.5))
        assert post_incident(device, outside).status_code == 201
    cookies = {SESSION_COOKIE: server.tokens["admin"], "gp_lang": "zh-CN"}
    with httpx.Client(base_url=server.url, cookies=cookies) as browser:
        page = browser.get(
            "/reports", params={"range": "custom", "since": "2026-11-23", "until": "2026-11-29"}
        )
    assert page.status_code == 200
    row = re.search(r'<th scope="row">\s*网格之外\s*(.*?)</th>', page.text, re.S)
    assert row is not None, page.text
    assert "unassigned" not in row.group(1)


def _pdf_pages(pdf: Path) -> list[str]:
    """The text of each page of a PDF, as Ghostscript reads it."""
    gs = shutil.which("gs")
    if gs is None:
        pytest.fail("no gs to read the printed PDF: apt-get install ghostscript")
    out = pdf.parent / f"{pdf.stem}-page"
    subprocess.run(
        [gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", f"-sOutputFile={out}%d.txt", str(pdf)],
        check=True,
        timeout=60,
    )
    count = len(list(pdf.parent.glob(f"{out.name}*.txt")))
    return [Path(f"{out}{n}.txt").read_text(encoding="utf-8") for n in range(1, count + 1)]


def _pdf_text(pdf: Path) -> str:
    """The text of a PDF, page by page, as Ghostscript reads it."""
    return "".join(_pdf_pages(pdf))


@pytest.mark.slow
@pytest.mark.browser
def test_the_printed_report_says_when_it_was_printed_and_numbers_its_pages(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The printed report had no print date nor page numbers, and its English headings took four or
    five lines each in their narrow columns ("Found / to / review / (median / h)"). Each page's foot
    says when it was printed (the district's local time) and "page N of M"; on paper the long headings
    are short ones, named in a note."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    _chinese_teams(server)
    with server.client("device") as device:
        assert post_incident(device, incident_json("a", when="2026-11-25T09:00:00+08:00")).status_code == 201
    # Ghostscript reads some CJK characters of Chromium's PDF as look-alikes (页 as the radical ⻚, （ as
    # another code): the Chinese foot is matched by its digits and its shape
    words = {
        "en": (r"Printed (\S+ \d\d:\d\d) \(UTC\+08:00\)", r"Page (\d+) of (\d+)"),
        "zh-CN": (r"打印于 (\S+ \d\d:\d\d).UTC\+08:00", r"第 (\d+) .，共 (\d+) ."),
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for lang, (printed, numbered) in words.items():
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.context.add_cookies(
                    [
                        {"name": "gp_session", "value": server.tokens["admin"], "url": server.url},
                        {"name": "gp_lang", "value": lang, "url": server.url},
                    ]
                )
                page.goto(server.url + "/reports?range=custom&since=2026-11-23&until=2026-11-29")
                assert not page.locator("#report-short-heads").is_visible()  # on paper only
                page.emulate_media(media="print")
                page.evaluate(f"document.documentElement.style.width = '{A4_WIDTH_PX}px'")
                heads = page.evaluate(LINES, "#report-cells thead th, #report-categories thead th")
                assert heads and all(lines <= 2 for _, lines in heads), (lang, heads)
                assert page.locator("#report-short-heads").is_visible()  # the short headings named
                page.evaluate(LOADED_LONG_AGO)  # printed now: the time of printing, not of loading
                before = datetime.now(UTC) + timedelta(hours=8)
                pdf = tmp_path / f"report-{lang}.pdf"
                pdf.write_bytes(page.pdf(prefer_css_page_size=True))
                after = datetime.now(UTC) + timedelta(hours=8)
                text = _pdf_text(pdf)
                pages = re.findall(numbered, text)
                assert pages and pages[0][0] == "1", (lang, text[-800:])
                assert [int(n) for n, _ in pages] == list(range(1, int(pages[0][1]) + 1)), (lang, pages)
                stamps = re.findall(printed, text)
                assert len(stamps) == len(pages), (lang, stamps, pages)
                when = datetime.strptime(stamps[0], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
                assert before.replace(second=0, microsecond=0) <= when <= after, (lang, stamps[0])
                page.context.close()
        finally:
            browser.close()


def _grid_of(cells: int) -> dict[str, Any]:
    """A grid of `cells` square cells (about 100 m) in rows of ten near the demo grid, five teams."""
    features = []
    for n in range(cells):
        lat, lon = 30.30 + (n // 10) * 0.001, 120.10 + (n % 10) * 0.001
        ring = [[lon, lat], [lon + 0.001, lat], [lon + 0.001, lat + 0.001], [lon, lat + 0.001], [lon, lat]]
        features.append(
            {
                "type": "Feature",
                "properties": {"id": f"G{n:03d}", "name": f"Street {n:03d}", "team": f"team-{n % 5}"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


@pytest.mark.slow
@pytest.mark.browser
def test_a_long_cell_table_starts_on_the_first_printed_page(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The table of grid cells was kept whole on paper (its card never split), so a district's 60 cells
    moved it to page 2 and left most of page 1 empty. It starts on page 1 now and runs on, its rows
    whole and its headings repeated on each page."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False, grid=False)
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=_grid_of(60)).status_code == 200
    with server.client("device") as device:
        inside = incident_json("a", when="2026-11-25T09:00:00+08:00", position=(30.3005, 120.1005))
        assert post_incident(device, inside).status_code == 201
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["admin"], "url": server.url},
                    {"name": "gp_lang", "value": "en", "url": server.url},
                ]
            )
            page.goto(server.url + "/reports?range=custom&since=2026-11-23&until=2026-11-29")
            page.emulate_media(media="print")
            pdf = tmp_path / "report.pdf"
            pdf.write_bytes(page.pdf(prefer_css_page_size=True))
        finally:
            browser.close()
    pages = _pdf_pages(pdf)
    first = pages[0]
    assert "By grid cell" in first and "Street 000" in first, first
    assert len(pages) >= 2 and "Street 059" in pages[-1]


def _grid_with_long_english_names(cells: int) -> dict[str, Any]:
    """_grid_of's cells, each named in 40 characters of English, with the Chinese teams of a district."""
    grid = _grid_of(cells)
    for n, feature in enumerate(grid["features"]):
        feature["properties"]["name"] = (
            f"Xiaoying Road North Gate Market Blk {n:04d}"
            if n % 2
            else f"Subdistrict Administration Office {n:06d}"
        )
        feature["properties"]["team"] = f"南头执法{'一二三四五'[n % 5]}中队"
    return grid


@pytest.mark.slow
@pytest.mark.browser
def test_a_long_english_cell_name_keeps_one_line_on_paper(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """On the printed English report a grid cell's English name of 40 characters and its code took
    three lines of its narrow column (Subdistrict Administration / Office 000000 / G000, or worse): the
    eleven numbers' English headings left it a sixth of the page. They take two lines now, the code
    after the name, in either language of the page (the printed PDF, read back); the headings keep two
    lines at most and the table fits the A4 page. (One line would need the headings narrower than
    their words.)"""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False, grid=False)
    grid = _grid_with_long_english_names(12)
    names = [feature["properties"]["name"] for feature in grid["features"]]
    assert {len(name) for name in names} == {40}
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=grid).status_code == 200
    with server.client("device") as device:
        inside = incident_json("a", when="2026-11-25T09:00:00+08:00", position=(30.3005, 120.1005))
        assert post_incident(device, inside).status_code == 201
    printed: dict[str, str] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for lang in ("en", "zh-CN"):
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.context.add_cookies(
                    [
                        {"name": "gp_session", "value": server.tokens["admin"], "url": server.url},
                        {"name": "gp_lang", "value": lang, "url": server.url},
                    ]
                )
                page.goto(server.url + "/reports?range=custom&since=2026-11-23&until=2026-11-29")
                page.emulate_media(media="print")
                pdf = tmp_path / f"report-{lang}.pdf"
                pdf.write_bytes(page.pdf(prefer_css_page_size=True))
                printed[lang] = _pdf_text(pdf)
                page.evaluate(f"document.documentElement.style.width = '{A4_WIDTH_PX}px'")
                for table in ("report-cells", "report-categories"):
                    assert page.evaluate(FITS, table), f"{lang}: #{table} runs past its page"
                teams = page.evaluate(LINES, "#report-cells tbody td:nth-of-type(1)")
                assert teams and all(lines == 1 for _, lines in teams), (lang, teams)
                shown = page.evaluate(LINES, "#report-cells tbody th")  # the name, its code after it
                assert len(shown) == len(names) and all(lines <= 2 for _, lines in shown), (lang, shown)
                heads = page.evaluate(LINES, "#report-cells thead th")
                assert heads and all(lines <= 2 for _, lines in heads), (lang, heads)
                page.context.close()
        finally:
            browser.close()
    for lang, text in printed.items():
        lines = [" ".join(unicodedata.normalize("NFKC", line).split()) for line in text.splitlines()]
        taken = {name: _printed_lines(name, lines) for name in names}
        assert all(1 <= n <= 2 for n in taken.values()), (lang, taken, [x for x in lines if "Blk" in x][:6])


def _printed_lines(name: str, lines: list[str]) -> int:
    """How many lines of a printed table a cell's name took (its first column: each part begins its
    line): 1, 2, or 0 for more (or not found)."""
    for at, line in enumerate(lines):
        if line.startswith(name):
            return 1
        for cut in (i for i, ch in enumerate(name) if ch == " "):
            first, rest = name[:cut], name[cut + 1 :]
            if line.startswith(first + " ") and at + 1 < len(lines) and lines[at + 1].startswith(rest):
                return 2
    return 0


@pytest.mark.slow
@pytest.mark.browser
def test_a_report_of_a_period_not_yet_ended_says_so_on_screen_and_on_paper(
    make_server: Any, sqlite_url: str
) -> None:
    """A report of this month, taken on its sixth day, or of next month, looked as final as last
    month's: "Open at the end 1" for a month not begun, printed for a meeting with no word that the
    period was still running. Such a report now says, on screen and on paper, that its period has not
    ended (its figures those of the time it was shown, to change) or not begun; a past one says nothing."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    today = (datetime.now(UTC) + timedelta(hours=8)).date()
    with server.client("device") as device:
        sent = incident_json("a", when=f"{today.isoformat()}T00:10:00+08:00")
        assert post_incident(device, sent).status_code == 201
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    periods = {
        "running": (today - timedelta(days=5), today + timedelta(days=5)),
        "today": (today, today),
        "future": (tomorrow, tomorrow + timedelta(days=30)),
        "past": (yesterday - timedelta(days=6), yesterday),
    }
    said = {
        "en": {"running": "has not ended", "today": "has not ended", "future": "has not begun"},
        "zh-CN": {"running": "尚未结束", "today": "尚未结束", "future": "尚未开始"},
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for lang, words in said.items():
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.context.add_cookies(
                    [
                        {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                        {"name": "gp_lang", "value": lang, "url": server.url},
                    ]
                )
                for name, (first, last) in periods.items():
                    page.emulate_media(media="screen")
                    query = f"range=custom&since={first.isoformat()}&until={last.isoformat()}"
                    page.goto(f"{server.url}/reports?{query}")
                    notice = page.locator("#report-unended")
                    if name == "past":
                        assert notice.count() == 0, (lang, notice.inner_text())
                        continue
                    assert notice.is_visible(), (lang, name)
                    assert words[name] in notice.inner_text(), (lang, name, notice.inner_text())
                    if name != "future":  # the figures are those of the time the page was shown
                        assert today.isoformat() in notice.inner_text(), (lang, name)
                    page.emulate_media(media="print")
                    assert notice.is_visible(), (lang, name, "on paper")
                page.context.close()
        finally:
            browser.close()


def test_the_report_says_how_its_summary_counts_and_links_the_dashboard_of_its_days(
    make_server: Any, sqlite_url: str
) -> None:
    """The same days read "Open at the end 2" on the report and "Open now 0" on the dashboard (a case
    found the week before and still open; one found in the week, rejected after it), and only the
    dashboard said that the two count differently: staff reading the report took one of them for
    wrong. The report's summary now says how it counts, that the dashboard counts otherwise, and links
    the dashboard of the same days, in the page's language."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.client("operator") as operator:
        before = incident_json("before", when="2026-11-18T09:00:00+08:00")
        assert post_incident(device, before).status_code == 201
        found = post_incident(
            device, incident_json("in", when="2026-11-29T23:30:00+08:00", position=(30.3, 120.2))
        )
        assert found.status_code == 201
        rejected = {"to": "rejected", "reason": "false_positive"}
        assert (
            operator.post(f"/api/cases/{found.json()['case_id']}/transitions", json=rejected).status_code
            == 200
        )
    days = {"range": "custom", "since": "2026-11-23", "until": "2026-11-29"}
    said = {"en": ("Open at the end", "dashboard"), "zh-CN": ("期末未结", "统计页")}
    for lang, (open_at_end, dashboard) in said.items():
        cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": lang}
        with httpx.Client(base_url=server.url, cookies=cookies) as browser:
            page = browser.get("/reports", params=days)
            assert page.status_code == 200
            summary = re.search(r'id="report-total".*?</table>(.*?)</section>', page.text, re.S)
            assert summary is not None, page.text
            note = re.search(r'<p [^>]*id="report-summary-note"[^>]*>(.*?)</p>', summary.group(1), re.S)
            assert note is not None, (lang, summary.group(1))
            assert open_at_end in note.group(1) and dashboard in note.group(1), (lang, note.group(1))
            link = re.search(r'href="([^"]*)"', note.group(1))
            assert link is not None, (lang, note.group(1))
            assert link.group(1).replace("&amp;", "&") == "/dashboard?since=2026-11-23&until=2026-11-29"
            assert browser.get(link.group(1).replace("&amp;", "&")).status_code == 200


def _field(page: str, name: str) -> str:
    """The value of the form's input `name` as the page was served."""
    found = re.search(rf'<input type="date" name="{name}" value="([^"]*)"', page)
    assert found is not None, page
    return found.group(1)


def test_a_refused_range_keeps_the_days_typed_and_names_them(make_server: Any, sqlite_url: str) -> None:
    """A reversed range or a bad date on /reports and on /dashboard came back with the form showing last
    week's days (the dashboard's empty), what was typed dropped, and the report's message did not name
    the dates (`gridpatrol report`'s does). The form keeps them now, and the message names them, in
    either language."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    reversed_days = {"since": "2026-11-10", "until": "2026-11-01"}
    said = {
        "en": "The start date 2026-11-10 is after the end date 2026-11-01",
        "zh-CN": "开始日期 2026-11-10 晚于结束日期 2026-11-01",
    }
    for lang, words in said.items():
        cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": lang}
        with httpx.Client(base_url=server.url, cookies=cookies) as browser:
            for path in ("/reports", "/dashboard"):
                page = browser.get(path, params={"range": "custom", **reversed_days})
                assert page.status_code == 200, (path, page.text[:300])
                assert words in page.text, (lang, path)
                typed = (_field(page.text, "since"), _field(page.text, "until"))
                assert typed == ("2026-11-10", "2026-11-01"), (lang, path)
                no_day = {"range": "custom", "since": "2026-11-31", "until": "2026-11-29"}
                bad = browser.get(path, params=no_day)
                assert bad.status_code == 200 and "2026-11-31" in bad.text, (lang, path)
                typed = (_field(bad.text, "since"), _field(bad.text, "until"))
                assert typed == ("2026-11-31", "2026-11-29"), (lang, path)


def test_a_team_without_grid_cells_is_told_so(make_server: Any, sqlite_url: str) -> None:
    """A grid import gave all of team-hubin's cells to team-ziyang: hubin's report showed an empty table
    by grid cell, with no word why. It says now, in one line, that the grid gives the team no cells;
    a team with cells, and the office, are told nothing of it."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    for feature in grid["features"]:
        if feature["properties"]["team"] == "team-hubin":
            feature["properties"]["team"] = "team-ziyang"
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=grid).status_code == 200
    said = {"en": "The grid gives team-hubin no cells now", "zh-CN": "当前网格没有分配给 team-hubin 的网格"}
    days = {"range": "custom", "since": "2026-11-23", "until": "2026-11-29"}
    for lang, words in said.items():
        for login, told in (("hubin", True), ("ziyang", False), ("operator", False)):
            cookies = {SESSION_COOKIE: server.tokens[login], "gp_lang": lang}
            with httpx.Client(base_url=server.url, cookies=cookies) as browser:
                page = browser.get("/reports", params=days)
            assert page.status_code == 200
            line = re.search(r'<p [^>]*id="report-no-cells"[^>]*>(.*?)</p>', page.text, re.S)
            assert (line is not None) == told, (lang, login)
            if line is not None:
                assert words in line.group(1), (lang, line.group(1))
