"""The case page's box editor in a real browser: an operator draws boxes on a sighting's raw frame with
the mouse, saves them (POST /api/cases/{id}/boxes, kept as a review label), and sees them again after a
reload; a save refused by name (422), one made after the session ended (401) and one that never
reached the server each say why and keep the boxes drawn; a viewer, who may not label, sees no editor.

Each test makes its own case through the incident API (a camera of its own, so no merge)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tests.web.conftest import Site
from tests.web.test_cases import PHONE, goto, new_case, settle

DETECTION = [40.0, 60.0, 300.0, 280.0]  # new_case's box, a car
DETECTION_BOX = {"x1": 40.0, "y1": 60.0, "x2": 300.0, "y2": 280.0, "class_name": "car"}


def open_editor(page: Any) -> Any:
    editor = page.locator("details.box-editor")
    assert editor.count() == 1
    editor.locator("summary").click()
    page.wait_for_selector("details.box-editor.ready")
    return editor


def labelled(editor: Any) -> list[tuple[str, str]]:
    return [
        (str(c), str(s))
        for c, s in editor.locator("ol.labelled-boxes li").evaluate_all(
            "l => l.map(i => [i.dataset.className, i.dataset.source])"
        )
    ]


def drag(page: Any, editor: Any, start: tuple[float, float], end: tuple[float, float]) -> list[int]:
    """Drag with the mouse between two points given as fractions of the shown frame; the box it should
    make, in pixels of the frame (its natural size)."""
    img = editor.locator(".box-canvas img")
    img.scroll_into_view_if_needed()
    shown = img.bounding_box()
    assert shown["y"] >= 0 and shown["y"] + shown["height"] <= page.viewport_size["height"], shown
    width, height = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert shown["width"] != width, "the frame is shown at its own size: no conversion is tested"
    page.mouse.move(shown["x"] + start[0] * shown["width"], shown["y"] + start[1] * shown["height"])
    page.mouse.down()
    page.mouse.move(shown["x"] + end[0] * shown["width"], shown["y"] + end[1] * shown["height"], steps=6)
    page.mouse.up()
    return [round(start[0] * width), round(start[1] * height), round(end[0] * width), round(end[1] * height)]


def near(box: dict[str, Any], expected: list[int]) -> bool:
    return all(abs(box[k] - v) <= 2 for k, v in zip(("x1", "y1", "x2", "y2"), expected, strict=True))


def stored_labels(site: Site, case_id: int) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(site.data / "gridpatrol.db") as db:
        rows = db.execute("SELECT what, detail FROM review_labels WHERE case_id = ? ORDER BY id", (case_id,))
        return [(what, json.loads(detail)) for what, detail in rows]


def test_an_operator_draws_saves_and_sees_the_boxes_after_a_reload(site: Site, open_page: Any) -> None:
    case = new_case(site.api("demo-admin"), "boxes-draw", 30.2771, 120.1561)
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    goto(op, f"/cases/{case['id']}")
    editor = open_editor(page)
    assert labelled(editor) == [("car", "detection")]  # before any label: the detection
    assert editor.locator("select.box-class option[value='dining table']").inner_text() == "桌子"

    # a missed person, then the detection corrected to a truck; the first correction drawn is replaced
    editor.locator("input[value=add]").check()
    editor.locator("select.box-class").select_option("person")
    person = drag(page, editor, (0.55, 0.35), (0.8, 0.9))
    editor.locator("input[value=correct]").check()
    editor.locator("select.box-class").select_option("truck")
    drag(page, editor, (0.1, 0.1), (0.3, 0.3))
    truck = drag(page, editor, (0.05, 0.15), (0.45, 0.6))
    pending = editor.locator("ol.pending-boxes li").evaluate_all("l => l.map(i => i.dataset.op)")
    assert pending == ["add", "correct"]
    assert editor.locator(".box-canvas rect.pending").count() == 2
    op.shot("drawn")

    with page.expect_response(lambda r: r.url.endswith(f"/api/cases/{case['id']}/boxes")) as answer:
        editor.locator("button.save-boxes").click()
    assert answer.value.status == 200
    saved = answer.value.json()
    assert [(b["box"]["class_name"], b["source"]) for b in saved["boxes"]] == [
        ("truck", "operator"),
        ("person", "operator"),
    ]
    assert near(saved["boxes"][0]["box"], truck) and near(saved["boxes"][1]["box"], person), saved
    page.wait_for_selector(".box-saved:not([hidden])")
    assert editor.locator("ol.pending-boxes li").count() == 0

    # kept as a review label, in pixels of the frame, with what each box does
    [(what, detail)] = stored_labels(site, case["id"])
    assert what == "box" and detail["detection"]["box"] == DETECTION
    assert [(b["op"], b["class_name"]) for b in detail["boxes"]] == [("add", "person"), ("correct", "truck")]
    assert near(detail["boxes"][0], person) and near(detail["boxes"][1], truck)

    # the page renders what was saved
    goto(op, f"/cases/{case['id']}")
    settle(page)
    editor = open_editor(page)
    assert labelled(editor) == [("truck", "operator"), ("person", "operator")]
    assert editor.locator(".box-canvas rect.labelled.operator").count() == 2
    rect = editor.locator(".box-canvas rect.labelled").first
    assert abs(float(rect.get_attribute("x")) - saved["boxes"][0]["box"]["x1"]) < 0.01
    # the evidence frame and the sighting's thumbnail draw the saved boxes, not the detection's
    for frame in ("#evidence .flagged-frame", "#sightings .thumb-frame"):
        page.wait_for_function("sel => document.querySelectorAll(sel + ' svg rect').length === 2", arg=frame)
        xs = page.locator(f"{frame} svg rect").evaluate_all("l => l.map(r => Number(r.getAttribute('x')))")
        assert sorted(xs) == sorted(b["box"]["x1"] for b in saved["boxes"]), (frame, xs)
    op.shot("reloaded")


def test_a_failed_save_says_why_and_keeps_the_boxes(site: Site, open_page: Any) -> None:
    case = new_case(site.api("demo-admin"), "boxes-fail", 30.2781, 120.1551)
    op = open_page(label="op1")
    op.allowed_statuses = {401, 422}
    op.login("op1")
    page = op.page
    goto(op, f"/cases/{case['id']}")
    editor = open_editor(page)
    error = editor.locator(".box-error")

    # another operator removes the detection while this page still shows it: removing it again is
    # refused by name (the first box sent), and nothing of this save is kept
    other = site.api("op2").post(
        f"/api/cases/{case['id']}/boxes",
        json={"boxes": [{"op": "remove", **DETECTION_BOX}]},
    )
    assert other.status_code == 200, other.text
    editor.locator("ol.labelled-boxes li button.box-remove").click()
    editor.locator("input[value=add]").check()
    drag(page, editor, (0.5, 0.5), (0.7, 0.7))
    editor.locator("button.save-boxes").click()
    error.wait_for(state="visible")
    assert "第 1 个框" in error.inner_text() and "删除此框" in error.inner_text(), error.inner_text()
    pending = editor.locator("ol.pending-boxes li")
    assert pending.evaluate_all(
        "l => l.map(i => i.dataset.op + (i.className.includes('refused') ? '!' : ''))"
    ) == [
        "remove!",
        "add",
    ]
    assert len(stored_labels(site, case["id"])) == 1  # op2's alone

    # the server out of reach: said so, the boxes kept
    pending.first.locator("button.box-discard").click()
    page.context.set_offline(True)
    before = len(op.problems)
    editor.locator("button.save-boxes").click()
    error.wait_for(state="visible")
    assert "无法连接服务器" in error.inner_text(), error.inner_text()
    page.context.set_offline(False)
    assert pending.count() == 1

    # the session ended: said so, the boxes kept
    page.context.clear_cookies()
    editor.locator("button.save-boxes").click()
    page.wait_for_function("() => document.querySelector('.box-error').textContent.includes('登录已失效')")
    assert pending.evaluate_all("l => l.map(i => i.dataset.op)") == ["add"]
    assert editor.locator(".box-canvas rect.pending").count() == 1
    op.shot("kept")
    assert len(stored_labels(site, case["id"])) == 1
    offline = ("ERR_INTERNET_DISCONNECTED", "/boxes net::")  # the save sent offline, on purpose
    op.problems[before:] = [p for p in op.problems[before:] if not any(o in p for o in offline)]


def test_on_a_phone_a_finger_draws_a_box(site: Site, open_page: Any) -> None:
    """A touch drag (chromium's own touch input) draws a box, and does not scroll the page."""
    case = new_case(site.api("demo-admin"), "boxes-touch", 30.2801, 120.1531)
    op = open_page(viewport=PHONE, mobile=True, label="op1-phone")
    op.login("op1")
    page = op.page
    goto(op, f"/cases/{case['id']}")
    editor = open_editor(page)
    editor.locator("input[value=add]").check()
    img = editor.locator(".box-canvas img")
    img.scroll_into_view_if_needed()
    shown = img.bounding_box()
    scrolled = page.evaluate("() => window.scrollY")
    touch = page.context.new_cdp_session(page)
    points = [(0.2 + 0.1 * i, 0.2 + 0.12 * i) for i in range(5)]
    for i, (fx, fy) in enumerate(points):
        kind = "touchStart" if i == 0 else "touchMove"
        at = {"x": shown["x"] + fx * shown["width"], "y": shown["y"] + fy * shown["height"]}
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [at]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_selector("ol.pending-boxes li[data-op=add]")
    assert editor.locator(".box-canvas rect.pending").count() == 1
    assert page.evaluate("() => window.scrollY") == scrolled
    op.shot("touch")


def test_a_viewer_sees_no_box_editor(site: Site, open_page: Any) -> None:
    case = new_case(site.api("demo-admin"), "boxes-viewer", 30.2791, 120.1541)
    viewer = open_page(label="viewer1")
    viewer.login("viewer1")
    goto(viewer, f"/cases/{case['id']}")
    settle(viewer.page)
    assert viewer.page.locator("#sightings .sighting").count() == 1
    assert viewer.page.locator("details.box-editor").count() == 0
    assert viewer.page.locator("script[src*='boxes.js']").count() == 0
