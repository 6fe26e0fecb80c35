"""The review queue in a real browser, keyboard only: confirm, reject with a reason, undo, change the
category, skip; two operators never hold the same case; the decisions land in the case service."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.web.conftest import PASSWORD, Site


def _current(page: Any) -> str:
    return page.get_attribute("#current article", "data-case-number") or ""


def _wait_for_next(page: Any, previous: str) -> str:
    page.wait_for_function(
        "prev => (document.querySelector('#current article') || {}).dataset?.caseNumber !== prev",
        arg=previous,
    )
    return _current(page)


# the element is all on the screen (not below the fold)
IN_VIEW = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
  return r.height > 0 && r.top >= -1 && r.bottom <= window.innerHeight + 1; }"""


def _post_garbage(api: Any, incident_id: str, lat: float) -> str:
    """A garbage incident of demo-cam-02 at (lat, 120.1718), sent as a camera would: its case number."""
    incident = {
        "id": incident_id,
        "category": "piled_debris",
        "object_kind": "garbage",
        "source_id": "demo-cam-02",
        "first_seen_wall": "2026-12-01T09:00:00+08:00",
        "last_seen_wall": "2026-12-01T09:05:00+08:00",
        "box": [10, 10, 50, 50],
        "position": [lat, 120.1718],
    }
    r = api.post("/api/incidents", data={"incident": json.dumps(incident)})
    assert r.status_code == 201, r.text
    return str(r.json()["case_number"])


