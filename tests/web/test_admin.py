"""The admin pages in a real browser: users (add, taken name, the last active admin, deactivate, a
new role, password), a device key shown once (it works; rotated, the old one is 401; revoked, 401), the grid
import (every problem of a bad file listed, nothing imported; then the counts of a good one), a
webhook with its failing delivery log, a non-admin refused, and the English switch."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.web.conftest import PASSWORD, Site

REPO = Path(__file__).resolve().parents[2]
DEMO_GRID = json.loads((REPO / "configs" / "demo-grid.geojson").read_text(encoding="utf-8"))


def _watched(open_page: Any, **kwargs: Any) -> Any:
    return open_page(**kwargs)


def _admin(open_page: Any, site: Site, **kwargs: Any) -> Any:
    watched = _watched(open_page, **kwargs)
    watched.login("demo-admin", site.admin_password)
    return watched


def _row(page: Any, attribute: str, value: str) -> Any:
    return page.locator(f"tr[data-{attribute}='{value}']")


def _submit(page: Any, selector: str) -> None:
    """Click what leads to another page, and wait for that page (not the one still on screen)."""
    with page.expect_navigation():
        page.click(selector)


def _device_call(site: Site, key: str) -> int:
    """A feeder call with a device key: an upload that is no multipart body. A working key gets the
    upload's own 4xx; a dead one gets 401."""
    r = httpx.post(
        f"{site.base_url}/api/uploads",
        headers={"Authorization": f"Bearer {key}"},
        content=b"not a video",
        timeout=30,
    )
    return r.status_code


def test_users(site: Site, open_page: Any) -> None:
    admin = _admin(open_page, site, label="users")
    page = admin.page
    admin.goto("/admin")
    assert page.url.endswith("/admin/users")
    assert _row(page, "username", "op1").count() == 1
    assert "审核员" in _row(page, "username", "op1").inner_text()
    admin.shot("users")

    # add an operator; they can log in
    page.fill("#add-user input[name=username]", "op3")
    page.select_option("#add-user select[name=role]", "operator")
    page.fill("#add-user input[name=password]", PASSWORD)
    _submit(page, "#add-user button[type=submit]")
    assert "op3" in page.inner_text("#admin-done")
    assert _row(page, "username", "op3").count() == 1
    op3 = site.api("op3")
    assert op3.get("/api/me").status_code == 200

    # a taken name and an enforcement user without a team: the message next to the form, input kept
    admin.allowed_statuses.update({409, 422})
    page.fill("#add-user input[name=username]", "op3")
    page.select_option("#add-user select[name=role]", "viewer")
    page.fill("#add-user input[name=password]", PASSWORD)
    _submit(page, "#add-user button[type=submit]")
    assert "op3" in page.inner_text("#admin-problem") and "已存在" in page.inner_text("#admin-problem")
    assert page.input_value("#add-user input[name=username]") == "op3"
    page.fill("#add-user input[name=username]", "ziyang9")
    page.select_option("#add-user select[name=role]", "enforcement")
    page.fill("#add-user input[name=password]", PASSWORD)
    _submit(page, "#add-user button[type=submit]")
    assert "队伍" in page.inner_text("#admin-problem")
    admin.shot("user-error")
    # a password of spaces only is refused; a team no grid cell belongs to is taken, with a notice
    page.fill("#add-user input[name=username]", "ziyang9")
    page.select_option("#add-user select[name=role]", "enforcement")
    page.fill("#add-user input[name=team]", "team-ziyang")
    page.fill("#add-user input[name=password]", " " * 12)
    _submit(page, "#add-user button[type=submit]")
    assert "空格" in page.inner_text("#admin-problem")
    page.fill("#add-user input[name=password]", PASSWORD)
    _submit(page, "#add-user button[type=submit]")
    assert "ziyang9" in page.inner_text("#admin-done") and "网格" not in page.inner_text("#admin-done")
    page.fill("#add-user input[name=username]", "xinqu1")
    page.select_option("#add-user select[name=role]", "enforcement")
    page.fill("#add-user input[name=team]", "team-xinqu")  # no such team in the demo grid
    page.fill("#add-user input[name=password]", PASSWORD)
    _submit(page, "#add-user button[type=submit]")
    assert "xinqu1" in page.inner_text("#admin-done") and "网格单元" in page.inner_text("#admin-done")

    # the last active admin cannot be deactivated
    _submit(page, "tr[data-username='demo-admin'] button[data-action=deactivate]")
    assert "最后一个" in page.inner_text("#admin-problem")
    admin.shot("last-admin")
    admin.goto("/admin/users")
    assert _row(page, "username", "demo-admin").locator("button[data-action=deactivate]").count() == 1

    # deactivate op3: their token ends at once; activate again
    _submit(page, "tr[data-username='op3'] button[data-action=deactivate]")
    assert "op3" in page.inner_text("#admin-done")
    assert "已停用" in _row(page, "username", "op3").inner_text()
    assert op3.get("/api/me").status_code == 401
    _submit(page, "tr[data-username='op3'] button[data-action=activate]")
    assert "启用" in _row(page, "username", "op3").inner_text()

    # make op3 a viewer: the token they hold is a viewer's from their next request
    op3 = site.api("op3")
    assert op3.get("/api/me").json()["role"] == "operator"
    row = _row(page, "username", "op3")
    row.locator(".admin-change summary").click()
    row.locator(".admin-change select[name=role]").select_option("viewer")
    _submit(page, "tr[data-username='op3'] .admin-change button[type=submit]")
    assert "op3" in page.inner_text("#admin-done")
    assert "查看者" in _row(page, "username", "op3").inner_text()
    assert op3.get("/api/me").json()["role"] == "viewer"

    # set op3's password: the old one no longer logs in, the new one does
    op3 = site.api("op3")
    row = _row(page, "username", "op3")
    row.locator(".admin-password summary").click()
    row.locator("input[name=password]").fill("a-brand-new-password")
    _submit(page, "tr[data-username='op3'] .admin-password button[type=submit]")
    assert "op3" in page.inner_text("#admin-done")
    assert op3.get("/api/me").status_code == 401
    r = httpx.post(
        f"{site.base_url}/api/auth/token", data={"username": "op3", "password": "a-brand-new-password"}
    )
    assert r.status_code == 200


