"""Login and who-am-I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException

from api import auth
from api.routes.deps import Reader, ServicesDep, SessionDep

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/auth/token")
def login(
    session: SessionDep,
    services: ServicesDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
) -> dict[str, str]:
    """Exchange a username and password for a bearer token (OAuth2 password form)."""
    try:
        token = auth.login(session, username=username, password=password, ttl_h=services.settings.token_ttl_h)
    except auth.AuthError as exc:
        raise HTTPException(401, {"field": "password", "reason": str(exc)}) from None
    session.commit()
    return {"access_token": token, "token_type": "bearer"}


@router.get("/me")
def me(principal: Reader) -> dict[str, str | None]:
    return {"kind": principal.kind, "name": principal.name, "role": principal.role, "team": principal.team}
