"""An enforcement officer on a phone in the street (390 x 844, zh-CN, touch), over a real server and
Debian's chromium (probe findings, 2026-12-06): the task page's way there and its pictures, the
mark-handled form with no network, and the task list when the phone's position comes late."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.api.api_testkit import LiveServer, incident_json, post_incident

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))
PHONE = {"width": 390, "height": 844}
TAP_MIN_PX = 44  # the smallest target a thumb hits (Apple's and Android's guidelines: 44 pt / 48 dp)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def picture(seed: int, size: tuple[int, int] = (480, 640)) -> bytes:
    """A real (decodable) JPEG, different per seed."""
    image = np.full((*size, 3), (seed * 50 % 256, 120, 200 - seed * 30 % 200), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def dispatched(server: LiveServer, seed: int, position: tuple[float, float] = (30.2741, 120.1551)) -> int:
    """A case of team-ziyang with a raw frame, an annotated frame and a crop, dispatched to it; its id."""
    files = {"raw": picture(seed), "annotated": picture(seed + 100), "crop": picture(seed + 200, (120, 80))}
    with server.client("device") as device, server.client("operator") as office:
        data = incident_json(f"phone-{seed}", position=position, files=files)
        created = post_incident(device, data, files)
        assert created.status_code == 201, created.text
        case_id = int(created.json()["case_id"])
        for to in ("filed", "dispatched"):
            moved = office.post(f"/api/cases/{case_id}/transitions", json={"to": to, "note": "请尽快处理"})
            assert moved.status_code == 200, moved.text
    return case_id


@contextmanager
def phone(server: LiveServer, **options: Any) -> Iterator[Any]:
    """A browser context as the officer `ziyang`'s phone, logged in, in Chinese."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport=PHONE,
                device_scale_factor=3,
                is_mobile=True,
                has_touch=True,
                locale="zh-CN",
                **options,
            )
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["ziyang"], "url": server.url},
                    {"name": "gp_lang", "value": "zh-CN", "url": server.url},
                ]
            )
            yield context
        finally:
            browser.close()


def task_page(context: Any, problems: list[str]) -> Any:
    """A new tab whose console errors go to `problems`."""
    page = context.new_page()
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    return page