def test_device_keys(site: Site, open_page: Any) -> None:
    admin = _admin(open_page, site, label="devices")
    page = admin.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    admin.goto("/admin/devices")
    for name in ("demo-patrol-01", "demo-cam-01", "demo-cam-02"):
        assert _row(page, "device", name).count() == 1
    admin.shot("devices")

    # issue a key: shown once, on the answer to the POST, never cached
    page.fill("#add-device input[name=name]", "patrol-09")
    page.fill("#add-device input[name=camera]", "cam-09")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/admin/devices")
    ) as answer:
        _submit(page, "#add-device button[type=submit]")
    assert answer.value.headers.get("cache-control") == "no-store"
    key = page.input_value("#secret")
    assert key.startswith("gpd_") and len(key) > 30
    page.click("#copy-secret")
    page.wait_for_selector("#flash.ok:not([hidden])")
    assert page.evaluate("navigator.clipboard.readText()") == key
    admin.shot("key-issued")

    # the list (and a reload of it) never shows it again
    _submit(page, "#secret-done")
    assert _row(page, "device", "patrol-09").count() == 1
    assert key not in page.content()
    page.reload()
    assert key not in page.content()
    assert "cam-09" in _row(page, "device", "patrol-09").inner_text()

    # the key works on feeder endpoints: the upload's own error, not 401
    status = _device_call(site, key)
    assert 400 <= status < 500 and status not in (401, 403), status
    page.reload()
    assert "从未使用" not in _row(page, "device", "patrol-09").inner_text()

    # rotate: a new key shown once; the old one is 401 at once, the new one works
    seen = page.get_attribute("tr[data-device='patrol-09'] input[name=key]", "value")
    csrf = page.get_attribute("body", "data-csrf")
    _submit(page, "tr[data-device='patrol-09'] button[data-action=rotate]")
    new_key = page.input_value("#secret")
    assert new_key.startswith("gpd_") and new_key != key
    admin.shot("key-rotated")
    assert _device_call(site, key) == 401
    assert _device_call(site, new_key) not in (401, 403)
    # the same form sent again (a reload of the page showing the key): nothing changes, it says so
    again = page.request.post(
        f"{site.base_url}/admin/devices/patrol-09/rotate", form={"csrf_token": csrf or "", "key": seen or ""}
    )
    assert again.status == 409 and "未做任何更改" in again.text()
    assert _device_call(site, new_key) not in (401, 403)
    admin.goto("/admin/devices")
    assert new_key not in page.content()

    # revoke: 401 from now on
    _submit(page, "tr[data-device='patrol-09'] button[data-action=revoke]")
    assert "patrol-09" in page.inner_text("#admin-done")
    assert "已吊销" in _row(page, "device", "patrol-09").inner_text()
    assert _device_call(site, new_key) == 401
    admin.shot("revoked")

    # a taken name is shown next to the form
    admin.allowed_statuses.add(409)
    page.fill("#add-device input[name=name]", "patrol-09")
    _submit(page, "#add-device button[type=submit]")
    assert "patrol-09" in page.inner_text("#admin-problem")
    assert page.locator("#secret").count() == 0


