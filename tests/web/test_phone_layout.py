"""Every page fits a phone's width (390 px CSS): officers read their cases in the street, and a page
wider than the screen hides its buttons off to the side. Each role's pages, with the longest username
the service allows in the header."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import PASSWORD, Site, _gridpatrol

PHONE = (390, 844)
LONG_NAME = "ziyang-" + "x" * 57  # 64 characters, the most a username may have

PAGES = {
    "operator": (
        "/review",
        "/cases",
        "/cases/{case}",
        "/map",
        "/dashboard",
        "/reports",
        "/upload",
        "/chalk-marks",
        "/docs",
    ),
    "enforcement": ("/tasks", "/tasks/{case}", "/cases", "/cases/{case}", "/map", "/dashboard", "/reports"),
    "viewer": ("/cases", "/dashboard", "/reports", "/map"),
}


def _overflow(page: Any) -> list[str]:
    """The page's width beyond the screen, and the widest elements that stick out (for the message)."""
    return page.evaluate(
        """() => {
          const limit = document.documentElement.clientWidth;
          const out = [];
          for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.right > limit + 1 && getComputedStyle(el).position !== 'fixed') {
              const cls = typeof el.className === 'string' && el.className ? '.' + el.className : '';
              const id = el.id ? '#' + el.id : '';
              out.push(`${el.tagName.toLowerCase()}${id}${cls} right=${Math.round(r.right)}`);
            }
          }
          const width = document.documentElement.scrollWidth;
          return width > limit + 1 ? [`scrollWidth ${width} > ${limit}`, ...out.slice(0, 8)] : [];
        }"""
    )


@pytest.mark.parametrize("role", sorted(PAGES))
def test_every_page_fits_a_phone(site: Site, open_page: Any, role: str) -> None:
    username = f"{LONG_NAME[: -len(role)]}{role}"[:64]
    team = ["--team", "team-ziyang"] if role == "enforcement" else []
    _gridpatrol(
        "user", "add", username, "--role", role, *team, "--password-stdin", data=site.data, stdin=PASSWORD
    )
    api = site.api(username)
    cases = api.get("/api/cases").json()["items"]
    assert cases, f"{role} sees no case in the demo"
    case = cases[0]["id"]
    phone = open_page(viewport=PHONE, mobile=True, label=role)
    phone.login(username)
    wide = {}
    for path in PAGES[role]:
        phone.goto(path.format(case=case))
        phone.page.wait_for_load_state("networkidle")
        problems = _overflow(phone.page)
        if problems:
            phone.shot(path.strip("/").replace("/", "-") or "home")
            wide[path] = problems
    assert not wide, "\n".join(f"{path}: {problems}" for path, problems in wide.items())
