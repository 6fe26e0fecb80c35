"""The suspected-parking page (GET /chalk-marks, api.http.pages.chalk) over a real server: chalk marks
made by posting suspected incidents from two vans, listed latest seen first with their status (the
confirmed ones linking to their case; an earlier run's, which a corrected resend superseded, as
superseded), filtered, paged; staff only; bad filters named on the page;
the sealed original never in the HTML. One browser check that the page renders in zh-CN with its
thumbnails loaded."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from api.accounts.accounts import create_device, create_user
from api.accounts.tokens import login
from tests.api.api_testkit import LiveServer, evidence_files, incident_json
from tests.api.test_chalking import chalk_for_job, corrected_upload_s_jobs

LAT, LON = 30.2741, 120.1551  # in the demo grid's cell DEMO-ZIYANG-04
CST = timezone(timedelta(hours=8))  # the cameras' offset
NOW = datetime.now(UTC).replace(microsecond=0)
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))


def picture(seed: int) -> bytes:
    """A real (decodable) small JPEG, different per seed."""
    image = np.full((48, 64, 3), (seed * 40 % 256, 90, 200 - seed * 30 % 200), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def suspected(
    incident_id: str, *, ago: timedelta, north_m: float, plate: str | None, files: dict[str, bytes]
) -> dict[str, Any]:
    """One pass, seen for 5 s ending `ago` before now, `north_m` metres north of (LAT, LON)."""
    last = (NOW - ago).astimezone(CST)
    data = incident_json(
        incident_id,
        position=(LAT + north_m / 111_195.0, LON),
        when=(last - timedelta(seconds=5)).isoformat(),
        until=last.isoformat(),
        plate=plate,
        files=files,
    )
    return dict(data, suspected=True, plate_confidence=0.87 if plate else None)


def post(client: httpx.Client, data: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    r = client.post("/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data, files))
    assert r.status_code == 201, r.text
    return dict(r.json())


def page_client(server: LiveServer, who: str, lang: str = "en") -> httpx.Client:
    """A browser-like client: the session cookie, asking for HTML."""
    client = server.client(cookies={"gp_session": server.tokens[who], "gp_lang": lang})
    client.headers["Accept"] = "text/html"
    return client


def rows(html: str) -> list[tuple[int, str]]:
    """(mark id, status) of each row, in order."""
    return [(int(i), s) for i, s in re.findall(r'data-mark-id="(\d+)" data-status="(\w+)"', html)]


@pytest.fixture
def marks(make_server: Any, sqlite_url: str) -> tuple[LiveServer, dict[str, Any]]:
    """Four marks: A (with a sealed original) confirmed by B from the other van; C open; D expired."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.services.factory() as session:
        _, key = create_device(session, name="van-2", camera_id="demo-cam-02")
        session.commit()
    server.tokens["device2"] = key
    files = {
        "A": {"annotated": picture(1), "crop": picture(2), "original": picture(3)},
        "B": {"annotated": picture(4), "crop": picture(5)},
        "C": {"annotated": picture(6), "crop": picture(7)},
        "D": {"crop": picture(8)},
    }
    passes = {  # mark: (van, hours ago, metres north, plate)
        "A": ("device", 2.0, 0.0, "ZJA12345"),
        "B": ("device2", 1.5, 4.0, "ZJA12345"),
        "C": ("device", 1.0, 800.0, "ZJB99999"),
        "D": ("device", 48.0, 1600.0, None),
    }
    answers = {}
    for name, (van, hours, north_m, plate) in passes.items():
        data = suspected(
            f"{van}:{name}", ago=timedelta(hours=hours), north_m=north_m, plate=plate, files=files[name]
        )
        with server.client(van) as client:
            answers[name] = post(client, data, files[name])
    a, b = answers["A"], answers["B"]
    assert a["case_id"] is None and b["case_id"] is not None
    ids = {name: answer["chalk_mark"] for name, answer in answers.items()}
    sha = {
        (k, role): hashlib.sha256(body).hexdigest() for k, fs in files.items() for role, body in fs.items()
    }
    return server, {"ids": ids, "sha": sha, "case": (b["case_id"], b["case_number"])}


