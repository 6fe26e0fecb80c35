"""The pages check what the API checks, in a real browser and over plain HTTP: an officer sees only the
team's cases (another team's case is a 404, page, API and evidence alike), a viewer sees no action and
a forged post by a viewer is a 403, a forged illegal move gets the domain's 403 / 409; every page has
a Content-Security-Policy whose script-src has no 'unsafe-inline' and no inline script; user text is
text (a note of <script> shows as written, and no dialog opens); a post without the CSRF token is
refused; logging out ends the session on the server, not only in the browser."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.conftest import PASSWORD, Site

PARKING, DEBRIS = "GP-2026-000001", "GP-2026-000002"
PHONE = (390, 844)
SCRIPT_NOTE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def case_ids(site: Site) -> dict[str, int]:
    items = site.api("op1").get("/api/cases").json()["items"]
    return {c["number"]: c["id"] for c in items}


def goto(watched: Any, path: str, status: int = 200) -> Any:
    """Open a page (and wait until it is quiet); an error status expected here is no browser problem
    (chromium logs it on its console too)."""
    if status >= 400:
        watched.allowed_statuses.add(status)
    before = len(watched.problems)
    response = watched.goto(path)
    watched.page.wait_for_load_state("networkidle")
    assert response.status == status, (path, response.status)
    if status >= 400:
        watched.problems[before:] = [p for p in watched.problems[before:] if f"status of {status}" not in p]
    return response


def csrf(page: Any) -> str:
    return str(page.get_attribute("body", "data-csrf"))


def post_form(page: Any, path: str, form: dict[str, str], base_url: str) -> Any:
    """A form post with the browser's cookies, as a forged page or a script would send it."""
    return page.request.post(f"{base_url}{path}", form=form, max_redirects=0)


def test_every_page_has_a_strict_csp_and_no_inline_script(site: Site, open_page: Any) -> None:
    ids = case_ids(site)
    pages = {
        "op1": ["/cases", f"/cases/{ids[PARKING]}", "/cases?status=pending_review&sort=number"],
        "ziyang1": ["/tasks", f"/tasks/{ids[PARKING]}", f"/cases/{ids[PARKING]}"],
    }
    errors = {
        "ziyang1": [(f"/cases/{ids[DEBRIS]}", 404), (f"/tasks/{ids[DEBRIS]}", 404)],
        "op1": [("/tasks", 403)],
    }
    for username, paths in pages.items():
        watched = open_page(label=username)
        watched.login(username)
        for path, status in [(p, 200) for p in paths] + errors[username]:
            response = goto(watched, path, status)
            policy = response.headers["content-security-policy"]
            directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
            assert directives["script-src"] == ["'self'"], policy
            assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in policy
            inline = watched.page.locator("script").evaluate_all(
                "ss => ss.filter(s => !s.src && s.type !== 'application/json').length"
            )
            assert inline == 0, path
            handlers = watched.page.evaluate(
                "() => [...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                ".some(a => a.name.startsWith('on'))).length"
            )
            assert handlers == 0, path


def test_an_officer_sees_only_the_teams_cases(site: Site, open_page: Any) -> None:
    ids = case_ids(site)
    api = site.api("op1")
    other_sha = next(
        e["sha256"] for e in api.get(f"/api/cases/{ids[DEBRIS]}").json()["sightings_list"][0]["evidence"]
    )
    officer = open_page(viewport=PHONE, mobile=True, label="ziyang1")
    officer.login("ziyang1")
    page = officer.page
    goto(officer, f"/cases/{ids[DEBRIS]}", 404)
    assert page.locator("h1").inner_text() == "未找到"
    officer.shot("other-team-404")
    goto(officer, f"/tasks/{ids[DEBRIS]}", 404)
    goto(officer, "/cases")
    assert page.locator("#case-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.number)") == [
        PARKING
    ]
    goto(officer, f"/cases?team=team-nanxing&number={DEBRIS}")
    assert page.locator("#case-table tbody tr").count() == 0
    # the API and the evidence with the same cookie, and a forged move on the other team's case
    assert page.request.get(f"{site.base_url}/api/cases/{ids[DEBRIS]}").status == 404
    assert page.request.get(f"{site.base_url}/api/evidence/{other_sha}").status == 404
    forged = post_form(
        page,
        f"/cases/{ids[DEBRIS]}/move",
        {"to": "handled", "note": "x", "csrf_token": csrf(page)},
        site.base_url,
    )
    assert forged.status == 404
    # an officer may not file a case of the team either: the domain's 403, as a message page
    forged = post_form(
        page, f"/cases/{ids[PARKING]}/move", {"to": "filed", "csrf_token": csrf(page)}, site.base_url
    )
    assert forged.status == 403 and "“已立案”" in forged.text()
    assert api.get(f"/api/cases/{ids[PARKING]}").json()["status"] == "pending_review"


