"""The story of one case, in order, in a real browser: an operator files the parked car of the demo and
dispatches it to team-ziyang on the case page; an officer of that team, on a phone, finds it in
/tasks, opens it and marks it handled with a note and an after-photo from the phone's camera; an
officer of another team cannot open it; the operator verifies and closes it; the history shows every
step, the custody chain of the case is intact and `gridpatrol evidence verify` passes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import ARTIFACTS, SHARED, Site

PARKING = "GP-2026-000001"
PHONE = (390, 844)


def after_photo() -> Path:
    """A real JPEG photo of a street (the cn-garbage validation images)."""
    photos = sorted((SHARED / "datasets" / "cn-garbage" / "images" / "val").glob("*.jpg"))
    if not photos:
        pytest.skip("no cn-garbage photos under ../shared/datasets")
    return photos[0]


def expect_status(watched: Any, path: str, status: int) -> Any:
    """Open a page that answers with an error status on purpose (chromium logs that on its console
    too, which is expected here)."""
    watched.allowed_statuses.add(status)
    before = len(watched.problems)
    response = watched.goto(path)
    watched.page.wait_for_load_state("networkidle")
    assert response.status == status
    watched.problems[before:] = [p for p in watched.problems[before:] if f"status of {status}" not in p]
    return response


def submit(page: Any, form: str, url_part: str) -> None:
    follow(page, f"{form} button[type=submit]", lambda url: url_part in url)


def follow(page: Any, selector: str, url: Any = None) -> None:
    """Click a link or button that navigates, and wait until the new page is quiet (its images and
    icon fetched), so that the next navigation never aborts a request of this one."""
    with page.expect_navigation(url=url):
        page.click(selector)
    page.wait_for_load_state("networkidle")


def goto(watched: Any, path: str) -> Any:
    """Open a page and wait until it is quiet (its images and icon fetched), so that the next
    navigation never aborts a request of this one."""
    response = watched.goto(path)
    watched.page.wait_for_load_state("networkidle")
    return response


def test_a_parking_case_from_filing_to_closed(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    case = api.get("/api/cases", params={"number": PARKING}).json()["items"][0]
    case_id = case["id"]
    assert (case["status"], case["team"]) == ("pending_review", "team-ziyang")

    # the operator files it and dispatches it to team-ziyang on the case page
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    goto(office, f"/cases/{case_id}")
    page.wait_for_function(
        "() => Number(document.querySelector('.flagged-frame rect').getAttribute('width')) > 1"
    )
    assert page.locator("#actions form").evaluate_all("fs => fs.map(f => f.dataset.target)") == [
        "filed",
        "rejected",
    ]
    office.shot("pending")
    page.fill("form.move-filed textarea[name=note]", "车辆停在消防通道旁，确认立案")
    submit(page, "form.move-filed", "done=filed")
    assert PARKING in page.inner_text("#move-done")
    assert page.get_attribute("#case", "data-status") == "filed"
    assert page.input_value("form.move-dispatched select[name=team]") == "team-ziyang"
    page.select_option("form.move-dispatched select[name=team]", "team-ziyang")
    page.fill("form.move-dispatched textarea[name=note]", "请尽快到场处理")
    submit(page, "form.move-dispatched", "done=dispatched")
    assert page.get_attribute("#case", "data-status") == "dispatched"
    assert "team-ziyang" in page.inner_text("#timeline li[data-action=dispatched]")
    office.shot("dispatched")

    # the officer of team-ziyang, on a phone: the task list, the task, marking it handled
    officer = open_page(viewport=PHONE, mobile=True, label="ziyang1")
    officer.login("ziyang1")
    phone = officer.page
    assert phone.url.endswith("/tasks")
    task = phone.locator(f"li.task[data-number='{PARKING}']")
    assert task.count() == 1
    assert "紫阳街道 Ziyang grid 04" in task.inner_text()
    phone.wait_for_function("() => document.body.dataset.taskOrder !== undefined")
    officer.shot("tasks")
    with phone.expect_navigation(url=f"**/tasks/{case_id}"):
        task.locator("a").click()
    phone.wait_for_load_state("networkidle")
    phone.wait_for_function(
        "() => Number(document.querySelector('.flagged-frame rect').getAttribute('width')) > 1"
    )
    assert "请尽快到场处理" in phone.inner_text("#dispatch-note")
    assert phone.locator("#place-map circle.case-point").count() == 1
    photo_input = phone.locator("form.move-handled input[type=file][name=photo]")
    assert photo_input.get_attribute("capture") == "environment"
    assert photo_input.get_attribute("accept") == "image/*"
    officer.shot("task")
    # a file that is no photo: refused in the page's words, the typed note kept for the next try
    note = "已联系车主，车辆已驶离"
    not_a_photo = ARTIFACTS / "not-a-photo.jpg"
    not_a_photo.parent.mkdir(parents=True, exist_ok=True)
    not_a_photo.write_bytes(b"a note saved as .jpg, not a photo")
    phone.fill("form.move-handled textarea[name=note]", note)
    photo_input.set_input_files(str(not_a_photo))
    officer.allowed_statuses.add(422)
    before = len(officer.problems)
    # the photo goes up by the page's script (its progress shown), the answer shown in place of the page
    phone.click("form.move-handled button[type=submit]")
    phone.wait_for_selector("#move-error")
    phone.wait_for_load_state("networkidle")
    officer.problems[before:] = [p for p in officer.problems[before:] if "status of 422" not in p]
    assert "须为 JPEG、PNG、GIF 或 WebP 图片" in phone.inner_text("#move-error")
    assert phone.input_value("form.move-handled textarea[name=note]") == note
    assert api.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"
    officer.shot("photo-refused")
    photo_input = phone.locator("form.move-handled input[type=file][name=photo]")
    photo = after_photo()
    photo_input.set_input_files(str(photo))
    phone.wait_for_selector("form.move-handled .photo-chosen:not([hidden]) img.photo-preview")
    officer.shot("photo-taken")
    submit(phone, "form.move-handled", "/tasks?done=")
    assert PARKING in phone.inner_text("#task-done")
    assert phone.locator(f"li.task[data-number='{PARKING}']").count() == 0
    officer.shot("handled")

    detail = api.get(f"/api/cases/{case_id}").json()
    assert detail["status"] == "handled"
    after = [e["sha256"] for e in detail["case_evidence"] if e["role"] == "after_photo"]
    assert after == [hashlib.sha256(photo.read_bytes()).hexdigest()]

    # an officer of another team cannot open it, nor its after-photo
    other = open_page(viewport=PHONE, mobile=True, label="nanxing1")
    other.login("nanxing1")
    expect_status(other, f"/tasks/{case_id}", 404)
    assert other.page.locator("h1").inner_text() == "未找到"
    other.shot("not-found")
    expect_status(other, f"/cases/{case_id}", 404)
    assert other.page.request.get(f"{site.base_url}/api/evidence/{after[0]}").status == 404

    # the operator verifies and closes it on the case page
    goto(office, f"/cases/{case_id}")
    page.wait_for_function("() => document.querySelector('#after-photos img').naturalWidth > 0")
    assert "已联系车主，车辆已驶离" in page.inner_text("#timeline li[data-action=handled]")
    office.shot("handled")
    submit(page, "form.move-verified", "done=verified")
    submit(page, "form.move-closed", "done=closed")
    assert page.get_attribute("#case", "data-status") == "closed"
    assert page.locator("#actions form").count() == 0
    actions = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.action)")
    assert actions == ["created", "filed", "dispatched", "handled", "verified", "closed"]
    custody = page.locator("#custody-result")
    assert "ok" in (custody.get_attribute("class") or "") and "监管链完整" in custody.inner_text()
    office.shot("closed")
    follow(page, "header.topbar button[lang=en]")
    assert "Chain intact" in page.inner_text("#custody-result")
    assert page.locator("#case-status").inner_text() == "Closed"
    office.shot("closed-en")

    out = site.gridpatrol("evidence", "verify")
    assert "0 problem(s)" in out, out
