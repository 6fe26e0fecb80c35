"""Rendering pages: Jinja2 templates (api/http/templates, autoescaped: user text is always text),
the language, the signed-in person, their CSRF token and the navigation their role may use."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.accounts.accounts import Principal
from api.http.i18n import LANGUAGE_COOKIE, LANGUAGES, Translator, pick_language
from api.http.pages.assets import Assets
from api.http.pages.session import SESSION_COOKIE, csrf_token_for

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# (path, catalogue key, roles that see it in the menu)
NAVIGATION: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/review", "nav.review", ("admin", "operator")),
    ("/cases", "nav.cases", ("admin", "operator", "enforcement", "viewer")),
    ("/chalk-marks", "nav.chalk", ("admin", "operator", "viewer")),  # as GET /api/chalk-marks
    ("/tasks", "nav.tasks", ("enforcement",)),
    ("/map", "nav.map", ("admin", "operator", "enforcement", "viewer")),
    ("/dashboard", "nav.dashboard", ("admin", "operator", "enforcement", "viewer")),
    ("/reports", "nav.reports", ("admin", "operator", "enforcement", "viewer")),
    ("/upload", "nav.upload", ("admin", "operator")),
    ("/admin", "nav.admin", ("admin",)),
)

HOME_BY_ROLE = {"admin": "/review", "operator": "/review", "enforcement": "/tasks", "viewer": "/dashboard"}


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def language_of(request: Request) -> str:
    return pick_language(request.cookies.get(LANGUAGE_COOKIE))


def translator(request: Request) -> Translator:
    return Translator(language_of(request))


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    page_path: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """`page_path`: the page shown, when it is not the request's path (a form's answer, as the page it
    was sent from: the navigation marks that page's section, and the language switch comes back to it,
    not to the form's POST-only address)."""
    assets: Assets = request.app.state.assets
    t = translator(request)
    token = request.cookies.get(SESSION_COOKIE)
    path = page_path or request.url.path
    nav = [
        {"href": href, "label": t(key), "current": path.startswith(href)}
        for href, key, roles in NAVIGATION
        if principal is not None and principal.role in roles
    ]
    body = (
        environment()
        .get_template(template)
        .render(
            t=t,
            lang=t.lang,
            languages=LANGUAGES,
            principal=principal,
            csrf_token=csrf_token_for(token) if token and principal is not None else "",
            nav=nav,
            asset=assets.url,
            path=page_path or page_address(request),
            **context,
        )
    )
    # a page holds what its reader may see: not kept for the Back button after logging out, nor by a
    # shared proxy
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


# a form a page's script sends (cases.js: the after-photo by XHR, for its progress) says so with this
# header, and is told the page to open next in NEXT_PAGE_HEADER instead of being redirected there
SCRIPT_HEADER = ("x-requested-with", "XMLHttpRequest")
NEXT_PAGE_HEADER = "X-GP-Location"


def see_other(request: Request, url: str) -> Response:
    """Where a form's answer goes next (`url`, a path of this site): a 303 to it for the browser's own
    post; for a form a page's script sent (SCRIPT_HEADER), a 204 naming it in NEXT_PAGE_HEADER, which
    the script opens: an XHR follows a redirect itself, so that page would be loaded once by the XHR,
    unseen, and again when the script opened it."""
    name, value = SCRIPT_HEADER
    if request.headers.get(name) == value:
        return Response(status_code=204, headers={NEXT_PAGE_HEADER: url, "Cache-Control": "no-store"})
    return RedirectResponse(url, status_code=303)


# the longest `next` POST /lang takes (api.http.pages.auth.switch_language)
MAX_RETURN_ADDRESS = 2000


def same_origin_page(request: Request) -> str | None:
    """The page (path and query) the request came from, by its Referer, when it is of this site."""
    referer = urlsplit(request.headers.get("referer") or "")
    if referer.scheme not in ("http", "https") or referer.netloc != request.url.netloc:
        return None
    return (referer.path or "/") + (f"?{referer.query}" if referer.query else "")


def page_address(request: Request) -> str:
    """Where the language switch comes back to: this page as it was asked for, its query (a list's
    filters and page) included. A page shown as the answer to a form (a refused move) has no address
    to ask for again: the page the form was on, else home. An address longer than the switch takes
    (a hand-made link) is the page without its query."""
    address = request.url.path
    if request.method in ("GET", "HEAD"):
        address += f"?{request.url.query}" if request.url.query else ""
    else:
        address = same_origin_page(request) or "/"
    return address if len(address) <= MAX_RETURN_ADDRESS else address.split("?")[0][:MAX_RETURN_ADDRESS]


def script_json(data: object) -> str:
    """JSON for a <script type="application/json"> block (data a page's script reads, never code):
    <, > and & escaped so that no text inside can end the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