def test_keyboard_review_of_the_demo_cases(site: Site, open_page: Any) -> None:
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    assert page.url.endswith("/review")
    page.wait_for_selector("#current article[data-case-id] .frame img")
    # the flagged frame is the raw one with the stored box drawn over it, not burnt in
    page.wait_for_function("() => document.querySelector('#current .frame rect').getAttribute('width') > 1")
    # the dwell strip: first seen, middle, last seen, each with its time
    captions = page.locator("#current .strip figcaption").all_inner_texts()
    assert len(captions) == 3 and all("·" in c for c in captions), captions
    # at the site's offset, as the case list shows them (the demo's cameras are in Asia/Shanghai, the
    # site's offset too: no camera time follows in brackets), as are the first and last seen times
    assert all(re.search(r"· \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", c) for c in captions), captions
    # the facts are in the page's language, the object's kind and the peak confidence too
    facts = page.inner_text("#current dl.facts")
    assert re.search(r"\b(car|garbage|max)\b", facts) is None, facts
    assert re.search(r"(小汽车|垃圾)\n", facts) and "最高" in facts, facts
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n", facts + "\n")) == 2, facts
    assert "(+08:00)" not in facts and "（摄像头" not in facts, facts
    op.shot("first-case")

    api = site.api("op1")
    pending = {
        c["number"]: c for c in api.get("/api/cases", params={"status": "pending_review"}).json()["items"]
    }
    assert len(pending) == 2
    first = _current(page)
    assert first in pending

    # change the category (C, then 3 = piled_debris / 1 = illegal_parking), and back
    original = pending[first]["category"]
    other = "street_vending"
    page.keyboard.press("c")
    page.keyboard.press("2")  # street_vending is the 2nd category
    page.wait_for_selector("#current .card-note")
    assert api.get(f"/api/cases/{pending[first]['id']}").json()["category"] == other
    page.keyboard.press("c")
    page.keyboard.press(str(("illegal_parking", "street_vending", "piled_debris").index(original) + 1))
    for _ in range(50):  # the change is posted before the card is redrawn: wait for it to land
        if api.get(f"/api/cases/{pending[first]['id']}").json()["category"] == original:
            break
        page.wait_for_timeout(100)
    assert api.get(f"/api/cases/{pending[first]['id']}").json()["category"] == original
    page.wait_for_selector(f"#current article[data-case-number='{first}']")

    # each choice is a button, so the keyboard reaches those past the 9 number keys: Enter on one picks it
    def category_becomes(name: str) -> None:
        for _ in range(50):
            if api.get(f"/api/cases/{pending[first]['id']}").json()["category"] == name:
                return
            page.wait_for_timeout(100)
        raise AssertionError(f"the category did not become {name}")

    page.keyboard.press("c")
    page.locator("#category-panel button.choice").nth(1).focus()
    page.keyboard.press("Enter")
    category_becomes(other)
    page.keyboard.press("c")
    page.keyboard.press(str(("illegal_parking", "street_vending", "piled_debris").index(original) + 1))
    category_becomes(original)
    page.wait_for_selector(f"#current article[data-case-number='{first}']")

    # reject the first with reason 1 (false_positive): the next case is on screen at once
    page.keyboard.press("r")
    page.wait_for_selector("#reject-panel:not([hidden])")
    page.wait_for_function(IN_VIEW, arg="#reject-panel")  # below the card, brought into sight
    page.keyboard.press("1")
    second = _wait_for_next(page, first)
    assert second in pending and second != first
    page.wait_for_function("() => document.getElementById('last-decision').textContent.length > 0")
    op.shot("after-reject")
    case_one = api.get(f"/api/cases/{pending[first]['id']}").json()
    assert case_one["status"] == "rejected" and case_one["reject_reason"] == "false_positive"

    # undo brings it back on screen, still pending; reject it again, then confirm the other
    page.keyboard.press("u")
    page.wait_for_function(
        "n => document.querySelector('#current article').dataset.caseNumber === n", arg=first
    )
    assert api.get(f"/api/cases/{pending[first]['id']}").json()["status"] == "pending_review"
    page.keyboard.press("r")
    page.keyboard.press("1")
    _wait_for_next(page, first)
    assert _current(page) == second
    page.keyboard.press("y")
    page.wait_for_selector("#current article.review-empty")
    op.shot("queue-empty")

    def status_of(number: str) -> str:
        return api.get(f"/api/cases/{pending[number]['id']}").json()["status"]

    def status_becomes(number: str, status: str) -> None:
        # a decision is posted in the background after the next card is shown: give it time to land
        for _ in range(50):
            if status_of(number) == status:
                return
            page.wait_for_timeout(100)
        assert status_of(number) == status

    status_becomes(first, "rejected")
    status_becomes(second, "filed")
    # undo with the queue done: the case comes back on screen, and confirming it again empties the
    # queue (the next one was asked for after it was shown: not that same case again)
    page.keyboard.press("u")
    page.wait_for_function(
        "n => document.querySelector('#current article').dataset.caseNumber === n", arg=second
    )
    page.keyboard.press("y")
    page.wait_for_selector("#current article.review-empty")
    status_becomes(second, "filed")
    page.wait_for_timeout(300)
    assert "error" not in (page.get_attribute("#flash", "class") or ""), page.inner_text("#flash")
    history = [h["what"] for h in api.get(f"/api/cases/{pending[first]['id']}").json()["history"]]
    assert history == ["created", *["recategorized"] * 4, "rejected", "undo", "rejected"]
    site.gridpatrol("evidence", "verify")  # exits non-zero on any altered evidence or custody entry


def test_two_operators_never_see_the_same_case(site: Site, open_page: Any) -> None:
    api = site.api("demo-admin")
    # four new cases sent as a camera would (the demo's two were decided above), 100 m apart
    numbers = [_post_garbage(api, f"web-two-operators-{i}", 30.2662 + i * 0.001) for i in range(4)]
    a, b = open_page(label="op1"), open_page(label="op2")
    a.login("op1")
    b.login("op2")
    held = []
    for watched in (a, b):
        # each holds the case on screen and the one it loaded ahead
        watched.page.wait_for_selector("#current article[data-case-id]")
        watched.page.wait_for_selector("#upcoming article[data-case-id]", state="attached")
        held += [_current(watched.page), watched.page.get_attribute("#upcoming article", "data-case-number")]
    assert sorted(held) == sorted(numbers), held
    a.shot("op1")
    b.shot("op2")
    # op1 skips: the skipped case goes back to the queue, never to op2's screen while op1 holds it
    a.page.keyboard.press("s")
    _wait_for_next(a.page, held[0])
    assert _current(a.page) == held[1]
    assert api.get("/api/health").status_code == 200