def test_a_viewer_sees_no_action_and_a_forged_post_is_refused(site: Site, open_page: Any) -> None:
    ids = case_ids(site)
    viewer = open_page(label="viewer1")
    viewer.login("viewer1")
    page = viewer.page
    goto(viewer, f"/cases/{ids[PARKING]}")
    assert page.locator("form.move-form, #actions button").count() == 0
    viewer.shot("no-actions")
    goto(viewer, "/tasks", 403)
    assert page.locator("h1").inner_text() == "无权访问"
    goto(viewer, f"/cases/{ids[PARKING]}")
    forged = post_form(
        page, f"/cases/{ids[PARKING]}/move", {"to": "filed", "csrf_token": csrf(page)}, site.base_url
    )
    assert forged.status == 403 and "无权访问" in forged.text()
    assert (
        page.request.post(
            f"{site.base_url}/api/cases/{ids[PARKING]}/transitions",
            form={"to": "filed"},
            headers={"X-CSRF-Token": csrf(page)},
        ).status
        == 403
    )

    # an operator's move the workflow does not allow from here: the domain's 409, on the case page
    office = open_page(label="op1")
    office.login("op1")
    goto(office, f"/cases/{ids[PARKING]}")
    forged = post_form(
        office.page,
        f"/cases/{ids[PARKING]}/move",
        {"to": "closed", "csrf_token": csrf(office.page)},
        site.base_url,
    )
    assert forged.status == 409 and 'id="move-error"' in forged.text()
    assert site.api("op1").get(f"/api/cases/{ids[PARKING]}").json()["status"] == "pending_review"


def test_a_post_without_the_csrf_token_is_refused(site: Site, open_page: Any) -> None:
    ids = case_ids(site)
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    goto(office, f"/cases/{ids[PARKING]}")
    for form in ({"to": "filed"}, {"to": "filed", "csrf_token": "0" * 64}):
        refused = post_form(page, f"/cases/{ids[PARKING]}/move", form, site.base_url)
        assert refused.status == 403 and "请求被拒绝" in refused.text()
    assert (
        page.request.post(
            f"{site.base_url}/api/cases/{ids[PARKING]}/transitions", form={"to": "filed"}
        ).status
        == 403
    )
    # the page's own form, its token removed: the 403 page, in the browser
    page.evaluate("() => document.querySelector('form.move-filed input[name=csrf_token]').remove()")
    office.allowed_statuses.add(403)
    before = len(office.problems)
    with page.expect_navigation() as answer:
        page.click("form.move-filed button[type=submit]")
    page.wait_for_load_state("networkidle")
    office.problems[before:] = [p for p in office.problems[before:] if "status of 403" not in p]
    assert answer.value.status == 403
    office.shot("csrf-refused")
    assert site.api("op1").get(f"/api/cases/{ids[PARKING]}").json()["status"] == "pending_review"


