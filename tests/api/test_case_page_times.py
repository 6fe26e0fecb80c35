"""The case page reads a sighting's time as the case list does: at the site's UTC offset. It showed
the times at the camera's offset instead, so a sighting the list showed at 14:05 read 13:05 on its
page; where the camera's offset is another, its local time now follows in brackets, in both languages."""

from __future__ import annotations

import re
from typing import Any

from tests.api.api_testkit import LiveServer, incident_json, post_incident

SITE_TIME = "2026-11-20 14:05:00"  # the sightings below at the site's offset (UTC+8, the default)


def _case_page(server: LiveServer, case_id: int, lang: str) -> str:
    with server.browser("operator") as op:
        op.cookies.set("gp_lang", lang)
        page = op.get(f"/cases/{case_id}")
    assert page.status_code == 200, page.text[:300]
    return page.text


def _listed_times(server: LiveServer, number: str) -> list[str]:
    with server.browser("operator") as op:
        page = op.get("/cases", params={"number": number}).text
    row = page.split(f'data-number="{number}"')[1].split("</tr>")[0]
    return re.findall(r'class="nowrap">([^<]*)</td>', row)


def test_the_case_page_shows_the_sites_time_and_the_cameras_after_it(
    make_server: Any, sqlite_url: str
) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        sent = {
            # a camera set to UTC+7 (13:05 there) and one at the site's own offset (14:05 there too)
            "west": incident_json("west", when="2026-11-20T13:05:00+07:00", position=(30.2741, 120.1551)),
            "here": incident_json(
                "here",
                category="street_vending",
                when="2026-11-20T14:05:00+08:00",
                position=(30.2841, 120.1651),
            ),
        }
        cases = {}
        for name, incident in sent.items():
            answer = post_incident(device, incident)
            assert answer.status_code == 201, answer.text
            cases[name] = answer.json()
    for name in cases:
        assert _listed_times(server, cases[name]["case_number"]) == ["2026-11-20 14:05"] * 2, name

    west_en = _case_page(server, cases["west"]["case_id"], "en")
    facts = west_en.split('id="facts"')[1].split("</dl>")[0]
    assert facts.count(f"{SITE_TIME} (camera 13:05:00)") == 2, facts  # first and last seen
    assert f"#1 · {SITE_TIME} (camera 13:05:00)" in west_en
    assert "Times are UTC+08:00" in west_en
    west_zh = _case_page(server, cases["west"]["case_id"], "zh-CN")
    assert f"#1 · {SITE_TIME}（摄像头 13:05:00）" in west_zh
    assert west_zh.split('id="facts"')[1].split("</dl>")[0].count(f"{SITE_TIME}（摄像头 13:05:00）") == 2

    here_en = _case_page(server, cases["here"]["case_id"], "en")
    assert f"#1 · {SITE_TIME}<" in here_en.replace("</h3>", "<").replace(" <span", "<")
    assert "camera 1" not in here_en.split('id="facts"')[1].split("</dl>")[0]
    assert here_en.split('id="facts"')[1].split("</dl>")[0].count(SITE_TIME) == 2


def test_the_review_card_shows_the_sites_time_and_the_cameras_after_it(
    make_server: Any, sqlite_url: str
) -> None:
    """The review card showed a case's times at its camera's offset, "13:05:00 (+07:00)", where the case
    list and the case page show the site's 14:05 with the camera's time in brackets: now as they do."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        west = incident_json("west", when="2026-11-20T13:05:00+07:00", position=(30.2741, 120.1551))
        answer = post_incident(device, west)
        assert answer.status_code == 201, answer.text
    shown_in = {"en": f"{SITE_TIME} (camera 13:05:00)", "zh-CN": f"{SITE_TIME}（摄像头 13:05:00）"}
    for lang, shown in shown_in.items():
        with server.browser("operator") as op:
            op.cookies.set("gp_lang", lang)
            page = op.get("/review")
        assert page.status_code == 200, page.text[:300]
        facts = page.text.split('class="facts"')[1].split("</dl>")[0]
        assert facts.count(shown) == 2, facts  # first and last seen
        assert "+07:00" not in page.text and "(+08:00)" not in page.text
        assert lang != "en" or "Times are UTC+08:00" in page.text