def test_on_a_phone_reject_and_change_category_show_their_lists(site: Site, open_page: Any) -> None:
    """The reasons and the categories open below the card: on a phone they are scrolled into sight,
    not opened out of view with nothing seeming to happen."""
    _post_garbage(site.api("demo-admin"), "web-phone-panels", 30.2702)
    phone = open_page(viewport=(390, 844), mobile=True, label="op1")
    phone.login("op1")
    page = phone.page
    page.wait_for_selector("#current article[data-case-id]")
    for action in ("category", "reject"):
        page.tap(f"#current button[data-action={action}]")
        page.wait_for_selector(f"#{action}-panel:not([hidden])")
        page.wait_for_function(IN_VIEW, arg=f"#{action}-panel", timeout=2000)
        phone.shot(action)
        page.keyboard.press("Escape")


def test_a_decision_that_does_not_land_brings_its_card_back(site: Site, open_page: Any) -> None:
    """A decision refused because the session ended puts the card back in front, its error on it (the
    case still waits for review) with a link to log in again that comes back to the queue; one refused
    because someone else decided the case meanwhile (409) is said so and its card stays gone; an undo
    after the session ended offers the same link."""
    api = site.api("demo-admin")
    for i in range(3):
        _post_garbage(api, f"web-decision-fails-{i}", 30.2752 + i * 0.001)
    op = open_page(label="op1")
    op.allowed_statuses = {401, 409}
    op.login("op1")
    page = op.page
    page.wait_for_selector("#current article[data-case-id]")
    page.wait_for_selector("#upcoming article[data-case-id]", state="attached")

    # another user rejects the case on screen before the operator's confirm lands: a 409, said so
    taken = _current(page)
    taken_id = page.get_attribute("#current article", "data-case-id")
    r = api.post(f"/api/cases/{taken_id}/transitions", data={"to": "rejected", "reason": "duplicate"})
    assert r.status_code == 200, r.text
    page.keyboard.press("y")
    page.wait_for_function("() => (document.getElementById('flash').className || '').includes('error')")
    assert "已被他人处理" in page.inner_text("#flash")
    page.wait_for_timeout(300)
    assert _current(page) not in ("", taken)
    assert page.locator(f"article[data-case-number='{taken}']").count() == 0

    # the session ends (its cookie is gone): the confirm is a 401 and the card comes back, in front
    lost, lost_id = _current(page), page.get_attribute("#current article", "data-case-id")
    page.context.clear_cookies()
    page.keyboard.press("y")
    page.wait_for_selector(f"#current article[data-case-number='{lost}'] .decision-failed")
    message = page.inner_text("#current .decision-failed")
    assert lost in message and "仍待审核" in message, message
    op.shot("card-back")
    assert api.get(f"/api/cases/{lost_id}").json()["status"] == "pending_review"

    # the error offers to log in again (before, nothing did: the operator had to guess /login), and
    # the login comes back to the review queue
    again = page.locator("#current .decision-failed a")
    assert again.inner_text() == "重新登录"
    again.click()
    page.wait_for_url(re.compile(r"/login\?next=%2Freview$"))
    assert page.input_value("form[action='/login'] input[name=next]") == "/review"
    page.fill("input[name=username]", "op1")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/review$"))
    page.wait_for_selector("#current article[data-case-id]")

    # a decision lands, then the session ends: the undo offers the same link (before, the login page
    # came back as the card, with no link)
    # the card after the next one (skipping the decided and the shown: two ids), fetched while in session
    with page.expect_response(lambda r: "/review/next?skip=" in r.url and "," in r.url):
        page.keyboard.press("y")
    page.wait_for_function("() => document.getElementById('last-decision').textContent.length > 0")
    page.context.clear_cookies()
    page.keyboard.press("u")
    undo_again = page.locator("#flash a.log-in-again")
    undo_again.wait_for()
    assert undo_again.inner_text() == "重新登录"
    assert undo_again.get_attribute("href") == "/login?next=%2Freview"
    assert page.locator("#current form[action='/login']").count() == 0