def _bad_grid() -> dict[str, Any]:
    bad = copy.deepcopy(DEMO_GRID)
    features = bad["features"]
    del features[1]["properties"]["team"]  # feature 1: no team
    features[2]["geometry"] = {"type": "Point", "coordinates": [120.13, 30.25]}  # feature 2: not a polygon
    features[3]["properties"]["id"] = features[0]["properties"]["id"]  # feature 3: a duplicate id
    features[4]["geometry"]["coordinates"][0][1] = [200.0, 30.25]  # feature 4: not lon/lat
    return bad


def _upload(page: Any, name: str, data: dict[str, Any]) -> None:
    body = json.dumps(data, ensure_ascii=False).encode()
    page.set_input_files(
        "#import-grid input[name=file]",
        files=[{"name": name, "mimeType": "application/geo+json", "buffer": body}],
    )
    _submit(page, "#import-grid button[type=submit]")


def test_grid_import(site: Site, open_page: Any) -> None:
    admin = _admin(open_page, site, label="grid")
    page = admin.page
    api = site.api("demo-admin")
    before = len(api.get("/api/grids").json()["features"])
    admin.goto("/admin/grid")
    assert page.locator("#cells tbody tr").count() == before
    admin.shot("grid")

    # a file with four bad features: each one listed, nothing imported
    admin.allowed_statuses.add(422)
    _upload(page, "bad-grid.geojson", _bad_grid())
    problems = page.locator("#admin-problem-list li").all_inner_texts()
    assert len(problems) == 4, problems
    assert "feature 1" in problems[0] and "team" in problems[0]
    assert "feature 2" in problems[1] and "Point" in problems[1]
    assert "feature 3" in problems[2] and "duplicate" in problems[2]
    assert "feature 4" in problems[3] and "WGS84" in problems[3]
    assert "bad-grid.geojson" in page.inner_text("#admin-problem")
    admin.shot("grid-problems")
    assert len(api.get("/api/grids").json()["features"]) == before

    # not JSON at all
    page.set_input_files(
        "#import-grid input[name=file]",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"\xff\xfe not json"}],
    )
    _submit(page, "#import-grid button[type=submit]")
    assert len(page.locator("#admin-problem-list li").all_inner_texts()) == 1

    # the demo grid plus one new cell: the counts
    good = copy.deepcopy(DEMO_GRID)
    extra = copy.deepcopy(good["features"][0])
    extra["properties"].update(id="TEST-NEW-01", name="测试网格 01")
    extra["geometry"]["coordinates"] = [
        [[121.0, 31.0], [121.01, 31.0], [121.01, 31.01], [121.0, 31.01], [121.0, 31.0]]
    ]
    good["features"].append(extra)
    _upload(page, "grid.geojson", good)
    assert page.url.split("?")[0].endswith("/admin/grid")
    done = page.inner_text("#admin-done")
    assert str(before + 1) in done and "新增 1" in done and f"更新 {before}" in done, done
    assert _row(page, "cell", "TEST-NEW-01").count() == 1
    assert len(api.get("/api/grids").json()["features"]) == before + 1
    admin.shot("grid-imported")
    page.reload()  # the redirect's page: reloading imports nothing again
    assert page.locator("#cells tbody tr").count() == before + 1

    # a file over the limit is refused before it is read
    csrf = page.evaluate("document.body.dataset.csrf")
    r = page.request.post(
        site.base_url + "/admin/grid",
        multipart={
            "csrf_token": csrf,
            "file": {
                "name": "huge.geojson",
                "mimeType": "application/json",
                "buffer": b" " * (11 * 1024 * 1024),
            },
        },
    )
    assert r.status == 413


