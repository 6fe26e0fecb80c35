"""What the task page does with the service's answer to its mark-handled form, which its script sends
by XHR (the after-photo's progress), over a real server and Debian's chromium: a move made opens the
task list once, a refused one is shown in place without the page's scripts running again (findings
of 2026-12-06: the list was loaded twice, by the XHR following the redirect and again by the page,
and a refused answer was written over the document, running its scripts a second time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from api.http.cookies import SESSION_COOKIE
from tests.api.api_testkit import LiveServer
from tests.api.test_task_page_phone import dispatched, jpeg, phone, picture, task_page

SCRIPT = {"X-Requested-With": "XMLHttpRequest"}  # what cases.js sends with its XHR


def handled_form(case_id: int, csrf: str = "x") -> dict[str, str]:
    return {"to": "handled", "from": "dispatched", "note": "已清理", "back": "task", "csrf_token": csrf}


def test_a_move_the_page_script_sends_is_told_the_next_page_not_redirected(
    make_server: Any, sqlite_url: str
) -> None:
    """An XHR follows a redirect itself: the 303 after a move made the XHR fetch the task list, unseen,
    and the page then opened it again. A form the script sends is answered 204 with the next page in
    X-GP-Location (the login page too, for a session that ended); the browser's own post still gets
    the 303."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    first = dispatched(server, 30, position=(30.2500, 120.16))
    second = dispatched(server, 31, position=(30.2520, 120.16))
    photo = {"photo": ("after.jpg", picture(30), "image/jpeg")}
    with server.browser("ziyang") as browser:
        by_script = browser.post(
            f"/cases/{first}/move", data=handled_form(first), files=photo, headers=SCRIPT
        )
        assert by_script.status_code == 204, by_script.text
        assert by_script.headers["X-GP-Location"] == f"/tasks?done={first}"
        assert "location" not in by_script.headers and by_script.content == b""
        plain = browser.post(f"/cases/{second}/move", data=handled_form(second), files=photo)
        assert plain.status_code == 303 and plain.headers["location"] == f"/tasks?done={second}"
    with httpx.Client(
        base_url=server.url,
        cookies={SESSION_COOKIE: "a-token-that-ended", "gp_lang": "en"},
        headers={"Referer": f"{server.url}/tasks/{first}", **SCRIPT},
        timeout=30,
    ) as ended:
        late = ended.post(f"/cases/{first}/move", data=handled_form(first), files=photo)
        assert late.status_code == 204
        assert late.headers["X-GP-Location"] == f"/login?next=%2Ftasks%2F{first}&unsent=1"


def _requests(page: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    page.on("request", lambda request: seen.append((request.method, request.url)))
    return seen


def _scripts_run(context: Any, page: Any) -> list[str]:
    """The address of each script the page runs from now on (chromium's DevTools protocol: a script
    written into the document again runs again, served from the cache, with no request to show it)."""
    cdp = context.new_cdp_session(page)
    ran: list[str] = []
    cdp.on("Debugger.scriptParsed", lambda event: ran.append(event.get("url", "")))
    cdp.send("Debugger.enable")
    page.wait_for_timeout(200)
    ran.clear()  # those the page ran before
    return ran


def _listeners(context: Any, page: Any, types: tuple[str, ...]) -> dict[str, int]:
    """How many listeners of each of `types` the page's window has (chromium's DevTools protocol)."""
    cdp = context.new_cdp_session(page)
    window = cdp.send("Runtime.evaluate", {"expression": "window"})["result"]["objectId"]
    listed = cdp.send("DOMDebugger.getEventListeners", {"objectId": window})["listeners"]
    return {name: sum(1 for item in listed if item["type"] == name) for name in types}


def test_marking_handled_opens_the_task_list_once(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 32)
    problems: list[str] = []
    with phone(server) as context:
        page = task_page(context, problems)
        page.goto(f"{server.url}/tasks/{case_id}")
        seen = _requests(page)
        page.fill("textarea[name=note]", "摊位已撤离")
        page.set_input_files("input[name=photo]", files=[jpeg(picture(32))])
        with page.expect_navigation(url=f"**/tasks?done={case_id}"):
            page.tap("form.move-form button[type=submit]")
        page.wait_for_load_state("networkidle")
        assert page.locator("#task-done").count() == 1
    lists = [url for method, url in seen if method == "GET" and f"/tasks?done={case_id}" in url]
    assert lists == [f"{server.url}/tasks?done={case_id}"], seen
    assert [method for method, url in seen if url.endswith(f"/cases/{case_id}/move")] == ["POST"]
    assert problems == []


def test_a_refused_form_is_shown_without_the_page_s_scripts_running_again(
    make_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The refused answer was written over the document (document.open/write): every script of the
    page ran again in the same window, registering its window listeners again (chromium drops the
    earlier ones; a browser that does not ran them twice). The answer takes the place of the page's
    content, the scripts set up its form without running again: their listeners are there once, the
    photo button works on the new form, and the second try opens the task list once."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    case_id = dispatched(server, 33)
    not_a_photo = tmp_path / "after.jpg"
    not_a_photo.write_bytes(b"%PDF-1.4 a scan, not a photo\n" * 20)
    problems: list[str] = []
    watched = ("online", "pageshow")
    with phone(server) as context:
        page = task_page(context, problems)
        page.on("console", lambda msg: problems.remove(msg.text) if "status of 422" in msg.text else None)
        page.goto(f"{server.url}/tasks/{case_id}")
        page.wait_for_load_state("networkidle")
        assert _listeners(context, page, watched) == {"online": 1, "pageshow": 1}
        ran = _scripts_run(context, page)
        seen = _requests(page)
        page.fill("textarea[name=note]", "已清理")
        page.set_input_files("input[name=photo]", str(not_a_photo))
        page.tap("form.move-form button[type=submit]")
        page.locator("#move-error").wait_for(timeout=5000)
        page.wait_for_load_state("networkidle")
        assert "须为 JPEG、PNG、GIF 或 WebP 图片" in page.inner_text("#move-error")
        assert page.input_value("textarea[name=note]") == "已清理"
        assert [url for url in ran if "/static/js/" in url] == [], "the page's scripts ran again"
        assert _listeners(context, page, watched) == {"online": 1, "pageshow": 1}

        # the answer's form is set up: the big photo button shows the photo taken, one post sends it
        page.set_input_files("input[name=photo]", files=[jpeg(picture(33))])
        page.locator(".photo-chosen:not([hidden]) img.photo-preview").wait_for(timeout=5000)
        assert "重拍" in page.inner_text(".photo-take-text")
        seen.clear()
        with page.expect_navigation(url=f"**/tasks?done={case_id}"):
            page.tap("form.move-form button[type=submit]")
        page.wait_for_load_state("networkidle")
    assert [method for method, url in seen if url.endswith(f"/cases/{case_id}/move")] == ["POST"]
    lists = [url for _, url in seen if f"/tasks?done={case_id}" in url]
    assert lists == [f"{server.url}/tasks?done={case_id}"], seen
    assert problems == []