def test_the_way_there_is_a_big_button_on_the_first_screen(make_server: Any, sqlite_url: str) -> None:
    """The link to the map app was a 21 px line of text under the pictures, a screen and a half down:
    found by scrolling, hit with a fingertip. It is a full-width button under the case's title, with
    the place beside it, and the page's other links are thumb-sized too."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 1)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        go = page.locator("#open-in-maps")
        box = go.bounding_box()
        assert box is not None
        assert box["height"] >= TAP_MIN_PX and box["width"] >= PHONE["width"] / 2, box
        assert box["y"] + box["height"] <= PHONE["height"], f"below the first screen: {box}"
        assert go.get_attribute("href") == "geo:30.2741,120.1551?q=30.2741,120.1551"
        small = page.evaluate(
            """(least) => [...document.querySelectorAll('#main a, #main button')]
                .filter(e => e.getBoundingClientRect().width > 0)
                .filter(e => e.getBoundingClientRect().height < least)
                .map(e => `${e.textContent.trim()} ${Math.round(e.getBoundingClientRect().height)}px`)""",
            TAP_MIN_PX,
        )
        assert small == []
    assert problems == []


def test_the_way_there_opens_amap_and_baidu_at_the_place_in_their_own_coordinates(
    make_server: Any, sqlite_url: str
) -> None:
    """The only way there was a `geo:` link with the case's WGS84 position: Amap and Baidu, the apps
    the teams use, draw on GCJ-02 and BD-09, so the point landed a few hundred metres off, and iPhone
    Safari does nothing with `geo:`. Amap's and Baidu's own links (their documented marker URIs) sit
    beside it on the first screen, thumb-sized, each with the position converted; `geo:` stays."""
    from urllib.parse import parse_qs, urlsplit

    from api.http.pages.map_apps import wgs84_to_bd09, wgs84_to_gcj02

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    lat, lon = 30.2741, 120.1551  # Hangzhou, in team-ziyang's grid
    case_id = dispatched(server, 14, (lat, lon))
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        number = page.locator("#case").get_attribute("data-number")
        for selector in ("#open-in-amap", "#open-in-baidu", "#open-in-maps"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["height"] >= TAP_MIN_PX, (selector, box)
            assert box["y"] + box["height"] <= PHONE["height"], f"{selector} below the first screen: {box}"
        assert page.get_attribute("#open-in-maps", "href") == f"geo:{lat},{lon}?q={lat},{lon}"
        amap = urlsplit(page.get_attribute("#open-in-amap", "href") or "")
        assert f"{amap.scheme}://{amap.netloc}{amap.path}" == "https://uri.amap.com/marker"
        query = {k: v[0] for k, v in parse_qs(amap.query).items()}
        assert query["coordinate"] == "gaode" and str(number) in query["name"]
        glon, glat = (float(v) for v in query["position"].split(","))
        assert (glat, glon) == pytest.approx(wgs84_to_gcj02(lat, lon), abs=2e-6)
        assert abs(glat - lat) + abs(glon - lon) > 0.003  # the shift, not the GPS point again
        baidu = urlsplit(page.get_attribute("#open-in-baidu", "href") or "")
        assert f"{baidu.scheme}://{baidu.netloc}{baidu.path}" == "https://api.map.baidu.com/marker"
        query = {k: v[0] for k, v in parse_qs(baidu.query).items()}
        assert query["coord_type"] == "bd09ll" and query["output"] == "html" and str(number) in query["title"]
        blat, blon = (float(v) for v in query["location"].split(","))
        assert (blat, blon) == pytest.approx(wgs84_to_bd09(lat, lon), abs=2e-6)
        assert page.inner_text("#open-in-amap") == "高德地图导航"
        assert page.inner_text("#open-in-baidu") == "百度地图导航"
    assert problems == []


def test_a_tap_opens_the_evidence_picture_by_itself(make_server: Any, sqlite_url: str) -> None:
    """Tapping the flagged frame or the close-up did nothing: the pictures were a third of a small
    screen, and a plate or a number on a shop front could not be read. Each opens by itself, full size,
    in a tab of its own (the task page, with what was typed in it, stays); the frame as the annotated
    picture, its detection's box drawn in, not the raw frame that has its box only as an overlay."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 2)
    with server.client("ziyang") as api:
        evidence = {
            e["role"]: e["url"]
            for e in api.get(f"/api/cases/{case_id}").json()["sightings_list"][0]["evidence"]
        }
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        page.fill("textarea[name=note]", "车已开走")
        for picture_selector, role in (
            ("#evidence .flagged-frame img", "annotated"),
            ("#evidence img.crop", "crop"),
        ):
            with context.expect_page(timeout=5000) as opened:
                page.tap(picture_selector)
            tab = opened.value
            tab.wait_for_load_state()
            assert tab.url == server.url + evidence[role], role
            tab.close()
        assert page.url == f"{server.url}/tasks/{case_id}"
        assert page.input_value("textarea[name=note]") == "车已开走"
        assert "点图片可单独打开原图" in page.inner_text("#evidence")
    assert problems == []


