"""The review page in sight but with nobody at the desk, in a real browser, over a service whose claims
last LEASE_S and whose page pauses after IDLE_S without input: it stops renewing, says so, and
releases its cases at once to another operator; the next key claims again those nobody took (and
decides nothing). Before, a tab left open in sight renewed its claims for ever and held its two cases
from every other operator; then, once it paused, for a lease more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Site, serve
from tests.web.test_review import _current
from tests.web.test_review_live import _holding_two

LEASE_S = 3.0
IDLE_S = 2.0
PAUSED = "已暂停：长时间无操作"


@pytest.fixture(scope="module")
def site(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve(demo_data, tmp_path_factory, review_lease_s=str(LEASE_S), review_idle_s=str(IDLE_S)) as served:
        yield served


def test_an_idle_tab_lets_go_and_learns_its_card_was_taken(site: Site, open_page: Any) -> None:
    """op1's tab stays in sight, nobody touches it: it pauses, releases its claims and op2 gets the
    cases at once.
    op1's next key ends the pause without deciding anything; the page says the card on screen was
    taken by someone else and moves on (here, to the empty card: both are op2's)."""
    op, numbers = _holding_two(site, open_page, "idle-taken", 30.3302)
    op.page.wait_for_selector("#review-paused", state="visible")
    assert PAUSED in op.page.inner_text("#review-paused")
    op.shot("paused")
    other = open_page(label="op2")
    other.login("op2")  # at once: the pause released both cases, op2 waits for no lease to lapse
    other.page.wait_for_selector("#current article")
    assert _current(other.page) == numbers[0]
    other.page.wait_for_selector(f"#upcoming article[data-case-number='{numbers[1]}']", state="attached")

    op.page.keyboard.press("y")  # only ends the pause: the card on screen is op2's now
    op.page.wait_for_selector("#current article.review-empty")
    assert op.page.is_hidden("#review-paused")
    flash = op.page.inner_text("#flash")
    assert numbers[0] in flash and "已由其他审核员接手" in flash, flash
    assert op.page.inner_text("#last-decision") == ""
    other.page.keyboard.press("y")  # op2's decision lands: op1 decided nothing
    other.page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[0]
    )
    assert "error" not in (other.page.get_attribute("#flash", "class") or "")


def test_an_idle_tab_nobody_took_from_keeps_its_card_on_the_next_key(site: Site, open_page: Any) -> None:
    """op1's paused tab released its claims and nobody else asked: the next key claims them again (it
    is no decision), the page renews them as before and op2 gets neither case."""
    op, numbers = _holding_two(site, open_page, "idle-kept", 30.3352)
    op.page.wait_for_selector("#review-paused", state="visible")
    op.page.wait_for_timeout(LEASE_S * 1000 + 500)  # the last renewal has lapsed
    op.page.keyboard.press("y")
    op.page.wait_for_selector("#review-paused", state="hidden")
    op.page.wait_for_timeout(500)
    assert _current(op.page) == numbers[0] and op.page.inner_text("#last-decision") == ""
    assert "error" not in (op.page.get_attribute("#flash", "class") or "")
    # op1 stays at the desk, moving the pointer, while op2 logs in (a login on a loaded machine can
    # outlast IDLE_S, and the page pauses at that very limit)
    op.page.evaluate(
        "window.atDesk = setInterval(() => document.dispatchEvent(new PointerEvent('pointermove')), 200)"
    )
    other = open_page(label="op2")
    other.login("op2")
    other.page.wait_for_selector("#current article.review-empty")
    assert "2 件案件正由其他审核员处理" in other.page.inner_text("#current .empty-held")
    op.page.evaluate("clearInterval(window.atDesk)")
    op.page.mouse.move(40, 40)
    op.page.mouse.move(60, 60)
    op.page.keyboard.press("y")
    op.page.wait_for_function(
        "n => document.getElementById('last-decision').textContent.includes(n)", arg=numbers[0]
    )
    assert "error" not in (op.page.get_attribute("#flash", "class") or "")
