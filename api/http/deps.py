"""What routes declare they need: a session, the services, the caller (with a role check), the case
a path names (by id or by number).

These dependencies are `async def` on purpose: they do no blocking work on the hot path (a session
does not connect until used; a known token is answered from memory after one stat of the credentials
epoch file, see PrincipalCache), and FastAPI would otherwise hand each one to the thread pool and
back, which costs more than the work itself. A token not in the cache is looked up in the thread
pool.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import (
    DEVICE_ROLE,
    ROLES,
    RUNNER_ROLE,
    Principal,
    Role,
    RoleNotAllowed,
    Unauthenticated,
)
from api.accounts.tokens import Resolved, note_device_use, resolve_request
from api.cases.reading import case_id_for_number
from api.errors import InputError, NotFound, ServiceFault
from api.http.cookies import (
    CSRF_HEADER,
    SESSION_COOKIE,
    UNSAFE_METHODS,
    CsrfMissing,
    csrf_token_for,
    same_token,
)
from api.services import Services
from api.storage.db import as_utc, session_scope
from api.storage.models import MAX_ID

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="a login token or a device key (gpd_...)")


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def model_classes(services: Services) -> dict[str, str]:
    """The site config's model class name -> object kind (its `kinds`: the classes a box may be
    labelled with); a config that cannot be read is the service's fault (503), not the caller's."""
    from detect.config import ConfigError, load_config

    try:
        return dict(load_config(services.settings.site_config).kinds)
    except ConfigError as exc:
        raise ServiceFault("site config", str(exc).splitlines()[0]) from None


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    session = services.factory()
    try:
        yield session
    except BaseException:
        _release(session, rollback=True)
        raise
    finally:
        _release(session)


SessionDep = Annotated[Session, Depends(get_session)]


async def get_read_session(services: ServicesDep) -> AsyncIterator[Session]:
    session = services.read_factory()
    try:
        yield session
    finally:
        _release(session)


def _release(session: Session, *, rollback: bool = False) -> None:
    """Roll back / close a request's session. This runs after the answer is decided (often sent):
    a connection that died meanwhile (the database restarted) must not turn into a second error
    there; SQLAlchemy has invalidated it, and the pool replaces it."""
    try:
        if rollback:
            session.rollback()
        else:
            session.close()
    except SQLAlchemyError as exc:
        log.warning("cannot release a database connection: %s", getattr(exc, "orig", None) or exc)


ReadSessionDep = Annotated[Session, Depends(get_read_session)]


async def get_list_session(services: ServicesDep) -> AsyncIterator[Session]:
    """A session for an endpoint that answers with one statement (Services.list_factory)."""
    session = services.list_factory()
    try:
        yield session
    finally:
        _release(session)


ListSessionDep = Annotated[Session, Depends(get_list_session)]


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller: a bearer token or device key, or else a person's session cookie (the pages call
    the API with it; a state-changing call must then carry the session's CSRF token)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
    else:
        token = request.cookies.get(SESSION_COOKIE) or ""
        if not token:
            raise Unauthenticated("a bearer token is required")
        if request.method in UNSAFE_METHODS and not same_token(
            request.headers.get(CSRF_HEADER), csrf_token_for(token)
        ):
            raise CsrfMissing(CSRF_HEADER, "a request made with the session cookie needs its CSRF token")
    principal = await principal_for(services, token)
    if principal is None:
        raise Unauthenticated("unknown, expired or revoked token or key")
    return principal


async def principal_for(services: Services, token: str) -> Principal | None:
    """Who a token or device key stands for (None when unknown, expired or revoked): from the
    principal cache, or else looked up in the thread pool and cached until the cache's time or the
    credential's own expiry, whichever comes first."""
    principal = services.principals.get(token)
    if principal is None:
        stamp = services.principals.stamp()  # before the lookup: a change during it is not cached
        resolved = await run_in_threadpool(resolve_token, services, token)
        principal = resolved.principal
        if principal is not None:
            services.principals.put(token, principal, stamp, expires_at=resolved.expires_at)
    return principal


