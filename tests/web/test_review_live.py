"""The review page keeps what it holds and what it shows up to date, in a real browser, over a service
whose claims last LEASE_S: the page renews its claims while in sight (an operator who stays on a card
past the lease keeps it), lets them lapse when left hidden, and says so when another operator took the
case meanwhile; the empty card checks again for cases released or filed since it appeared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Site, serve
from tests.web.test_review import _current, _post_garbage, _reject_all_pending

LEASE_S = 3.0


@pytest.fixture(scope="module")
def site(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve(demo_data, tmp_path_factory, review_lease_s=str(LEASE_S)) as served:
        yield served


def _set_visibility(page: Any, state: str) -> None:
    """The tab goes out of sight (another tab in front, the window minimised) or comes back."""
    page.evaluate(
        """state => {
          Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
          Object.defineProperty(document, "hidden", { configurable: true, get: () => state === "hidden" });
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def _holding_two(site: Site, open_page: Any, label: str, lat: float) -> tuple[Any, list[str]]:
    """op1 on the review page with the only two pending cases (at `lat`, far from any other test's):
    on screen and loaded ahead."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    numbers = [_post_garbage(api, f"web-live-{label}-{i}", lat + i * 0.001) for i in range(2)]
    op = open_page(label="op1")
    op.login("op1")
    op.page.wait_for_selector(f"#current article[data-case-number='{numbers[0]}']")
    op.page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")
    return op, numbers


def test_a_card_kept_past_the_lease_is_still_the_operators(site: Site, open_page: Any) -> None:
    """op1 stays on a card three leases long (a hard frame, a phone call): op2 gets neither that case
    nor the one loaded behind it (before, both claims lapsed and op2 was handed the case on op1's
    screen: the second of the two to decide got "someone else decided")."""
    op, numbers = _holding_two(site, open_page, "kept", 30.3102)
    op.page.wait_for_timeout(3 * LEASE_S * 1000)
    other = open_page(label="op2")
    other.login("op2")
    other.page.wait_for_selector("#current article.review-empty")
    assert "2 件案件正由其他审核员处理" in other.page.inner_text("#current .empty-held")
    assert _current(op.page) == numbers[0]
    op.page.keyboard.press("y")  # op1's decision lands: nobody else decided the case
    op.page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[0]
    )
    assert "error" not in (op.page.get_attribute("#flash", "class") or "")


def test_a_tab_left_hidden_lets_go_and_learns_its_card_was_taken(site: Site, open_page: Any) -> None:
    """op1's tab goes out of sight: the page stops renewing after a lease, the claims lapse and op2 gets
    the cases; back in sight, op1's page does not take them back: it says the card on screen was taken
    by someone else and moves on (here, to the empty card: both are op2's)."""
    op, numbers = _holding_two(site, open_page, "hidden", 30.3152)
    _set_visibility(op.page, "hidden")
    other = open_page(label="op2")
    other.login("op2")
    for _ in range(40):  # about two leases: the renewals stop, then the last one lapses
        other.page.wait_for_selector("#current article")
        if _current(other.page):
            break
        other.page.wait_for_timeout(500)
        other.goto("/review")
    assert _current(other.page) == numbers[0]
    other.page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")

    _set_visibility(op.page, "visible")
    op.page.wait_for_selector("#current article.review-empty")
    flash = op.page.inner_text("#flash")
    assert numbers[0] in flash and "已由其他审核员接手" in flash, flash
    assert "2 件案件正由其他审核员处理" in op.page.inner_text("#current .empty-held")
    op.shot("claim-lost")
    other.page.wait_for_timeout(LEASE_S * 1000)  # op2's page renews its claims: still op2's
    assert _current(other.page) == numbers[0]
    other.page.keyboard.press("y")
    other.page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[0]
    )


def test_the_empty_card_shows_a_case_filed_or_released_since(site: Site, open_page: Any) -> None:
    """The empty card asks again: a new case shows when the tab gets the focus, and a case another
    operator lets go of within the recheck interval (before, either showed only after a reload)."""
    api = site.api("demo-admin")
    _reject_all_pending(api)
    op = open_page(label="op1")
    op.page.clock.install()
    op.login("op1")
    page = op.page
    page.wait_for_selector("#current article.review-empty")
    # the page's timers run only when told; a number is seconds here (ms put the clock 50,000 years on,
    # past the page's idle limit)
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)

    filed = _post_garbage(api, "web-live-filed", 30.3202)
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    page.wait_for_selector(f"#current article[data-case-number='{filed}']")
    assert page.inner_text("#queue-count") == "待审核 1 件"

    # op2 holds the next case (op1 is on `filed`), then skips it: op1's empty card picks it up
    other = open_page(label="op2")
    other.login("op2")
    other.page.wait_for_selector("#current article.review-empty")
    released = _post_garbage(api, "web-live-released", 30.3212)
    other.page.evaluate("window.dispatchEvent(new Event('focus'))")
    other.page.wait_for_selector(f"#current article[data-case-number='{released}']")
    page.keyboard.press("y")
    page.wait_for_selector("#current article.review-empty")
    assert "1 件案件正由其他审核员处理" in page.inner_text("#current .empty-held")
    with other.page.expect_response(lambda r: r.url.endswith("/release")):
        other.page.keyboard.press("s")
    page.clock.run_for(16_000)  # the empty card's recheck interval (15 s) passes
    page.wait_for_selector(f"#current article[data-case-number='{released}']")
