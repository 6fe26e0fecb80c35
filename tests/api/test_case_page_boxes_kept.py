"""The office's case page keeps the boxes an operator drew and has not saved when a move its script
sent is refused, over a real server and Debian's chromium. The refused answer takes the place of the
page's content (gp.replaceMain), box editor included: the boxes drawn were thrown away without a word
(findings of 2026-12-06). They now go over to the new content's editor of the same frame, open, with a
line saying they are kept, and one save stores them; no "leave the page?" is asked on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.api_testkit import LiveServer
from tests.api.test_task_page_answers import handled_form
from tests.api.test_task_page_phone import CHROMIUM, dispatched, jpeg, picture

SITE = Path(__file__).resolve().parents[2] / "configs" / "site.yaml"


def _drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag with the mouse over the editor's frame between two points given as fractions of it."""
    img = page.locator("details.box-editor .box-canvas img")
    img.scroll_into_view_if_needed()
    shown = img.bounding_box()
    assert shown is not None
    page.mouse.move(shown["x"] + start[0] * shown["width"], shown["y"] + start[1] * shown["height"])
    page.mouse.down()
    page.mouse.move(shown["x"] + end[0] * shown["width"], shown["y"] + end[1] * shown["height"], steps=6)
    page.mouse.up()


def _pending(page: Any) -> list[tuple[str, str]]:
    return [
        (str(op), str(name))
        for op, name in page.locator("details.box-editor ol.pending-boxes li").evaluate_all(
            "l => l.map(i => [i.dataset.op, i.dataset.className])"
        )
    ]


@pytest.mark.browser
def test_a_refused_move_keeps_the_boxes_not_saved(make_server: Any, sqlite_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    server: LiveServer = make_server(sqlite_url, settings={"site_config": SITE})
    case_id = dispatched(server, 40)
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            context.add_cookies(
                [
                    {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
                    {"name": "gp_lang", "value": "zh-CN", "url": server.url},
                ]
            )
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
            page.goto(f"{server.url}/cases/{case_id}")
            page.wait_for_load_state("networkidle")
            page.locator("details.box-editor summary").click()
            page.wait_for_selector("details.box-editor.ready")
            # a missed person added, the detection corrected to a truck: drawn, not saved
            page.locator("details.box-editor input[value=add]").check()
            page.locator("details.box-editor select.box-class").select_option("person")
            _drag(page, (0.55, 0.35), (0.8, 0.9))
            page.locator("details.box-editor input[value=correct]").check()
            page.locator("details.box-editor select.box-class").select_option("truck")
            _drag(page, (0.05, 0.15), (0.45, 0.6))
            assert _pending(page) == [("add", "person"), ("correct", "truck")]

            # meanwhile the team marks the case handled: this page's "handled" move (sent by its
            # script, with the after-photo) is refused, its answer put in place of the page's content
            with server.browser("ziyang") as team:
                photo = {"photo": ("after.jpg", picture(40), "image/jpeg")}
                moved = team.post(f"/cases/{case_id}/move", data=handled_form(case_id), files=photo)
                assert moved.status_code == 303, moved.text
            form = page.locator("form.move-form[data-target=handled]")
            form.locator("textarea[name=note]").fill("现场已清理")
            form.locator("input[name=photo]").set_input_files(files=[jpeg(picture(41))])
            with page.expect_response(lambda r: r.url.endswith(f"/cases/{case_id}/move")) as answer:
                form.locator("button[type=submit]").click()
            assert answer.value.status == 409
            page.locator("#move-error").wait_for(timeout=5000)
            assert page.locator("form.move-form[data-target=handled]").count() == 0  # the new content

            # the new content's editor holds the boxes drawn, open, saying so; no dialog was asked
            editor = page.locator("details.box-editor")
            page.wait_for_selector("details.box-editor[open].ready", timeout=5000)
            assert _pending(page) == [("add", "person"), ("correct", "truck")]
            assert editor.locator(".box-canvas rect.pending").count() == 2
            assert "尚未保存的 2 个框仍保留在此" in editor.locator(".box-saved").inner_text()
            assert dialogs == []
            with page.expect_response(lambda r: r.url.endswith(f"/api/cases/{case_id}/boxes")) as saved:
                editor.locator("button.save-boxes").click()
            assert saved.value.status == 200
            labelled = [(b["box"]["class_name"], b["source"]) for b in saved.value.json()["boxes"]]
            assert labelled == [("truck", "operator"), ("person", "operator")]
            page.wait_for_function("() => !document.querySelector('details.box-editor li.add')")
            assert _pending(page) == []
        finally:
            browser.close()
    problems = [p for p in problems if "status of 409" not in p]
    assert problems == []