def resolve_token(services: Services, token: str) -> Resolved:
    """Who a token or device key stands for, looked up in the database (blocking: run it in the
    thread pool); a device's last use is recorded at most once a minute. That record is
    bookkeeping: when it cannot be written (database locked, disk full, connection lost) a warning
    is logged and the request goes on, since it may need no write at all."""
    with services.read_factory() as session:
        resolved = resolve_request(session, token)
    principal = resolved.principal
    if resolved.device_use_due and principal is not None and principal.device_id is not None:
        try:
            with session_scope(services.factory) as session:
                note_device_use(session, principal.device_id)
        except (SQLAlchemyError, sqlite3.Error, TimeoutError, OSError) as exc:  # never fails the request
            cause = getattr(exc, "orig", None) or exc  # the driver's message, without SQL or parameters
            log.warning("cannot record the last use of device %s: %s", principal.name, cause)
    return resolved


def require(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency letting through only these roles (DEVICE_ROLE for device keys)."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise RoleNotAllowed(principal.role)
        return principal

    return check


Reader = Annotated[Principal, Depends(require(*ROLES))]
Staff = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.ENFORCEMENT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Feeder = Annotated[Principal, Depends(require(DEVICE_ROLE, RUNNER_ROLE, Role.ADMIN, Role.OPERATOR))]
Runner = Annotated[Principal, Depends(require(RUNNER_ROLE))]


ID_UP_TO_MAX = (  # 1..2147483647 (MAX_ID), digit by digit, so the OpenAPI document says where ids end
    r"[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7]"
)
CASE_REF = r"^(?:[1-9][0-9]{0,9}|GP-[0-9]{4}-[0-9]{6,10})$"  # checked; an id past MAX_ID is told so
CASE_REF_DOCUMENTED = rf"^(?:{ID_UP_TO_MAX}|GP-[0-9]{{4}}-[0-9]{{6,10}})$"  # exactly what is taken


CASE_NUMBERS = "case_numbers"  # request.state: case id -> the number the path named it by


async def get_case_id(
    request: Request,
    services: ServicesDep,
    case_id: Annotated[
        str,
        Path(
            pattern=CASE_REF,
            json_schema_extra={"pattern": CASE_REF_DOCUMENTED},
            description="the case's id (123) or its number (GP-2026-000123)",
            examples=["123", "GP-2026-000123"],
        ),
    ],
) -> int:
    """The id of the case a path names, by id or by number (looked up in the thread pool; an id needs
    no lookup). An unknown number is a 404 like an unknown id; whether the caller may see the case is
    checked where it is read, and a case named by its number that the caller may not see is then
    answered as an unknown number is (api.http.app: the 404 names the number, never the case's id)."""
    if case_id.isdigit():
        if int(case_id) > MAX_ID:
            raise InputError("case_id", f"a case id is at most {MAX_ID}")
        return int(case_id)
    found = await run_in_threadpool(_case_id_for_number, services, case_id)
    if found is None:
        raise NotFound("case_id", f"no case {case_id}")
    numbers = getattr(request.state, CASE_NUMBERS, None) or {}
    setattr(request.state, CASE_NUMBERS, {**numbers, found: case_id})
    return found


def _case_id_for_number(services: Services, number: str) -> int | None:
    with services.read_factory() as session:
        return case_id_for_number(session, number)


CaseId = Annotated[int, Depends(get_case_id)]


def check_range(
    since: datetime | None,
    until: datetime | None,
    *,
    longest_days: int | None = None,
    names: tuple[str, str] = ("since", "until"),
) -> None:
    """A query's time range: `until` before `since` is a 422 naming until (an empty answer would pass
    for "nothing happened"), as is `until` more than `longest_days` after `since` (where given).
    `names`: the query's names of the two."""
    first, last = as_utc(since), as_utc(until)
    if first is None or last is None:
        return
    if last < first:
        raise InputError(names[1], f"is before {names[0]}")
    if longest_days is not None and last - first > timedelta(days=longest_days):
        raise InputError(
            "until",
            f"is more than {longest_days} days after since (at most {longest_days} days)",
        )
