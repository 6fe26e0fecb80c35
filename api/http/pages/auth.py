"""Logging in and out of the pages, the language switch, the start page by role."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.accounts import tokens
from api.accounts.accounts import AuthError
from api.accounts.throttle import LoginThrottled
from api.http.i18n import LANGUAGE_COOKIE, LANGUAGES
from api.http.pages.render import HOME_BY_ROLE, MAX_RETURN_ADDRESS, render, same_origin_page
from api.http.pages.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ServicesDep,
    current_person,
    new_login_csrf,
    same_token,
    session_principal,
)

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

UNSENT = "unsent"  # the login page's flag: a form was sent after the session ended, and not saved


def safe_next(target: str | None) -> str:
    """A local path to go back to after logging in; anything else (another host, //x) is '/'."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


@router.get("/")
async def home(request: Request) -> Response:
    principal = await session_principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME_BY_ROLE.get(principal.role, "/cases"), status_code=303)


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str = "",
    username: str = "",
    status_code: int = 200,
    unsent: bool = False,
) -> Response:
    token = new_login_csrf()
    response = render(
        request,
        "login.html",
        login_csrf=token,
        next=next_path,
        error=error,
        username=username,
        status_code=status_code,
        unsent=unsent,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/login"
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None, unsent: str = "") -> Response:
    if await session_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_path=safe_next(next), unsent=bool(unsent))


@router.post("/login")
async def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    login_csrf: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=MAX_RETURN_ADDRESS)] = "/",
    unsent: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    from api.http.pages.render import translator

    t = translator(request)
    target = safe_next(next)
    if not same_token(login_csrf, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(
            request,
            next_path=target,
            unsent=bool(unsent),
            error=t("login.expired"),
            username=username,
            status_code=403,
        )
    client = request.client.host if request.client else None
    try:
        token = await run_in_threadpool(
            lambda: tokens.login(
                services.factory,
                username=username,
                password=password,
                ttl_h=services.settings.token_ttl_h,
                policy=services.login_policy,
                read_factory=services.read_factory,
                client=client,
            )
        )
    except LoginThrottled as exc:
        response = _login_page(
            request,
            next_path=target,
            unsent=bool(unsent),
            error=t("login.throttled", seconds=exc.retry_after_s),
            username=username,
            status_code=429,
        )
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except AuthError:
        return _login_page(
            request,
            next_path=target,
            unsent=bool(unsent),
            error=t("login.failed"),
            username=username,
            status_code=401,
        )
    response = RedirectResponse(target if target != "/" else "/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services.settings.token_ttl_h * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    principal = await current_person(request)  # checks the CSRF token: no logging people out from elsewhere
    token = request.cookies.get(SESSION_COOKIE) or ""

    def end() -> None:
        with services.factory() as session:
            tokens.logout(session, token)
            session.commit()
        services.principals.invalidate()

    await run_in_threadpool(end)
    log.info("user %s logged out", principal.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/lang")
async def switch_language(
    lang: Annotated[str, Form(max_length=8)], next: Annotated[str, Form(max_length=MAX_RETURN_ADDRESS)] = "/"
) -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response


@router.get("/static/{name:path}")
async def static_file(request: Request, name: str) -> Response:
    return request.app.state.assets.response(request, name)


@router.get("/favicon.ico")
async def favicon(request: Request) -> Response:
    """gridpatrol's icon (static/favicon.svg, which the pages name in <link rel="icon">) where a browser
    looks for it by itself: for what is no page of ours (an evidence picture opened on its own, an API
    answer). Served and cached as that static file (its ETag; a browser asks again with it)."""
    return request.app.state.assets.response(request, "favicon.svg")


def login_redirect(request: Request) -> str:
    """The login page, then back to the page asked for. A form sent after the session ended (logged
    out elsewhere, a changed password) is a POST the login cannot send again, to a path with no page
    of its own: it comes back to the page the form was on (the Referer, same origin only), else home,
    and the login page says that what was sent (a typed note, an after-photo) was not saved."""
    if request.method in ("GET", "HEAD"):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return f"/login?next={quote(safe_next(path), safe='')}"
    path = same_origin_page(request) or "/"
    return f"/login?next={quote(safe_next(path), safe='')}&{UNSENT}=1"