def test_user_text_is_shown_as_text(site: Site, open_page: Any) -> None:
    ids = case_ids(site)
    api = site.api("op1")
    r = api.post(f"/api/cases/{ids[PARKING]}/transitions", data={"to": "filed", "note": SCRIPT_NOTE})
    assert r.status_code == 200, r.text
    r = api.post(
        f"/api/cases/{ids[DEBRIS]}/transitions",
        data={"to": "rejected", "reason": "exempt", "note": SCRIPT_NOTE},
    )
    assert r.status_code == 200, r.text

    office = open_page(label="op1")  # fails on a dialog, and on the failed request of <img src=x>
    office.login("op1")
    page = office.page
    for number, action in ((PARKING, "filed"), (DEBRIS, "rejected")):
        goto(office, f"/cases/{ids[number]}")
        assert page.inner_text(f"#timeline li[data-action={action}] .note") == SCRIPT_NOTE
        assert page.locator("main script, main img[src=x]").count() == 0
        office.shot(f"escaped-{action}")
    # text typed into the list's form comes back as the input's value, never as markup
    goto(office, "/cases?number=%3Cscript%3Ealert(3)%3C%2Fscript%3E&camera=%22%3E%3Cb%3Ex")
    assert page.input_value("input[name=number]") == "<script>alert(3)</script>"
    assert page.input_value("input[name=camera]") == '"><b>x'
    assert page.locator("main b").count() == 0


def test_logging_out_ends_the_session_on_the_server(site: Site, open_page: Any) -> None:
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "gp_session")
    with httpx.Client(base_url=site.base_url, cookies={"gp_session": cookie}) as old:
        assert old.get("/cases").status_code == 200
        assert old.get("/api/cases").status_code == 200
        with page.expect_navigation(url="**/login"):
            page.click("#logout")
        page.wait_for_load_state("networkidle")
        office.shot("logged-out")
        answer = old.get("/cases")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert old.get("/api/cases").status_code == 401
        assert old.post("/cases/1/move", data={"to": "filed", "csrf_token": "x"}).status_code in (303, 403)


def test_a_case_id_out_of_range_is_named_never_a_server_error(site: Site, open_page: Any) -> None:
    """The review page's actions and the case page take any digits in their paths: an id no case
    column holds is a 422 naming case_id (the actions; the page's own 404), not the database's
    overflow as a 500."""
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    goto(office, "/cases")
    headers = {"X-CSRF-Token": csrf(page), "Accept": "application/json"}
    actions = (
        ("decision", {"decision": "confirm"}),
        ("undo", {}),
        ("category", {"category": "piled_debris"}),
    )
    for action, form in (*actions, ("release", {})):
        answer = page.request.post(
            f"{site.base_url}/review/99999999999999999999/{action}", form=form, headers=headers
        )
        assert answer.status == 422 and "case_id" in answer.text(), (action, answer.status, answer.text())
    for action, form in actions:  # in range, no such case
        answer = page.request.post(f"{site.base_url}/review/2147483647/{action}", form=form, headers=headers)
        assert answer.status == 404, (action, answer.status, answer.text())
    goto(office, "/cases/99999999999999999999", 404)
    assert page.locator("h1").count() == 1  # the page's own 404, not the API's JSON
    for path, status in (("/no-such-page", 404), (f"/cases/{'9' * 70}", 404), ("/cases/1/move", 405)):
        answer = goto(office, path, status)
        assert page.locator("h1").inner_text() == "未找到", path
        assert answer.headers["cache-control"] == "no-store"
    answer = goto(office, "/cases")  # a page shows what its reader may see: no copy kept after logout
    assert answer.headers["cache-control"] == "no-store"


def test_a_form_sent_after_the_session_ended_comes_back_to_its_page(site: Site, open_page: Any) -> None:
    """Someone whose session ended (logged out on another device, password changed) while on a case
    sends its form: they log in again and are back on that case, not on the form's POST-only target
    (which has no page: 'not found')."""
    office = open_page(label="op1")
    office.login("op1")
    page = office.page
    case_id = next(iter(case_ids(site).values()))
    goto(office, f"/cases/{case_id}")
    form = page.locator("form.move-form").first
    assert form.count() == 1, "the case has no move for op1"
    page.context.clear_cookies()
    with page.expect_navigation(url="**/login?**"):
        form.locator("button[type=submit]").click()
    assert page.url.endswith(f"/login?next=%2Fcases%2F{case_id}&unsent=1"), page.url
    assert page.locator("#login-unsent").is_visible()  # what was sent is not silently lost
    page.fill("input[name=username]", "op1")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_load_state("networkidle")
    assert page.url == f"{site.base_url}/cases/{case_id}"
    assert page.locator("#case").count() == 1
