"""Login and who-am-I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.accounts import tokens
from api.accounts.accounts import Principal
from api.http import schemas
from api.http.bodies import Received, body_of, request_body
from api.http.deps import Reader, ServicesDep

router = APIRouter(prefix="/api", tags=["auth"])


class LoginIn(BaseModel):
    """A login, as JSON or as a form (the OAuth2 password form's fields)."""

    model_config = ConfigDict(extra="ignore")  # a password form also sends grant_type, scope, ...

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@router.post(
    "/auth/token",
    response_model=schemas.Token,
    responses=schemas.error_responses(
        400,
        401,
        415,
        422,
        429,
        503,
        507,
        described={
            400: "a body that cannot be parsed (no JSON, no form)",
            415: "neither JSON nor a form",
            401: "unknown user, inactive user or wrong password (one answer for all)",
            429: "too many failed logins for this username; Retry-After says for how long",
        },
    ),
    openapi_extra=request_body(LoginIn),
)
def login(
    request: Request,
    services: ServicesDep,
    body: Annotated[Received[LoginIn], Depends(body_of(LoginIn))],
) -> schemas.Token:
    """Exchange a username and password for a bearer token (OAuth2 password form, or the same as
    JSON).

    After `login_max_failures` failed logins for a username within `login_window_s` seconds, that
    username gets 429 with Retry-After until the window ends, whether the user exists or not."""
    token = tokens.login(
        services.factory,
        read_factory=services.read_factory,
        username=body.fields.username,
        password=body.fields.password,
        ttl_h=services.settings.token_ttl_h,
        policy=services.login_policy,
        client=request.client.host if request.client else None,
    )
    return schemas.Token(access_token=token, token_type="bearer")


@router.get("/me", response_model=schemas.Me, responses=schemas.error_responses(401, 403, 503))
def me(principal: Reader) -> Principal:
    """Who the bearer token stands for."""
    return principal
