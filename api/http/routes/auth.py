"""Login and who-am-I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request

from api.accounts import tokens
from api.accounts.accounts import AuthError
from api.accounts.throttle import LoginThrottled
from api.http.deps import Reader, ServicesDep

router = APIRouter(prefix="/api", tags=["auth"])


@router.post(
    "/auth/token",
    responses={
        401: {"description": "unknown user, inactive user or wrong password (one answer for all)"},
        429: {"description": "too many failed logins for this username; Retry-After says for how long"},
    },
)
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
) -> dict[str, str]:
    """Exchange a username and password for a bearer token (OAuth2 password form).

    After `login_max_failures` failed logins for a username within `login_window_s` seconds, that
    username gets 429 with Retry-After until the window ends, whether the user exists or not."""
    try:
        token = tokens.login(
            services.factory,
            read_factory=services.read_factory,
            username=username,
            password=password,
            ttl_h=services.settings.token_ttl_h,
            policy=services.login_policy,
            client=request.client.host if request.client else None,
        )
    except LoginThrottled as exc:
        raise HTTPException(
            429, {"field": exc.field, "reason": exc.reason}, headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    except AuthError as exc:
        raise HTTPException(401, {"field": "password", "reason": exc.reason}) from None
    return {"access_token": token, "token_type": "bearer"}


@router.get("/me")
def me(principal: Reader) -> dict[str, str | None]:
    return {"kind": principal.kind, "name": principal.name, "role": principal.role, "team": principal.team}
