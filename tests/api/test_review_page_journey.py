"""An operator's shift on the review page, in a real browser (zh-CN) over a real server: a case someone
else decided while it was on the operator's screen, an evidence picture missing from the store, and a
session that ended before a decision landed. Each is said in the operator's language, on the card it
concerns; before, the page showed the server's English reasons and a broken picture."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.api.api_testkit import LiveServer, incident_json

CHROMIUM = Path(os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _jpeg(seed: int, width: int = 640, height: int = 360) -> bytes:
    """A real picture (the page decodes it): noise, different per seed."""
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _post(device: Any, incident_id: str, index: int) -> dict[str, Any]:
    """A parking case at its own place (100 m apart), with a raw frame, the annotated one and a crop."""
    files = {
        "raw": _jpeg(index * 3),
        "annotated": _jpeg(index * 3 + 1),
        "crop": _jpeg(index * 3 + 2, 100, 100),
    }
    data = incident_json(incident_id, position=(30.2741 + index * 0.001, 120.1551), files=files)
    parts = [("files", (f"{incident_id}-{role}.jpg", body, "image/jpeg")) for role, body in files.items()]
    r = device.post("/api/incidents", data={"incident": json.dumps(data)}, files=parts)
    assert r.status_code == 201, r.text
    return {"id": r.json()["case_id"], "number": r.json()["case_number"], "files": files}


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _review_page(server: LiveServer, browser: Any, problems: list[str], size: tuple[int, int]) -> Any:
    """The operator's /review in Chinese, on a screen of `size`."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale="zh-CN")
    context.add_cookies(
        [
            {"name": "gp_session", "value": server.tokens["operator"], "url": server.url},
            {"name": "gp_lang", "value": "zh-CN", "url": server.url},
        ]
    )
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(server.url + "/review")
    return page


def _flash_error(page: Any) -> str:
    page.wait_for_function("() => (document.getElementById('flash').className || '').includes('error')")
    return str(page.inner_text("#flash"))


