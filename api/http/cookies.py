"""The session cookie people's browsers carry, and its CSRF token (shared by the pages and the API).

`gp_session` holds a login token of the same kind as a bearer token (api.accounts.tokens): HttpOnly,
SameSite=Strict, Secure over HTTPS. A state-changing request made with it must carry the session's
CSRF token (header `X-CSRF-Token`, or form field `csrf_token` on a page form): an HMAC of the session
token, so it needs no storage and cannot be computed without the HttpOnly cookie.
"""

from __future__ import annotations

import hashlib
import hmac

from api.errors import InputError

SESSION_COOKIE = "gp_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfMissing(InputError):
    """A state-changing API request made with the session cookie but without its CSRF token (403)."""

    status = 403


def csrf_token_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"gridpatrol-csrf-v1", hashlib.sha256).hexdigest()


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