def test_the_heading_counts_the_cases_still_awaiting_review(site: Site, open_page: Any) -> None:
    """The heading's "N pending" follows the operator's decisions and undos (before, it kept the count
    the page was loaded with however many cases were decided)."""
    api = site.api("demo-admin")
    for i in range(2):
        _post_garbage(api, f"web-pending-count-{i}", 30.2802 + i * 0.001)
    op = open_page(label="op2")
    op.login("op2")
    page = op.page
    page.wait_for_selector("#current article[data-case-id]")
    page.wait_for_selector("#upcoming article[data-case-id]", state="attached")

    def pending() -> int:
        return int(api.get("/api/cases", params={"status": "pending_review"}).json()["total"])

    def heading_says(count: int) -> None:
        page.wait_for_function(
            "n => document.getElementById('queue-count').textContent === `待审核 ${n} 件`", arg=count
        )

    before = pending()
    heading_says(before)
    page.keyboard.press("y")
    heading_says(before - 1)
    assert pending() == before - 1
    page.keyboard.press("r")
    page.keyboard.press("2")
    heading_says(before - 2)
    page.keyboard.press("u")
    heading_says(before - 1)
    assert pending() == before - 1


def _reject_all_pending(api: Any) -> None:
    """Leave the queue empty: the cases earlier tests left awaiting review are rejected."""
    items = api.get("/api/cases", params={"status": "pending_review", "per_page": 500}).json()["items"]
    for case in items:
        r = api.post(f"/api/cases/{case['id']}/transitions", data={"to": "rejected", "reason": "duplicate"})
        assert r.status_code == 200, r.text


