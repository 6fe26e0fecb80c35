"""Sessions for people using the web pages: a cookie, a CSRF token, a role check like the API's.

The session cookie (api.http.cookies: HttpOnly, SameSite=Strict, Secure when the request came over
HTTPS) carries a login token of the same kind as the API's bearer tokens (api.accounts.tokens), so
revoking, deactivating, changing a password and logging out end it exactly as they end a token:
logging out deletes the token row and empties every principal cache sharing the data folder.

CSRF: every state-changing request made with the session cookie must carry the session's CSRF token
(form field `csrf_token` or header `X-CSRF-Token`): an HMAC of the session token, so it needs no
storage and cannot be computed without the HttpOnly cookie. The login form, which has no session
yet, uses a double-submit cookie (`gp_login_csrf`).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from api.accounts.accounts import Principal
from api.http.cookies import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    UNSAFE_METHODS,
    csrf_token_for,
    same_token,
)
from api.http.deps import get_services, principal_for
from api.services import Services

LOGIN_CSRF_COOKIE = "gp_login_csrf"
__all__ = ["SESSION_COOKIE", "csrf_token_for", "same_token", "LOGIN_CSRF_COOKIE"]


class LoginRequired(Exception):
    """No valid session: a page redirects to the login form, a fetch gets 401."""


class PageForbidden(Exception):
    """A signed-in user whose role may not use this page or action (403)."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token (403)."""


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


async def session_principal(request: Request) -> Principal | None:
    """The person the session cookie stands for, or None (no cookie, or a token that ended)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    services: Services = await get_services(request)
    principal = await principal_for(services, token)
    if principal is None or principal.kind != "user":
        return None
    return principal


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request that lacks the session's CSRF token."""
    if request.method not in UNSAFE_METHODS:
        return
    token = request.cookies.get(SESSION_COOKIE) or ""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not token or not same_token(sent, csrf_token_for(token)):
        raise CsrfRejected()


async def current_person(request: Request) -> Principal:
    principal = await session_principal(request)
    if principal is None:
        raise LoginRequired()
    await check_csrf(request)
    request.state.principal = principal
    return principal


def person_with(*roles: str):  # type: ignore[no-untyped-def]
    """A page dependency: the signed-in person, when their role is one of these."""

    async def check(principal: Annotated[Principal, Depends(current_person)]) -> Principal:
        if principal.role not in roles:
            raise PageForbidden(principal.role)
        return principal

    return check


Person = Annotated[Principal, Depends(current_person)]
ServicesDep = Annotated[Services, Depends(get_services)]