def test_a_case_someone_else_decided_meanwhile_is_said_so_and_leaves(
    make_server: Any, sqlite_url: str, chromium: Any
) -> None:
    """The case on screen is filed and dispatched by someone else: the operator's category change says
    so in Chinese, with the case's status now, and the card leaves (before: "请求失败：case_id: case
    GP-... is dispatched now, no longer in review", and the card stayed for a decision that could only
    be refused too); a confirm on a case rejected meanwhile says the same (before: "to: cannot move a
    case from rejected to filed; allowed from rejected: ...")."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        cases = [_post(device, f"elsewhere-{i}", i) for i in range(3)]
    admin = server.client("admin")
    problems: list[str] = []
    page = _review_page(server, chromium, problems, (1920, 1080))
    first, second, third = cases
    page.wait_for_selector(f"#current article[data-case-id='{first['id']}']")
    page.wait_for_selector(f"#upcoming article[data-case-id='{second['id']}']", state="attached")

    for target in ("filed", "dispatched"):
        r = admin.post(f"/api/cases/{first['id']}/transitions", data={"to": target})
        assert r.status_code == 200, r.text
    page.keyboard.press("c")
    page.keyboard.press("3")
    message = _flash_error(page)
    assert f"{first['number']} 已被他人处理，现为“已派遣”" in message, message
    assert "类别更改未生效" in message and "no longer in review" not in message, message
    page.wait_for_selector(f"#current article[data-case-id='{second['id']}']")
    assert admin.get(f"/api/cases/{first['id']}").json()["category"] == "illegal_parking"

    r = admin.post(f"/api/cases/{second['id']}/transitions", data={"to": "rejected", "reason": "duplicate"})
    assert r.status_code == 200, r.text
    page.keyboard.press("y")
    page.wait_for_selector(f"#current article[data-case-id='{third['id']}']")
    page.wait_for_function(
        "n => document.getElementById('flash').textContent.includes(n)", arg=second["number"]
    )
    message = page.inner_text("#flash")
    assert f"{second['number']} 已被他人处理，现为“已驳回”" in message, message
    assert "决定未生效" in message and "cannot move" not in message, message
    assert page.locator(f"article[data-case-id='{second['id']}']").count() == 0

    # the operator confirms the last one, which is dispatched before they think better of it: U says
    # that it cannot be undone and why (before: "case_id: case GP-... has no decision of yours to undo")
    page.keyboard.press("y")
    page.wait_for_selector("#current article.review-empty")
    page.wait_for_function("() => document.getElementById('last-decision').textContent.length > 0")
    r = admin.post(f"/api/cases/{third['id']}/transitions", data={"to": "dispatched"})
    assert r.status_code == 200, r.text
    page.keyboard.press("u")
    page.wait_for_function("() => document.getElementById('flash').textContent.includes('无法撤销')")
    message = page.inner_text("#flash")
    assert f"{third['number']} 的决定无法撤销" in message and "decision of yours" not in message, message
    assert admin.get(f"/api/cases/{third['id']}").json()["status"] == "dispatched"
    assert problems == []


def test_an_evidence_picture_missing_from_the_store_is_said_so_on_its_card(
    make_server: Any, sqlite_url: str, chromium: Any
) -> None:
    """The flagged frame of the case on screen and the crop of the one loaded ahead are gone from the
    evidence folder: each card says that a picture cannot be shown and not to judge from it, and leaves
    the broken picture out (before: a broken-image icon with a clipped caption, and nothing said); a
    card whose pictures are all there says nothing."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        cases = [_post(device, f"missing-{i}", i) for i in range(3)]
    store = server.services.store
    for case, role in ((cases[0], "raw"), (cases[1], "crop")):
        path = store.path_for(hashlib.sha256(case["files"][role]).hexdigest())  # type: ignore[attr-defined]
        path.unlink()
    problems: list[str] = []
    page = _review_page(server, chromium, problems, (1366, 768))
    page.wait_for_selector(f"#current article[data-case-id='{cases[0]['id']}']")
    line = page.locator("#current .picture-missing")
    line.wait_for(state="visible")
    assert "证据图片无法显示" in line.inner_text() and "请勿凭此卡片判断" in line.inner_text()
    assert page.locator("#current .frame img.flagged").is_hidden()

    # the card loaded ahead noticed its missing crop while out of sight, and says so at the front
    page.wait_for_selector(f"#upcoming article[data-case-id='{cases[1]['id']}']", state="attached")
    page.keyboard.press("s")
    page.wait_for_selector(f"#current article[data-case-id='{cases[1]['id']}']")
    page.locator("#current .picture-missing").wait_for(state="visible")
    assert page.locator("#current img.crop").is_hidden()
    assert page.locator("#current .frame img.flagged").is_visible()

    page.keyboard.press("s")
    page.wait_for_selector(f"#current article[data-case-id='{cases[2]['id']}']")
    page.wait_for_function("() => document.querySelector('#current .frame img.flagged').naturalWidth > 0")
    assert page.locator("#current .picture-missing").is_hidden()
    assert problems == []


def test_a_decision_after_the_session_ended_says_so_in_the_operators_words(
    make_server: Any, sqlite_url: str, chromium: Any
) -> None:
    """The session ends (its cookie gone) before a confirm: the card comes back with the reason in
    Chinese (before: the server's "Authorization: log in first") and the link to log in again."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        cases = [_post(device, f"ended-{i}", i) for i in range(2)]
    problems: list[str] = []
    page = _review_page(server, chromium, problems, (1366, 768))
    page.wait_for_selector(f"#current article[data-case-id='{cases[0]['id']}']")
    page.wait_for_selector(f"#upcoming article[data-case-id='{cases[1]['id']}']", state="attached")
    page.context.clear_cookies()
    page.keyboard.press("y")
    failed = page.locator(f"#current article[data-case-id='{cases[0]['id']}'] .decision-failed")
    failed.wait_for()
    text = failed.inner_text()
    assert "登录已失效" in text and "Authorization" not in text, text
    assert failed.locator("a.log-in-again").inner_text() == "重新登录"
    assert problems == []