def test_webhooks(site: Site, open_page: Any) -> None:
    admin = _admin(open_page, site, label="webhooks")
    page = admin.page
    admin.goto("/admin/webhooks")
    admin.shot("webhooks-empty")

    # a bad URL is refused next to the form
    admin.allowed_statuses.add(422)
    page.fill("#add-webhook input[name=url]", "ftp://example.org/hook")
    _submit(page, "#add-webhook button[type=submit]")
    assert "http" in page.inner_text("#admin-problem")

    # add one (nothing listens on port 9): its secret is shown once
    page.fill("#add-webhook input[name=url]", "http://127.0.0.1:9/")
    page.check("#add-webhook input[value='case.filed']")
    _submit(page, "#add-webhook button[type=submit]")
    secret = page.input_value("#secret")
    assert len(secret) >= 16
    admin.shot("webhook-secret")
    _submit(page, "#secret-done")
    assert secret not in page.content()
    hook = page.locator("article.admin-hook").last
    hook_id = hook.get_attribute("data-hook")
    assert "http://127.0.0.1:9/" in hook.inner_text()
    assert hook.locator(".admin-no-deliveries").count() == 1

    # with a secret of one's own: nothing to show once
    own = "an-own-signing-secret-0123456789"
    page.fill("#add-webhook input[name=url]", "https://example.org/gridpatrol")
    page.check("#add-webhook input[value='case.closed']")
    page.fill("#add-webhook input[name=secret]", own)
    _submit(page, "#add-webhook button[type=submit]")
    assert page.locator("#admin-done").count() == 1 and own not in page.content()
    assert page.locator("article.admin-hook").count() == 2

    # a case filed: the delivery fails (connection refused) and the log says so
    op = site.api("op1")
    case = op.get("/api/cases", params={"status": "pending_review"}).json()["items"][0]
    r = op.post(f"/api/cases/{case['id']}/transitions", data={"to": "filed"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while True:
        page.reload()
        rows = page.locator(f"article.admin-hook[data-hook='{hook_id}'] tr[data-delivery]")
        if rows.count() and rows.first.locator("td.num").inner_text() != "0":
            break
        assert time.monotonic() < deadline, "no delivery attempt within 30 s"
        time.sleep(0.5)
    row = rows.first
    assert row.get_attribute("data-status") in ("pending", "failed")
    # events in the page's language, each with the identifier integrators subscribe by; the tab too
    assert row.locator("td.admin-event").inner_text() == "立案 case.filed"
    assert row.locator("td.admin-event code").inner_text() == "case.filed"
    events = page.locator(f"article.admin-hook[data-hook='{hook_id}'] .admin-events .admin-event")
    assert events.all_inner_texts() == ["立案 case.filed"]
    assert page.inner_text("#tab-webhooks") == "事件推送"
    assert "Connect" in row.inner_text() and str(case["id"]) in row.inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row.locator("td.admin-tried").inner_text())
    admin.shot("webhook-log")

    # the same in English
    _submit(page, "header button[lang=en]")
    assert urlsplit(page.url).path == "/admin/webhooks"  # back to the page as it was, its query kept
    assert "Delivery log" in page.inner_text("main") and "Last attempt" in page.inner_text("main")
    admin.shot("webhook-log-en")
    admin.goto("/admin/users")
    assert "Add a user" in page.inner_text("main")
    admin.shot("users-en")


def test_a_phone_sized_admin_page(site: Site, open_page: Any) -> None:
    admin = _admin(open_page, site, viewport=(390, 844), mobile=True, label="phone")
    for section in ("users", "devices", "webhooks"):
        admin.goto(f"/admin/{section}")
        # nothing wider than the screen but what scrolls inside its own box
        assert admin.page.evaluate("document.documentElement.scrollWidth") <= 390
        admin.shot(f"{section}-phone")


def test_non_admin_gets_403(site: Site, open_page: Any) -> None:
    op = _watched(open_page, label="op1")
    op.allowed_statuses.add(403)
    op.login("op1")
    for path in ("/admin", "/admin/users", "/admin/devices", "/admin/grid", "/admin/webhooks"):
        response = op.goto(path)
        assert response.status == 403, path
        assert "无权访问" in op.page.inner_text("main")
    op.shot("forbidden")
    assert op.page.locator("nav.nav a[href='/admin']").count() == 0

    # nor may they post: a forged form with their own CSRF token is refused too
    csrf = op.page.evaluate("document.body.dataset.csrf")
    r = op.page.request.post(
        site.base_url + "/admin/users",
        form={"csrf_token": csrf, "username": "sneaky", "role": "admin", "password": PASSWORD},
    )
    assert r.status == 403
    names = [u["username"] for u in site.api("demo-admin").get("/api/users").json()]
    assert "sneaky" not in names