def test_the_page_lists_filters_and_guards_the_marks(marks: tuple[LiveServer, dict[str, Any]]) -> None:
    server, m = marks
    ids, sha = m["ids"], m["sha"]
    case_id, case_number = m["case"]
    with page_client(server, "operator") as operator, page_client(server, "admin") as admin:
        r = operator.get("/chalk-marks")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        # latest seen first; A and B confirmed together, C open, D (two days old) expired
        expected = [
            (ids["C"], "open"),
            (ids["B"], "confirmed"),
            (ids["A"], "confirmed"),
            (ids["D"], "expired"),
        ]
        assert rows(html) == expected
        assert html.count(f'href="/cases/{case_id}"') == 2 and f"Case {case_number}" in html
        assert (
            html.count('<span class="muted small case-status">Pending review</span>') == 2
        )  # the case's now
        assert '<a href="/chalk-marks" aria-current="page">Suspected parking</a>' in html
        thumb = f"/api/chalk-marks/{ids['C']}/evidence/{sha[('C', 'crop')]}"
        assert f'src="{thumb}"' in html
        got = operator.get(thumb)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert "ZJB99999" in html and "(0.87)" in html and "demo-cam-02" in html and "van-2" in html
        assert "DEMO-ZIYANG-04" in html and f"{LAT:.6f}, {LON:.6f}" in html
        assert "(+08:00)" in html  # the camera's offset
        # the sealed original: never on the page, not even for an admin (the API lists it to admins)
        listed = admin.get("/api/chalk-marks", headers={"Accept": "application/json"}).json()
        assert any(e["role"] == "original" for item in listed["items"] for e in item["evidence"])
        for who in (operator, admin):
            assert sha[("A", "original")] not in who.get("/chalk-marks").text

        def listed_ids(**params: Any) -> list[int]:
            r = operator.get("/chalk-marks", params=params)
            assert r.status_code == 200 and 'id="filter-problems"' not in r.text, r.text
            return [i for i, _ in rows(r.text)]

        assert listed_ids(status="open") == [ids["C"]]
        assert listed_ids(status="expired") == [ids["D"]]
        assert listed_ids(status="confirmed") == [ids["B"], ids["A"]]
        assert listed_ids(plate="zja12345") == [ids["B"], ids["A"]]
        window = {
            "since": (NOW - timedelta(hours=1, minutes=45)).astimezone(CST).strftime("%Y-%m-%dT%H:%M"),
            "until": (NOW - timedelta(minutes=30)).astimezone(CST).strftime("%Y-%m-%dT%H:%M"),
        }
        assert listed_ids(**window) == [ids["C"], ids["B"]]  # typed in the site's offset (+08:00)
        paged = operator.get("/chalk-marks", params={"per_page": 1, "page": 2}).text
        assert [i for i, _ in rows(paged)] == [ids["B"]]
        assert 'href="/chalk-marks?page=1&amp;per_page=1"' in paged and "page=3&amp;per_page=1" in paged

        # a bad value: named on the page, ignored, never a 500
        bad = operator.get("/chalk-marks", params={"since": "yesterday", "status": "chalked", "page": "x"})
        assert bad.status_code == 200
        problems = bad.text.split('id="filter-problems"')[1].split("</div>")[0]
        assert "Last seen from: “yesterday” is not a valid time" in problems
        assert "“chalked” is not a status" in problems and "Page: “x” is not a valid number" in problems
        assert len(rows(bad.text)) == 4

    with page_client(server, "viewer") as viewer, page_client(server, "ziyang") as enforcement:
        assert viewer.get("/chalk-marks").status_code == 200
        refused = enforcement.get("/chalk-marks")
        assert refused.status_code == 403 and "Not allowed" in refused.text
        assert (
            'href="/chalk-marks"' not in refused.text
            and 'href="/chalk-marks"' not in enforcement.get("/cases").text
        )
    with server.client() as anonymous:
        assert anonymous.get("/chalk-marks", follow_redirects=False).status_code == 303


def test_a_mark_whose_case_was_rejected_shows_as_rejected(marks: tuple[LiveServer, dict[str, Any]]) -> None:
    """An operator rejects the case marks A and B confirmed, as a false positive: both rows show the
    case-rejected badge, still linked to the case, with why it was rejected, in English and in
    Chinese; the status filter offers it and lists them alone; confirmed no longer does. Before, they
    showed as confirmed, linking to a rejected case."""
    server, m = marks
    ids = m["ids"]
    case_id, case_number = m["case"]
    with page_client(server, "operator") as operator, page_client(server, "operator", "zh-CN") as zh:
        with server.client("operator") as api:
            moved = api.post(
                f"/api/cases/{case_id}/transitions", json={"to": "rejected", "reason": "false_positive"}
            )
        assert moved.status_code == 200, moved.text
        html = operator.get("/chalk-marks").text
        assert rows(html) == [
            (ids["C"], "open"),
            (ids["B"], "rejected"),
            (ids["A"], "rejected"),
            (ids["D"], "expired"),
        ]
        for mark in ("A", "B"):
            row = html.split(f'data-mark-id="{ids[mark]}"')[1].split("</tr>")[0]
            assert '<span class="badge rejected">Case rejected</span>' in row
            assert f'href="/cases/{case_id}"' in row and f"Case {case_number}" in row
            assert '<span class="muted small case-status">Rejected: False positive</span>' in row
        assert '<option value="rejected">Case rejected</option>' in html
        assert "whose case was rejected since" in html  # the intro says what it means
        zh_html = zh.get("/chalk-marks").text
        assert '<span class="badge rejected">案件已驳回</span>' in zh_html and "已驳回：误报" in zh_html
        assert "其案件后来被驳回的" in zh_html

        def listed(status: str) -> tuple[list[tuple[int, str]], str]:
            r = operator.get("/chalk-marks", params={"status": status})
            assert r.status_code == 200 and 'id="filter-problems"' not in r.text, r.text
            return rows(r.text), r.text

        rejected, html = listed("rejected")
        assert rejected == [(ids["B"], "rejected"), (ids["A"], "rejected")]
        assert '<option value="rejected" selected>Case rejected</option>' in html
        assert listed("confirmed")[0] == []
        assert listed("open")[0] == [(ids["C"], "open")]