def test_a_skipped_case_left_alone_is_said_so_and_offered_again(site: Site, open_page: Any) -> None:
    """When the only case left is one the operator skipped, the empty card says so and offers it again
    (before, it said that no case waits for review while the heading said 1 pending); when the only one
    left is held by another operator, it says that."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    number = _post_garbage(api, "web-skipped-left", 30.2852)
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    page.wait_for_selector(f"#current article[data-case-number='{number}']")
    page.wait_for_selector("#upcoming article.review-empty", state="attached")
    page.keyboard.press("s")
    page.wait_for_selector("#current article.review-empty")
    assert page.inner_text("#queue-count") == "待审核 1 件"
    assert page.is_hidden("#current .empty-none")
    skipped = page.locator("#current .empty-skipped")
    assert "没有待审核的案件" not in page.inner_text("#current article")
    assert skipped.is_visible() and "您跳过的 1 件案件仍待审核" in skipped.inner_text()
    op.shot("skipped-left")
    page.click("#current button[data-action=unskip]")
    page.wait_for_selector(f"#current article[data-case-number='{number}']")

    # op1 holds it now: op2's queue is empty for that reason, and says so
    other = open_page(label="op2")
    other.login("op2")
    other.page.wait_for_selector("#current article.review-empty")
    assert other.page.is_hidden("#current .empty-none")
    assert other.page.is_hidden("#current .empty-skipped")
    held = other.page.inner_text("#current .empty-held")
    assert "1 件案件正由其他审核员处理" in held, held
    other.shot("held-elsewhere")


def test_a_cards_message_leaves_with_the_card(site: Site, open_page: Any) -> None:
    """The "Category changed" message is on the card it was changed on, and goes when the operator moves
    on (before, it stayed in the page's message line over the next case)."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    for i in range(2):
        _post_garbage(api, f"web-card-message-{i}", 30.2902 + i * 0.001)
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    page.wait_for_selector("#current article[data-case-id]")
    page.wait_for_selector("#upcoming article[data-case-id]", state="attached")
    first = _current(page)
    page.keyboard.press("c")
    page.keyboard.press("2")
    page.wait_for_function("() => document.body.innerText.includes('类别已改为')")
    assert "类别已改为" in page.inner_text("#current article")  # on the card it was changed on
    page.keyboard.press("s")
    _wait_for_next(page, first)
    page.wait_for_timeout(300)
    assert "类别已改为" not in page.inner_text("body")


def test_an_undo_before_the_next_card_has_loaded_keeps_the_card_it_moved_back(
    site: Site, open_page: Any
) -> None:
    """Confirm, then undo at once, while the card after the next one is still loading: the undone case
    comes back in front and the case it displaced stays next (before, the late card landed over it, and
    with nothing else left the queue then said it was empty while that case waited, held by the
    operator)."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    numbers = [_post_garbage(api, f"web-undo-race-{i}", 30.2952 + i * 0.001) for i in range(2)]
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    page.wait_for_selector(f"#current article[data-case-number='{numbers[0]}']")
    page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")
    late: list[Any] = []  # the next card's requests, held back as on a slow line
    page.route("**/review/next?*", lambda route: late.append(route))
    page.keyboard.press("y")
    _wait_for_next(page, numbers[0])
    page.wait_for_function("() => document.getElementById('last-decision').textContent.length > 0")
    with page.expect_response(lambda r: r.url.endswith("/undo")):
        page.keyboard.press("u")
    assert late, "the card after the next one was not asked for"
    for route in late:  # it lands after the undo's answer
        route.continue_()
    page.unroute("**/review/next?*")
    page.wait_for_selector(f"#current article[data-case-number='{numbers[0]}']")
    page.wait_for_timeout(300)
    page.keyboard.press("y")
    _wait_for_next(page, numbers[0])
    assert _current(page) == numbers[1]


def test_undo_takes_back_the_last_decision_made_though_an_earlier_one_lands_later(
    site: Site, open_page: Any
) -> None:
    """Two quick confirms whose answers come back in the other order (the first on a slow line): U
    takes back the second, the last one made, and the page says that one is the last (before, the first
    answer to land last became "the last decision": U brought back the first case)."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    numbers = [_post_garbage(api, f"web-undo-order-{i}", 30.3002 + i * 0.001) for i in range(3)]
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    page.wait_for_selector(f"#current article[data-case-number='{numbers[0]}']")
    page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")
    ids = {n: page.get_attribute(f"article[data-case-number='{n}']", "data-case-id") for n in numbers[:2]}
    slow: list[Any] = []

    def first_is_slow(route: Any) -> None:
        if f"/review/{ids[numbers[0]]}/decision" in route.request.url:
            slow.append(route)
        else:
            route.continue_()

    page.route("**/review/*/decision", first_is_slow)
    page.keyboard.press("y")
    _wait_for_next(page, numbers[0])
    page.keyboard.press("y")
    page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[1]
    )
    assert slow, "the first decision was not held back"
    with page.expect_response(lambda r: r.url.endswith(f"/review/{ids[numbers[0]]}/decision")):
        slow[0].continue_()
    page.unroute("**/review/*/decision")
    page.wait_for_timeout(200)
    assert numbers[1] in page.inner_text("#last-decision")
    page.keyboard.press("u")
    page.wait_for_selector(f"#current article[data-case-number='{numbers[1]}']")
    assert api.get(f"/api/cases/{ids[numbers[1]]}").json()["status"] == "pending_review"
    assert api.get(f"/api/cases/{ids[numbers[0]]}").json()["status"] == "filed"


def test_a_key_held_down_decides_one_case(site: Site, open_page: Any) -> None:
    """Y held a little long (the keyboard repeats it) confirms the case on screen, not the ones after it
    too (before, each repeat confirmed the next case)."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    numbers = [_post_garbage(api, f"web-held-key-{i}", 30.3052 + i * 0.001) for i in range(3)]
    op = open_page(label="op1")
    op.login("op1")
    page = op.page
    page.wait_for_selector(f"#current article[data-case-number='{numbers[0]}']")
    page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")
    page.keyboard.down("y")
    page.keyboard.down("y")  # the keyboard's repeat, while the key is still down
    page.keyboard.down("y")
    page.keyboard.up("y")
    page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[0]
    )
    page.wait_for_timeout(500)
    assert _current(page) == numbers[1]
    pending = api.get("/api/cases", params={"status": "pending_review"}).json()["items"]
    assert sorted(c["number"] for c in pending) == numbers[1:]