def test_marking_handled_with_no_network_keeps_the_page_and_says_so(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """A tap on "submit" in a basement with no signal put the browser's own "no internet" page in place
    of the task page, the note and the photo out of sight (back there only by the back button, when the
    browser kept them). Now nothing is sent, the page stays with its note and photo and says why; when
    the network is back it says so, and the next tap marks the case handled."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 3)
    photo = tmp_path / "after.jpg"
    photo.write_bytes(picture(9))
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        page.fill("textarea[name=note]", "车辆已驶离")
        page.set_input_files("input[name=photo]", str(photo))
        context.set_offline(True)
        page.tap("form.move-form button[type=submit]")
        notice = page.locator(".move-offline")
        notice.wait_for(timeout=5000)
        assert "没有网络，尚未提交" in notice.inner_text()
        assert page.url == f"{server.url}/tasks/{case_id}"
        assert page.input_value("textarea[name=note]") == "车辆已驶离"
        assert page.evaluate("() => document.querySelector('input[name=photo]').files.length") == 1
        context.set_offline(False)
        page.wait_for_function(
            "() => document.querySelector('.move-offline').textContent.includes('网络已恢复')"
        )
        with page.expect_navigation(url=f"**/tasks?done={case_id}*"):
            page.tap("form.move-form button[type=submit]")
    with server.client("ziyang") as api:
        case = api.get(f"/api/cases/{case_id}").json()
    assert case["status"] == "handled"
    assert problems == []


def test_a_typed_note_survives_the_page_being_reloaded(make_server: Any, sqlite_url: str) -> None:
    """On a phone short of memory the system closes the browser's tab while the camera app is open, and
    the tab comes back reloaded: the note typed before taking the after-photo was gone. The note is kept
    on the phone until the move is made (and then forgotten, so the case's next round starts blank)."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 4)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        page.locator("textarea[name=note]").press_sequentially("垃圾已清运")
        page.reload()
        assert page.input_value("textarea[name=note]") == "垃圾已清运"
        assert page.locator(".draft-restored").is_visible()
        page.set_input_files(
            "input[name=photo]", files=[{"name": "after.jpg", "mimeType": "image/jpeg", "buffer": picture(5)}]
        )
        with page.expect_navigation(url=f"**/tasks?done={case_id}*"):
            page.tap("form.move-form button[type=submit]")
        page.wait_for_load_state()
        assert page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('gp-draft:'))") == []
    with server.client("ziyang") as api:
        case = api.get(f"/api/cases/{case_id}").json()
    assert case["status"] == "handled"
    assert [e["note"] for e in case["history"] if e["what"] == "handled"] == ["垃圾已清运"]
    assert problems == []


def test_a_late_position_does_not_reorder_the_list_under_the_thumb(make_server: Any, sqlite_url: str) -> None:
    """The phone's position (a GPS fix takes seconds) replaced the list, nearest first, whenever it came:
    an officer who had started scrolling and was about to tap the second case found another one under
    the thumb. Once the page was touched, the nearest-first list waits behind a button."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    far = dispatched(server, 5, (30.2520, 120.1600))  # dispatched first: first in the dispatch order
    near = dispatched(server, 6, (30.2741, 120.1551))
    problems: list[str] = []
    with phone(
        server, geolocation={"latitude": 30.2740, "longitude": 120.1552}, permissions=["geolocation"]
    ) as context:
        context.add_init_script(
            """(() => {  // the fix comes a second and a half after the page asks
              const real = navigator.geolocation.getCurrentPosition.bind(navigator.geolocation);
              navigator.geolocation.getCurrentPosition = (ok, bad, opts) =>
                setTimeout(() => real(ok, bad, opts), 1500);
            })()"""
        )
        page = task_page(context, problems)
        order = "() => [...document.querySelectorAll('li.task')].map(li => Number(li.dataset.caseId))"
        page.goto(f"{server.url}/tasks")
        assert page.evaluate(order) == [far, near]
        page.tap("h1")  # a thumb on the page (on the heading, not a case)
        where = "() => [...document.querySelectorAll('li.task')].map(li => li.getBoundingClientRect().top)"
        before = page.evaluate(where)
        ready = page.locator("#nearest-ready")
        ready.wait_for(timeout=10_000)
        assert page.evaluate(order) == [far, near]
        assert page.evaluate(where) == before  # nothing moved under the thumb
        box = ready.bounding_box()
        assert box is not None and box["height"] >= TAP_MIN_PX
        ready.tap()
        page.wait_for_function("() => document.body.dataset.taskOrder === 'distance'")
        assert page.evaluate(order) == [near, far]
    assert problems == []


def test_an_untouched_list_turns_nearest_first_by_itself(make_server: Any, sqlite_url: str) -> None:
    """Not touched while the position came: the list is nearest first at once, as before."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    far = dispatched(server, 7, (30.2520, 120.1600))
    near = dispatched(server, 8, (30.2741, 120.1551))
    problems: list[str] = []
    with phone(
        server, geolocation={"latitude": 30.2740, "longitude": 120.1552}, permissions=["geolocation"]
    ) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks")
        page.wait_for_function("() => document.body.dataset.taskOrder === 'distance'")
        order = "() => [...document.querySelectorAll('li.task')].map(li => Number(li.dataset.caseId))"
        assert page.evaluate(order) == [near, far]
        assert page.locator("#nearest-ready").count() == 0
    assert problems == []


def test_a_refused_form_comes_back_at_the_form_as_the_task_page(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """A refused after-photo (not a picture) brought the page back at its top: the error there, the form
    to pick the photo again two screens down; the navigation marked "cases", not "my tasks", and the
    language switch led to the form's address, a 405. The answer opens at the form with the error
    beside it, as the task page: its section marked, the switch coming back to it."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 10)
    not_a_photo = tmp_path / "after.jpg"
    not_a_photo.write_bytes(b"%PDF-1.4 a scan, not a photo\n" * 20)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.on("console", lambda msg: problems.remove(msg.text) if "status of 422" in msg.text else None)
        page.goto(f"{server.url}/tasks/{case_id}")
        page.fill("textarea[name=note]", "已清理")
        page.set_input_files("input[name=photo]", str(not_a_photo))
        page.tap("form.move-form button[type=submit]")
        error = page.locator("#move-error")
        error.wait_for(timeout=5000)
        assert "须为 JPEG、PNG、GIF 或 WebP 图片" in error.inner_text()
        for shown in (error, page.locator("input[name=photo]"), page.locator("form.move-form button")):
            box = shown.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
        assert page.input_value("textarea[name=note]") == "已清理"
        assert page.inner_text(".nav a[aria-current=page]") == "我的任务"
        with page.expect_navigation():
            page.tap("button[lang=en]")
        assert page.url == f"{server.url}/tasks/{case_id}"
        assert page.inner_text("#open-in-maps") == "Other maps app"
    assert problems == []


def test_a_case_sent_back_shows_what_the_team_did_last_time(make_server: Any, sqlite_url: str) -> None:
    """A case sent back showed the office's note and the case's pictures, but not the handling that was
    found wanting: the officer going back (often another than the first) could not see what had been
    done, nor the after-photo it was judged by. The task page shows that handling: who, when, its note
    and its after-photo (opening full size), and a photo the office sent with the send-back is not
    taken for it."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 11)
    team_photo, office_photo = picture(21, (600, 800)), picture(22, (300, 400))
    with server.client("ziyang") as officer, server.client("operator") as office:
        handled = officer.post(
            f"/api/cases/{case_id}/transitions",
            data={"to": "handled", "note": "已劝离车主"},
            files={"photo": ("after.jpg", team_photo, "image/jpeg")},
        )
        assert handled.status_code == 200, handled.text
        back = office.post(
            f"/api/cases/{case_id}/transitions",
            data={"to": "dispatched", "note": "车仍在原处"},
            files={"photo": ("still-there.jpg", office_photo, "image/jpeg")},
        )
        assert back.status_code == 200, back.text
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        last = page.locator("#last-handling")
        assert "上次处置" in last.inner_text() and "已劝离车主" in last.inner_text()
        assert "ziyang" in last.inner_text()
        photo = last.locator("img")
        photo.wait_for()
        page.wait_for_function("() => document.querySelector('#last-handling img').naturalWidth > 0")
        assert photo.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [800, 600]
        with context.expect_page(timeout=5000) as opened:
            photo.tap()
        opened.value.wait_for_load_state()
        assert opened.value.url == server.url + str(last.locator("a").get_attribute("href"))
    assert problems == []


def test_a_position_with_no_network_to_order_by_says_the_network_failed(
    make_server: Any, sqlite_url: str
) -> None:
    """The position came while the phone had lost its network, so the nearest-first list could not be
    asked for: the page said the position was not available, sending the officer to the phone's
    location settings. It says there was no network."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    far = dispatched(server, 12, (30.2520, 120.1600))
    near = dispatched(server, 13, (30.2741, 120.1551))
    problems: list[str] = []
    with phone(
        server, geolocation={"latitude": 30.2740, "longitude": 120.1552}, permissions=["geolocation"]
    ) as context:
        context.add_init_script(
            """(() => {
              const real = navigator.geolocation.getCurrentPosition.bind(navigator.geolocation);
              navigator.geolocation.getCurrentPosition = (ok, bad, opts) =>
                setTimeout(() => real(ok, bad, opts), 1000);
            })()"""
        )
        page = task_page(context, problems)
        page.on(
            "console", lambda msg: problems.remove(msg.text) if "INTERNET_DISCONNECTED" in msg.text else None
        )
        page.goto(f"{server.url}/tasks")
        context.set_offline(True)
        page.wait_for_function("() => document.body.dataset.taskOrder === 'dispatch'", timeout=10_000)
        note = page.inner_text("#task-order")
        assert "手机没有网络，未能按距离排序" in note and "无法获取您的位置" not in note
        order = "() => [...document.querySelectorAll('li.task')].map(li => Number(li.dataset.caseId))"
        assert page.evaluate(order) == [far, near]
    assert problems == []


def jpeg(data: bytes, name: str = "after.jpg") -> dict[str, Any]:
    """A file for Playwright's set_input_files."""
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


def big_photo(width: int = 1600, height: int = 1200) -> bytes:
    """A real JPEG of a few MB, as a phone's camera makes (noise does not compress)."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def test_the_after_photo_is_taken_with_a_big_button_showing_the_photo_and_its_size(
    make_server: Any, sqlite_url: str
) -> None:
    """The after-photo was the browser's small file control (41 px high, "Choose file"), and what it had
    taken showed only as a file name. A big "拍照" button opens the camera; the photo taken shows as a
    thumbnail with its size, and the same button, now "重拍", takes another in its place."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 15)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        take = page.locator("form.move-form label.photo-take")
        assert take.inner_text().strip() == "拍照"
        box = take.bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= PHONE["width"] * 0.8, box
        control = page.locator("input[name=photo]").bounding_box()
        assert control is not None and control["height"] <= 1, f"the small control still shows: {control}"
        assert page.get_attribute("input[name=photo]", "capture") == "environment"
        first = {"name": "after.jpg", "mimeType": "image/jpeg", "buffer": picture(31, (600, 800))}
        with page.expect_file_chooser() as chooser:
            take.tap()
        chooser.value.set_files(files=[first])
        page.wait_for_function("() => document.querySelector('.photo-chosen img').naturalWidth === 800")
        assert page.locator(".photo-chosen").is_visible()
        size = page.inner_text(".photo-size")
        assert "已选照片" in size and "KB" in size, size
        assert take.inner_text().strip() == "重拍"
        second = {"name": "again.jpg", "mimeType": "image/jpeg", "buffer": big_photo(1200, 900)}
        with page.expect_file_chooser() as chooser:
            take.tap()
        chooser.value.set_files(files=[second])
        page.wait_for_function("() => document.querySelector('.photo-chosen img').naturalWidth === 1200")
        assert "MB" in page.inner_text(".photo-size")
        assert page.evaluate("() => document.querySelector('input[name=photo]').files[0].name") == "again.jpg"
    assert problems == []


def test_a_photo_over_the_limit_is_refused_before_it_is_sent(make_server: Any, sqlite_url: str) -> None:
    """A photo over the service's limit went up whole (minutes on a phone's network) to be refused at
    the end. The page says so when the photo is chosen and again on submit, naming the limit, and sends
    nothing; the case stays dispatched."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"max_evidence_bytes": 2**20})
    case_id = dispatched(server, 16)
    photo = big_photo()
    assert len(photo) > 2**20
    problems: list[str] = []
    posts: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(f"{server.url}/tasks/{case_id}")
        assert "上限 1 MB" in page.inner_text(".photo-limit")
        page.fill("textarea[name=note]", "已清理")
        page.set_input_files("input[name=photo]", files=[jpeg(photo)])
        assert "超过上限 1 MB" in page.inner_text(".photo-size")
        page.tap("form.move-form button[type=submit]")
        refused = page.locator(".photo-too-large")
        refused.wait_for(timeout=5000)
        said = refused.inner_text()
        assert "超过上限 1 MB" in said and f"{len(photo) / 2**20:.1f} MB" in said, said
        page.wait_for_timeout(300)
        assert posts == [] and page.url == f"{server.url}/tasks/{case_id}"
        assert page.input_value("textarea[name=note]") == "已清理"
    with server.client("ziyang") as api:
        assert api.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"
    assert problems == []


def test_the_photo_goes_up_with_its_progress_shown_and_as_taken(make_server: Any, sqlite_url: str) -> None:
    """A phone photo (8-20 MB) went up with no sign of progress: a minute of a "sending" button on a slow
    network, people tapping again or leaving. The upload shows how far it is, the photo stored as
    taken (its hash the file's: evidence is never shrunk in the browser), and the page goes on to the
    task list as before."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 17)
    photo = big_photo()
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        rate = len(photo) // 3  # bytes a second: about three seconds of upload
        conditions = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": rate}
        cdp.send("Network.emulateNetworkConditions", conditions)
        page.fill("textarea[name=note]", "摊位已撤离")
        page.set_input_files("input[name=photo]", files=[jpeg(photo)])
        with page.expect_navigation(url=f"**/tasks?done={case_id}*", timeout=30_000):
            page.tap("form.move-form button[type=submit]")
            page.wait_for_function(
                "() => { const bar = document.querySelector('progress.upload-progress');"
                " return bar && !bar.hidden && bar.value > 5 && bar.value < 95; }",
                timeout=10_000,
            )
            status = page.inner_text(".upload-status")
            assert "正在上传照片" in status and "%" in status and "MB" in status, status
    with server.client("ziyang") as api:
        case = api.get(f"/api/cases/{case_id}").json()
    assert case["status"] == "handled"
    import hashlib

    sha = hashlib.sha256(photo).hexdigest()
    assert sha in str(case), "the photo stored is not the one taken"
    assert problems == []


def test_the_top_bar_is_one_thumb_high_line_with_everything_still_there(
    make_server: Any, sqlite_url: str
) -> None:
    """The top bar took 186 px of the phone's 844 (22%) for an officer: the brand, the navigation on two
    lines of 21 px links, then the language, the name and logging out on a third. On a phone it is one
    line of 44 px links, swiped sideways when wider than the screen; every link and button is still
    there and opens what it did (the brand's link home aside: "我的任务" is the officer's home)."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 18)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        for path in ("/tasks", f"/tasks/{case_id}"):
            page.goto(f"{server.url}{path}")
            bar = page.locator("header.topbar").bounding_box()
            assert bar is not None and bar["height"] <= 52, f"{path}: the top bar is {bar}"
            targets = page.evaluate(
                """() => [...document.querySelectorAll('header.topbar a, header.topbar button')]
                    .filter(e => e.checkVisibility())
                    .map(e => [e.textContent.trim(), Math.round(e.getBoundingClientRect().height)])"""
            )
            names = [name for name, _ in targets]
            assert names == ["案件", "我的任务", "网格地图", "统计", "报表", "English", "退出登录"], names
            assert all(height >= TAP_MIN_PX for _, height in targets), targets
            assert page.locator("header.topbar .who").is_visible()
            assert "team-ziyang" in page.inner_text("header.topbar .who")
        page.locator("header.topbar #logout").scroll_into_view_if_needed()
        box = page.locator("header.topbar #logout").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        with page.expect_navigation():
            page.tap("header.topbar a[href='/map']")
        assert page.url == f"{server.url}/map"
    assert problems == []


def test_a_task_tapped_with_no_network_keeps_the_list_and_shows_the_way_there(
    make_server: Any, sqlite_url: str
) -> None:
    """In the street with no signal, a tap on a task put the browser's own "no internet" page in place of
    the list: the list gone, and with it the way to the place. Now the list stays, and under the task a
    panel says there is no network, with what the list holds of it (number, category, cell, position)
    and the task page's own links to Amap, Baidu and the phone's maps app; "try again" says when there is
    still no network, and back online a tap opens the task page as before."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 14)
    other = dispatched(server, 15, (30.2520, 120.1600))
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        number = page.get_attribute("#case", "data-number")
        ways = {app: page.get_attribute(f"#open-in-{app}", "href") for app in ("amap", "baidu", "maps")}
        page.goto(f"{server.url}/tasks")
        page.wait_for_load_state("networkidle")
        task = page.locator(f"li.task[data-case-id='{case_id}']")
        assert not page.locator("#task-offline").is_visible()

        context.set_offline(True)
        task.locator("a.task-link").tap()
        panel = task.locator("#task-offline")
        panel.wait_for(timeout=5000)
        assert page.url == f"{server.url}/tasks"
        assert page.locator("li.task").count() == 2  # the list is still there
        text = panel.inner_text()
        assert "手机没有网络" in text and "打不开此任务的详情" in text, text
        assert number and number in text and "30.274100, 120.155100" in text, text
        assert task.locator(".task-title strong").inner_text() in text
        shown = {app: panel.locator(f".offline-{app}") for app in ("amap", "baidu", "geo")}
        assert {app: link.get_attribute("href") for app, link in shown.items()} == {
            "amap": ways["amap"],
            "baidu": ways["baidu"],
            "geo": ways["maps"],
        }
        assert all(link.is_visible() for link in shown.values())
        for target in (*shown.values(), panel.locator("button.offline-retry")):
            box = target.bounding_box()
            assert box is not None and box["height"] >= TAP_MIN_PX, box
        panel.locator("button.offline-retry").tap()
        panel.locator(".offline-still").wait_for(timeout=5000)
        assert "仍然没有网络" in panel.inner_text()
        assert page.url == f"{server.url}/tasks"

        # another task tapped: the panel moves to it (one panel, the task tapped)
        page.locator(f"li.task[data-case-id='{other}'] a.task-link").tap()
        page.locator(f"li.task[data-case-id='{other}'] #task-offline").wait_for(timeout=5000)
        assert page.locator("#task-offline").count() == 1
        assert page.locator(".offline-still").is_hidden()

        context.set_offline(False)
        with page.expect_navigation(url=f"**/tasks/{case_id}"):
            task.locator("a.task-link").tap()
        assert page.get_attribute("#case", "data-number") == number
    assert problems == []


def test_a_task_tapped_while_the_service_is_out_of_reach_keeps_the_list(
    make_server: Any, sqlite_url: str
) -> None:
    """The phone has network (navigator.onLine) but not to the district's service (its LAN out of reach,
    a dead cell link): the tap keeps the list and says so too. Without JavaScript the task is a plain
    link to its page, the panel never shown."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 16)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.on(
            "console", lambda msg: problems.remove(msg.text) if "INTERNET_DISCONNECTED" in msg.text else None
        )
        page.goto(f"{server.url}/tasks")
        page.wait_for_load_state("networkidle")
        page.route("**/api/health", lambda route: route.abort("internetdisconnected"))
        page.route("**/tasks/*", lambda route: route.abort("internetdisconnected"))
        page.locator(f"li.task[data-case-id='{case_id}'] a.task-link").tap()
        page.locator(f"li.task[data-case-id='{case_id}'] #task-offline").wait_for(timeout=5000)
        assert page.url == f"{server.url}/tasks"
    with phone(server, java_script_enabled=False) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks")
        assert page.locator("#task-offline").is_hidden()
        with page.expect_navigation(url=f"**/tasks/{case_id}"):
            page.locator(f"li.task[data-case-id='{case_id}'] a.task-link").tap()
    assert problems == []


def test_a_picture_opened_by_itself_gets_gridpatrol_s_icon(make_server: Any, sqlite_url: str) -> None:
    """A picture opened in a tab of its own (no page of ours, so no <link rel="icon">) made the browser
    ask /favicon.ico (by itself: the page's own requests do not show it): a 404 in the server's log on
    every tap, and a broken icon on the tab. It gets the icon."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 3)
    with server.client("ziyang") as api:
        evidence = api.get(f"/api/cases/{case_id}").json()["sightings_list"][0]["evidence"]

    class AccessLog(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    access, log = logging.getLogger("uvicorn.access"), AccessLog()
    level = access.level
    access.addHandler(log)
    access.setLevel(logging.INFO)  # the test server logs warnings only
    try:
        with phone(server) as context:
            tab = context.new_page()
            tab.goto(server.url + evidence[0]["url"])
            tab.wait_for_load_state("networkidle")
            deadline = time.monotonic() + 10
            while not any("/favicon.ico" in line for line in log.lines) and time.monotonic() < deadline:
                tab.wait_for_timeout(100)  # the browser asks for the icon after the picture
    finally:
        access.removeHandler(log)
        access.setLevel(level)
    icons = [line for line in log.lines if '"GET /favicon.ico ' in line]
    assert icons and all(line.endswith(" 200") for line in icons), log.lines