@pytest.fixture
def corrected(make_server: Any, sqlite_url: str) -> tuple[LiveServer, dict[str, int]]:
    """Two marks: one a van posted an hour ago (open), one of an upload's earlier run (revision 0) that
    a resend corrected (revision 1; made as tests/api/test_chalking.py makes it): superseded. One
    operator, no grid: lighter than `marks`."""
    server: LiveServer = make_server(
        sqlite_url, run_worker=False, run_webhooks=False, people=False, grid=False
    )
    with server.services.factory() as session:
        _, server.tokens["device"] = create_device(session, name="van-1", camera_id="demo-cam-01")
        create_user(session, username="operator", password="password-operator", role="operator")
        session.commit()
    server.tokens["operator"] = login(
        server.services.factory, username="operator", password="password-operator", ttl_h=1
    )
    files = {"crop": picture(1)}
    data = suspected("device:open", ago=timedelta(hours=1), north_m=800.0, plate=None, files=files)
    with server.client("device") as client:
        opened = post(client, data, files)["chalk_mark"]
    earlier_id, _ = corrected_upload_s_jobs(server.services, "5", [("done", 0), ("done", 1)])
    stale = chalk_for_job(server.services, "rev0:pass", 0, earlier_id).mark_id
    return server, {"open": opened, "superseded": stale}


def test_a_superseded_run_s_mark_is_shown_and_filtered_as_superseded(
    corrected: tuple[LiveServer, dict[str, int]],
) -> None:
    """The open mark of an upload's earlier run that a corrected resend superseded is listed with the
    superseded badge, in English and in Chinese; the status filter offers superseded and lists it
    alone; open leaves it out. Before, no page test showed such a mark."""
    server, ids = corrected
    stale = ids["superseded"]

    def row_of(html: str) -> str:
        return html.split(f'data-mark-id="{stale}"')[1].split("</tr>")[0]

    with page_client(server, "operator") as operator, page_client(server, "operator", "zh-CN") as zh:
        html = operator.get("/chalk-marks").text
        assert dict(rows(html)) == {ids["open"]: "open", stale: "superseded"}
        assert '<span class="badge rejected">Superseded</span>' in row_of(html)
        assert '<option value="superseded">Superseded</option>' in html
        assert '<span class="badge rejected">已被取代</span>' in row_of(zh.get("/chalk-marks").text)

        def listed(status: str) -> tuple[list[tuple[int, str]], str]:
            r = operator.get("/chalk-marks", params={"status": status})
            assert r.status_code == 200 and 'id="filter-problems"' not in r.text, r.text
            return rows(r.text), r.text

        superseded, html = listed("superseded")
        assert superseded == [(stale, "superseded")]
        assert '<option value="superseded" selected>Superseded</option>' in html
        assert listed("open")[0] == [(ids["open"], "open")]


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_renders_in_chinese_with_its_thumbnails(marks: tuple[LiveServer, dict[str, Any]]) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server, m = marks
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": "gp_session", "value": server.tokens["operator"], "url": server.url}]
            )
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
            page.on(
                "response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None
            )
            page.goto(server.url + "/chalk-marks")
            page.wait_for_load_state("networkidle")
            assert page.locator("html").get_attribute("lang") == "zh-CN"
            assert page.locator("h1").inner_text().startswith("疑似违停")
            assert page.locator("nav.nav a[aria-current=page]").inner_text() == "疑似违停"
            assert page.locator("#mark-table tbody tr").count() == 4
            assert page.locator(f"tr[data-mark-id='{m['ids']['C']}'] .badge").inner_text() == "待确认"
            confirmed = page.locator(f"tr[data-mark-id='{m['ids']['B']}']")
            assert confirmed.locator(".badge").inner_text() == "已确认"
            assert confirmed.locator(".case-status").inner_text() == "待审核"  # its case's status now
            thumbs = page.locator("img.mark-thumb")
            assert thumbs.count() == 4
            for i in range(4):
                thumbs.nth(i).scroll_into_view_if_needed()
                thumbs.nth(i).evaluate("img => img.decode()")
                assert thumbs.nth(i).evaluate("img => img.complete && img.naturalWidth") == 64
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chalk-page-zh-CN.png"), full_page=True)  # for a person
        finally:
            browser.close()
    assert problems == []
