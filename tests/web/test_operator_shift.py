"""An operator's shift on the case pages in a real browser: switching the language keeps the page as it
was (a filtered list's filters and page; a case whose form was refused comes back as its page, not as
the form's address), the case page's way back to the list keeps the filters and page it came from, and
boxes drawn and not saved are not lost to a click elsewhere without a word.

Each test makes its own cases through the incident API (a camera of its own, so no merge)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.web.conftest import Site
from tests.web.test_boxes import drag, open_editor
from tests.web.test_cases import follow, goto, move, new_case

LANGUAGE_SWITCH = "form[action='/lang'] button"


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_switching_the_language_keeps_the_lists_filters_and_page(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    for n in range(3):
        new_case(api, f"lang-{n}", 30.2790 + n * 0.0001, 120.1640, category="street_vending")
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    listed = "/cases?status=pending_review&category=street_vending&sort=number&order=asc&page=2&per_page=25"
    goto(op, listed)
    total = page.inner_text("#case-total")
    follow(page, LANGUAGE_SWITCH)
    assert page.get_attribute("html", "lang") == "en"
    assert query_of(page.url) == query_of(listed), page.url
    assert page.input_value("select[name=category]") == "street_vending"
    assert page.is_checked("input[name=status][value=pending_review]")
    english = page.inner_text("#case-total")
    assert re.findall(r"\d+", english) == re.findall(r"\d+", total) and "in all" in english, (total, english)
    op.shot("english-list")


def test_switching_the_language_after_a_refused_move_shows_the_case(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    case = new_case(api, "lang-refused", 30.2795, 120.1650)
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    goto(op, f"/cases/{case['id']}")
    move(api, case["id"], "filed")  # someone else files it meanwhile: the page's form is refused

    op.allowed_statuses.add(409)
    before = len(op.problems)
    with page.expect_navigation() as answer:
        page.click("form.move-filed button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert answer.value.status == 409
    op.problems[before:] = [p for p in op.problems[before:] if "status of 409" not in p]
    assert urlsplit(page.url).path == f"/cases/{case['id']}/move"

    with page.expect_navigation() as switched:
        page.click(LANGUAGE_SWITCH)
    page.wait_for_load_state("networkidle")
    assert switched.value.status == 200
    assert urlsplit(page.url).path == f"/cases/{case['id']}", page.url
    assert page.get_attribute("html", "lang") == "en"
    assert page.get_attribute("#case", "data-status") == "filed"
    op.shot("english-case")


def test_the_case_pages_way_back_leads_to_the_list_it_came_from(site: Site, open_page: Any) -> None:
    api = site.api("op1")
    for n in range(2):
        new_case(api, f"back-{n}", 30.2800 + n * 0.0001, 120.1660, category="piled_debris")
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    goto(op, "/cases")
    page.select_option("select[name=category]", "piled_debris")
    page.check("input[name=status][value=pending_review]")
    page.select_option("select[name=sort]", "number")
    page.select_option("select[name=per_page]", "25")
    follow(page, "#apply-filters")
    listed = page.url
    assert query_of(listed)["category"] == ["piled_debris"]

    follow(page, "#case-table a.case-link")
    follow(page, "form.move-filed button[type=submit]")  # a move: the case page comes back from a POST
    assert "done=filed" in page.url
    follow(page, "p.crumbs a")
    assert query_of(page.url) == query_of(listed), page.url
    assert page.input_value("select[name=category]") == "piled_debris"
    assert page.is_checked("input[name=status][value=pending_review]")


def test_leaving_a_case_with_boxes_not_saved_asks_first(site: Site, open_page: Any) -> None:
    case = new_case(site.api("demo-admin"), "boxes-leave", 30.2805, 120.1670)
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    goto(op, f"/cases/{case['id']}")
    editor = open_editor(page)
    editor.locator("input[value=add]").check()
    drag(page, editor, (0.5, 0.3), (0.8, 0.7))
    assert editor.locator("ol.pending-boxes li").count() == 1

    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.type))  # the watcher dismisses it: stay
    page.click("p.crumbs a")
    page.wait_for_timeout(500)
    assert asked == ["beforeunload"]
    op.problems[:] = [p for p in op.problems if not p.startswith("dialog:")]
    assert urlsplit(page.url).path == f"/cases/{case['id']}"
    assert editor.locator("ol.pending-boxes li").count() == 1  # still there to save

    with page.expect_response(lambda r: r.url.endswith(f"/api/cases/{case['id']}/boxes")) as answer:
        editor.locator("button.save-boxes").click()
    assert answer.value.status == 200
    page.wait_for_selector(".box-saved:not([hidden])")
    follow(page, "p.crumbs a")  # saved: nothing to lose, no question
    assert asked == ["beforeunload"]
    assert urlsplit(page.url).path == "/cases"
