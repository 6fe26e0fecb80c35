"""The admin pages (role admin only): users, devices and their keys, the grid import, webhooks.

Plain server-rendered forms: every change is a POST carrying the session's CSRF token, answered by a
303 back to the section with a flash code in the query (`?done=added&name=op3`; a fixed set of codes,
never free text), so reloading never repeats it. The exceptions are the two answers that carry a
secret, a device key (issued or rotated) and a webhook's signing secret: those are rendered as the
POST's own response, with `Cache-Control: no-store`, and are never put in a cookie, a URL or the
database in clear, so no later page can show them again. That page names the redirect the POST would
have answered (`then`: the section with its flash code) and admin.js makes it the page's history
entry at once (history.replaceState), so a reload (or going back to it) GETs that section, saying
what was done and that the secret is not shown again, instead of sending the form again (which would
add the device a second time: a 409).

Every change calls the same domain function as the JSON API (api.http.routes.admin, reports.put_grids)
and, after a credential change, empties the principal cache the same way. A user's mistake (a taken
name, the last active admin, a bad GeoJSON feature) is caught by name and shown next to the form, at
the error's HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.accounts import accounts
from api.accounts.accounts import AccountConflict, AccountNotFound, AuthError, Principal, Role
from api.admin_log import admin_action
from api.cases import stats, webhooks
from api.cases.acting import dispatch_teams, team_has_cells
from api.cases.grids import GridImportError, GridReplaceRefused, geojson_cells, import_cells
from api.cases.webhooks import (
    SECRET_MAX,
    SECRET_MIN,
    DeliveryStatus,
    WebhookInputError,
    WebhookNotFound,
    WebhookTaken,
    WebhookTargetRefused,
    WebhookUrlUnusable,
)
from api.errors import InputError
from api.http.i18n import Translator
from api.http.pages.render import render, script_json, translator
from api.http.pages.session import (
    LoginRequired,
    PageForbidden,
    ServicesDep,
    check_csrf,
    person_with,
    session_principal,
)
from api.services import Services
from api.storage.models import MAX_ID, GridCell, User
from streams.urls import mask_credentials

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

AdminPerson = Annotated[Principal, Depends(person_with(Role.ADMIN))]

GRID_MAX_BYTES = 10 * 1024 * 1024  # a district's grid is a few hundred polygons: well under 1 MB
MULTIPART_SLACK_BYTES = 64 * 1024  # the form's other fields and part headers
DELIVERIES_SHOWN = 500  # newest deliveries read for the log, shared among the webhooks
DELIVERIES_PER_HOOK = 20

SECTIONS = ("users", "devices", "grid", "webhooks")

# the flash codes a redirect may carry, per section -> catalogue key
DONE: Mapping[str, Mapping[str, str]] = {
    "users": {
        "added": "admin.users.done.added",
        "added_no_cells": "admin.users.done.added_no_cells",
        "deactivated": "admin.users.done.deactivated",
        "activated": "admin.users.done.activated",
        "unchanged": "admin.users.done.unchanged",
        "password": "admin.users.done.password",
        "changed": "admin.users.done.changed",
        "changed_no_cells": "admin.users.done.changed_no_cells",
    },
    "devices": {
        "added": "admin.devices.done.added",
        "rotated": "admin.devices.done.rotated",
        "revoked": "admin.devices.done.revoked",
        "unchanged": "admin.devices.done.unchanged",
    },
    "grid": {"imported": "admin.grid.done"},
    "webhooks": {
        "added": "admin.webhooks.done.added",
        "added_secret": "admin.webhooks.done.added_secret",
        "deactivated": "admin.webhooks.done.deactivated",
        "unchanged": "admin.webhooks.done.unchanged",
        "activated": "admin.webhooks.done.activated",
        "already_active": "admin.webhooks.done.already_active",
    },
}
GRID_COUNTS = ("count", "added", "updated", "removed")  # the numbers a grid import's redirect carries

NO_STORE = {"Cache-Control": "no-store"}

T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------------


async def _write(services: Services, work: Callable[[Session], T]) -> T:
    """Run `work` in one write transaction (in the thread pool): committed when it returns."""

    def run() -> T:
        with services.factory() as session:
            try:
                result = work(session)
                session.commit()
                return result
            except BaseException:
                session.rollback()
                raise

    return await run_in_threadpool(run)


async def _read(services: Services, work: Callable[[Session], T]) -> T:
    def run() -> T:
        with services.read_factory() as session:
            return work(session)

    return await run_in_threadpool(run)


def _offset(services: Services) -> timezone:
    return timezone(timedelta(hours=services.settings.timezone_offset_h))


def _zone_label(offset: timezone) -> str:
    minutes = int((offset.utcoffset(None) or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _when(naive_utc: datetime | None, offset: timezone, *, seconds: bool = False) -> str:
    """A stored (naive UTC) time in the district's local time, to the minute (or the second: webhook
    retries come seconds apart); '' when unset."""
    if naive_utc is None:
        return ""
    local = naive_utc.replace(tzinfo=UTC).astimezone(offset)
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _done_message(t: Translator, section: str, query: Mapping[str, str]) -> str:
    """The flash message a redirect's query names (a known code; a name or counts, checked)."""
    key = DONE.get(section, {}).get(query.get("done", ""))
    if key is None:
        return ""
    name = query.get("name", "")
    values: dict[str, object] = {"name": name if accounts.NAME_RE.fullmatch(name) else ""}
    for count in GRID_COUNTS:
        text = query.get(count, "")
        values[count] = int(text) if text.isdigit() and len(text) < 10 else 0
    return t(key, **values)


def _done_url(section: str, done: str, **values: object) -> str:
    """The section's page with a flash code (and a name or counts) in its query."""
    query = urlencode({"done": done, **{k: str(v) for k, v in values.items()}})
    return f"/admin/{section}?{query}"


def _back(section: str, done: str, **values: object) -> RedirectResponse:
    return RedirectResponse(_done_url(section, done, **values), status_code=303)


def _input_text(t: Translator, exc: InputError) -> str:
    """A domain error with no message of its own in the catalogue: the field and the domain's reason."""
    return t("admin.error.input", field=exc.field, reason=exc.reason)


@dataclass
class Problem:
    """What went wrong with a form: the message, the HTTP status, and (grid import) every problem."""

    message: str
    status: int
    items: list[str] | None = None
    at: str = "top"  # "top" of the section (a row's action) or the "form" that was sent


# --- sections ----------------------------------------------------------------------------------------


def _section(
    request: Request,
    principal: Principal,
    services: Services,
    section: str,
    *,
    problem: Problem | None = None,
    done: str = "",
    **context: Any,
) -> Response:
    t = translator(request)
    offset = _offset(services)
    return render(
        request,
        f"admin/{section}.html",
        principal=principal,
        section=section,
        sections=SECTIONS,
        zone=_zone_label(offset),
        done=done,
        problem=problem,
        status_code=problem.status if problem else 200,
        i18n_json=script_json(t.subset("admin.js.")),
        **context,
    )


@router.get("/admin")
async def admin_home(principal: AdminPerson) -> Response:
    return RedirectResponse("/admin/users", status_code=303)


# --- users -------------------------------------------------------------------------------------------


async def _users_page(
    request: Request,
    principal: Principal,
    services: Services,
    *,
    problem: Problem | None = None,
    done: str = "",
    form: Mapping[str, str] | None = None,
) -> Response:
    offset = _offset(services)

    def work(session: Session) -> tuple[list[dict[str, Any]], list[str]]:
        listed = accounts.list_users(session)
        teams = set(dispatch_teams(session)) | {u.team for u in listed if u.team}
        users = [
            {
                "username": u.username,
                "role": u.role,
                "team": u.team or "",
                "active": u.active,
                "created": _when(u.created_at, offset),
                "last_login": _when(u.last_login_at, offset),
            }
            for u in listed
        ]
        return users, sorted(teams)

    users, teams = await _read(services, work)
    return _section(
        request,
        principal,
        services,
        "users",
        problem=problem,
        done=done,
        users=users,
        teams=teams,
        roles=[str(r) for r in accounts.ROLES],
        form=form or {"username": "", "role": "", "team": ""},
        password_min=accounts.PASSWORD_MIN,
        password_max=accounts.PASSWORD_MAX,
    )


@router.get("/admin/users")
async def users_page(request: Request, principal: AdminPerson, services: ServicesDep) -> Response:
    message = _done_message(translator(request), "users", request.query_params)
    return await _users_page(request, principal, services, done=message)


def _user_error(t: Translator, exc: AuthError, username: str, *, conflict: str = "taken") -> str:
    """The message for a user change the domain refused; `conflict` names what a 409 means for this
    change (a taken name when adding, the last active admin when deactivating or demoting)."""
    if isinstance(exc, AccountNotFound):
        return t("admin.users.error.not_found", name=username)
    if isinstance(exc, AccountConflict):
        return t(f"admin.users.error.{conflict}", name=username)
    key = f"admin.users.error.{exc.field}"
    if t.has(key):
        return t(key, min=accounts.PASSWORD_MIN, max=accounts.PASSWORD_MAX)
    return _input_text(t, exc)


@router.post("/admin/users")
async def add_user(
    request: Request,
    principal: AdminPerson,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    team: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=accounts.PASSWORD_MAX)] = "",
) -> Response:
    username, team = username.strip(), team.strip()

    def work(session: Session) -> bool:
        """True when the user's team has a grid cell (or none is needed): an enforcement team with none
        is allowed (the grid may be imported later) but sees no case until a cell names it."""
        user = accounts.create_user(
            session, username=username, password=password, role=role, team=team or None
        )
        return user.role != Role.ENFORCEMENT or team_has_cells(session, user.team or "")

    try:
        has_cells = await _write(services, work)
    except AuthError as exc:
        message = _user_error(translator(request), exc, username)
        form = {"username": username, "role": role, "team": team}
        return await _users_page(
            request, principal, services, problem=Problem(message, exc.status, at="form"), form=form
        )
    admin_action(principal, "user.add", f"user:{username}", role=role, team=team or None)
    if not has_cells:
        return _back("users", "added_no_cells", name=username)
    return _back("users", "added", name=username)


async def _set_active(
    request: Request, principal: Principal, services: Services, username: str, active: bool
) -> Response:
    try:
        user, changed = await _write(
            services, lambda session: accounts.set_user_active(session, username=username, active=active)
        )
    except AuthError as exc:
        message = _user_error(translator(request), exc, username, conflict="last_admin")
        return await _users_page(request, principal, services, problem=Problem(message, exc.status))
    if changed and not active:
        services.principals.invalidate()
    name = user.username  # as stored: the path may name it in another case
    if changed:
        admin_action(principal, "user.activate" if active else "user.deactivate", f"user:{name}")
    done = ("activated" if active else "deactivated") if changed else "unchanged"
    return _back("users", done, name=name)


@router.post("/admin/users/{username}/deactivate")
async def deactivate_user(
    request: Request, username: str, principal: AdminPerson, services: ServicesDep
) -> Response:
    return await _set_active(request, principal, services, username, active=False)


@router.post("/admin/users/{username}/activate")
async def activate_user(
    request: Request, username: str, principal: AdminPerson, services: ServicesDep
) -> Response:
    return await _set_active(request, principal, services, username, active=True)


@router.post("/admin/users/{username}/password")
async def set_password(
    request: Request,
    username: str,
    principal: AdminPerson,
    services: ServicesDep,
    password: Annotated[str, Form(max_length=accounts.PASSWORD_MAX)] = "",
) -> Response:
    try:
        user = await _write(
            services, lambda session: accounts.set_password(session, username=username, password=password)
        )
    except AuthError as exc:
        message = _user_error(translator(request), exc, username)
        return await _users_page(request, principal, services, problem=Problem(message, exc.status))
    services.principals.invalidate()
    admin_action(principal, "user.password", f"user:{user.username}")
    return _back("users", "password", name=user.username)


@router.post("/admin/users/{username}/change")
async def change_user(
    request: Request,
    username: str,
    principal: AdminPerson,
    services: ServicesDep,
    role: Annotated[str, Form(max_length=16)] = "",
    team: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """A new role and team for a user (the row's form sends both; an empty team is none). The user
    stays logged in and has them from their next request."""

    def work(session: Session) -> tuple[User, bool, bool]:
        user, changed = accounts.change_user(session, username=username, role=role or None, team=team)
        orphan = user.role == Role.ENFORCEMENT and not team_has_cells(session, user.team or "")
        return user, changed, orphan

    try:
        user, changed, orphan = await _write(services, work)
    except AuthError as exc:
        message = _user_error(translator(request), exc, username, conflict="last_admin_role")
        return await _users_page(request, principal, services, problem=Problem(message, exc.status))
    name = user.username
    if not changed:
        return _back("users", "unchanged", name=name)
    services.principals.invalidate()
    admin_action(principal, "user.change", f"user:{name}", role=user.role, team=user.team)
    return _back("users", "changed_no_cells" if orphan else "changed", name=name)


# --- devices -----------------------------------------------------------------------------------------


def _device_rows(session: Session, offset: timezone) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "key_version": accounts.key_version(d),
            "camera": d.camera_id or "",
            "active": d.active,
            "created": _when(d.created_at, offset),
            "last_used": _when(d.last_used_at, offset),
            "revoked": _when(d.revoked_at, offset) if not d.active else "",
        }
        for d in accounts.list_devices(session)
    ]


async def _devices_page(
    request: Request,
    principal: Principal,
    services: Services,
    *,
    problem: Problem | None = None,
    done: str = "",
    form: Mapping[str, str] | None = None,
) -> Response:
    offset = _offset(services)
    devices = await _read(services, lambda session: _device_rows(session, offset))
    return _section(
        request,
        principal,
        services,
        "devices",
        problem=problem,
        done=done,
        devices=devices,
        form=form or {"name": "", "camera": ""},
    )


@router.get("/admin/devices")
async def devices_page(request: Request, principal: AdminPerson, services: ServicesDep) -> Response:
    message = _done_message(translator(request), "devices", request.query_params)
    return await _devices_page(request, principal, services, done=message)


def _device_error(t: Translator, exc: AuthError, name: str) -> str:
    if isinstance(exc, AccountNotFound):
        return t("admin.devices.error.not_found", name=name)
    if isinstance(exc, accounts.KeyChanged):
        return t("admin.devices.error.key_changed", name=name)
    if isinstance(exc, AccountConflict):
        return t("admin.devices.error.taken", name=name)
    if exc.field == "name":
        return t("admin.devices.error.name")
    return _input_text(t, exc)


def _secret_page(
    request: Request,
    principal: Principal,
    *,
    section: str,
    heading: str,
    note: str,
    secret: str,
    then: str,
) -> Response:
    """The one page that shows a new device key or webhook secret (never cached, never shown again);
    `then`: the section's page saying what was done (_done_url, no secret in it), which becomes this
    page's history entry (admin.js), so that a reload shows it rather than sending the form again."""
    t = translator(request)
    response = render(
        request,
        "admin/secret.html",
        principal=principal,
        section=section,
        sections=SECTIONS,
        heading=heading,
        note=note,
        secret=secret,
        then=then,
        i18n_json=script_json(t.subset("admin.js.")),
    )
    response.headers.update(NO_STORE)
    return response


@router.post("/admin/devices")
async def add_device(
    request: Request,
    principal: AdminPerson,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=64)] = "",
    camera: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    name, camera = name.strip(), camera.strip()
    t = translator(request)
    try:
        _, key = await _write(
            services, lambda session: accounts.create_device(session, name=name, camera_id=camera or None)
        )
    except AuthError as exc:
        form = {"name": name, "camera": camera}
        problem = Problem(_device_error(t, exc, name), exc.status, at="form")
        return await _devices_page(request, principal, services, problem=problem, form=form)
    admin_action(principal, "device.add", f"device:{name}", camera=camera or None)
    return _secret_page(
        request,
        principal,
        section="devices",
        heading=t("admin.key.issued", name=name),
        note="",
        secret=key,
        then=_done_url("devices", "added", name=name),
    )


@router.post("/admin/devices/{name}/rotate")
async def rotate_device(
    request: Request,
    name: str,
    principal: AdminPerson,
    services: ServicesDep,
    shown: Annotated[str, Form(alias="key", max_length=64)] = "",
) -> Response:
    """A new key, shown once. The form names the key the page showed (key_version): sent again by a
    reload of the page that shows the new key, it changes nothing and says so."""
    t = translator(request)
    seen = shown or None
    try:
        _, key = await _write(services, lambda session: accounts.rotate_device(session, name=name, seen=seen))
    except AuthError as exc:
        problem = Problem(_device_error(t, exc, name), exc.status)
        return await _devices_page(request, principal, services, problem=problem)
    services.principals.invalidate()
    admin_action(principal, "device.rotate", f"device:{name}")
    return _secret_page(
        request,
        principal,
        section="devices",
        heading=t("admin.key.rotated", name=name),
        note=t("admin.key.old_dead"),
        secret=key,
        then=_done_url("devices", "rotated", name=name),
    )


@router.post("/admin/devices/{name}/revoke")
async def revoke_device(
    request: Request, name: str, principal: AdminPerson, services: ServicesDep
) -> Response:
    try:
        _, changed = await _write(services, lambda session: accounts.revoke_device(session, name=name))
    except AuthError as exc:
        problem = Problem(_device_error(translator(request), exc, name), exc.status)
        return await _devices_page(request, principal, services, problem=problem)
    if changed:
        services.principals.invalidate()
        admin_action(principal, "device.revoke", f"device:{name}")
    return _back("devices", "revoked" if changed else "unchanged", name=name)


# --- grid --------------------------------------------------------------------------------------------


async def _grid_page(
    request: Request,
    principal: Principal,
    services: Services,
    *,
    problem: Problem | None = None,
    done: str = "",
    warnings: Sequence[str] = (),
) -> Response:
    def work(session: Session) -> list[dict[str, Any]]:
        return [f["properties"] for f in stats.grid_geojson(session, principal=principal)["features"]]

    cells = await _read(services, work)
    return _section(
        request,
        principal,
        services,
        "grid",
        problem=problem,
        done=done,
        cells=cells,
        max_mb=GRID_MAX_BYTES // (1024 * 1024),
        warnings=warnings,
    )


@router.get("/admin/grid")
async def grid_page(request: Request, principal: AdminPerson, services: ServicesDep) -> Response:
    message = _done_message(translator(request), "grid", request.query_params)
    return await _grid_page(request, principal, services, done=message)


@dataclass(frozen=True)
class GridUpload:
    principal: Principal
    too_large: bool


async def grid_upload(request: Request) -> GridUpload:
    """The admin posting a grid file. The declared size is checked before the form is read (checking
    the CSRF token reads it), so an oversized upload is refused without being spooled to disk; a body
    of undeclared size (no Content-Length: no browser sends a form so) is refused the same way."""
    principal = await session_principal(request)
    if principal is None:
        raise LoginRequired()
    if principal.role != Role.ADMIN:
        raise PageForbidden(principal.role)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > GRID_MAX_BYTES + MULTIPART_SLACK_BYTES:
        return GridUpload(principal, too_large=True)
    await check_csrf(request)
    return GridUpload(principal, too_large=False)


@dataclass(frozen=True)
class GridChange:
    imported: int
    added: int
    updated: int
    removed: int


@router.post("/admin/grid")
async def import_grid(
    request: Request, upload: Annotated[GridUpload, Depends(grid_upload)], services: ServicesDep
) -> Response:
    t = translator(request)
    principal = upload.principal
    max_mb = GRID_MAX_BYTES // (1024 * 1024)
    if upload.too_large:
        problem = Problem(t("admin.grid.error.too_large", mb=max_mb), 413, at="form")
        return await _grid_page(request, principal, services, problem=problem)
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        await form.close()
        return await _grid_page(
            request, principal, services, problem=Problem(t("admin.grid.error.no_file"), 422, at="form")
        )
    try:
        raw = await file.read(GRID_MAX_BYTES + 1)
    finally:
        await form.close()
    if len(raw) > GRID_MAX_BYTES:
        problem = Problem(t("admin.grid.error.too_large", mb=max_mb), 413, at="form")
        return await _grid_page(request, principal, services, problem=problem)
    try:
        cells = await run_in_threadpool(geojson_cells, raw)
    except GridImportError as exc:
        problem = Problem(
            t("admin.grid.error.problems", count=len(exc.problems), file=file.filename),
            exc.status,
            exc.problems,
            at="form",
        )
        return await _grid_page(request, principal, services, problem=problem)

    force = form.get("force") == "1"

    def work(session: Session) -> tuple[GridChange, list[str]]:
        before = set(session.scalars(select(GridCell.id)))
        now = {cell.id for cell in cells}
        replacement = import_cells(session, cells=cells, force=force)
        change = GridChange(len(cells), len(now - before), len(now & before), len(before - now))
        return change, replacement.warnings()

    try:
        change, warnings = await _write(services, work)
    except GridReplaceRefused as exc:
        problem = Problem(
            t("admin.grid.error.stranded", file=file.filename), exc.status, exc.extra["stranded"], at="form"
        )
        return await _grid_page(request, principal, services, problem=problem)
    services.grid_cache.invalidate()
    for warning in warnings:
        log.warning("grid import by %s from %s: %s", principal.name, file.filename, warning)
    admin_action(
        principal, "grid.import", "grid", cells=change.imported, forced=force or None, file=file.filename
    )
    counts = {
        "count": change.imported,
        "added": change.added,
        "updated": change.updated,
        "removed": change.removed,
    }
    if warnings:  # shown with the result, not only logged: the page itself, not a redirect
        done = t(DONE["grid"]["imported"], **counts)
        return await _grid_page(request, principal, services, done=done, warnings=warnings)
    return _back("grid", "imported", **counts)


# --- webhooks ----------------------------------------------------------------------------------------


def _hook_state(state: webhooks.DeliveryState, offset: timezone) -> dict[str, Any]:
    """A webhook's deliveries in brief for its page, as `gridpatrol webhook list` shows them."""
    return {
        "waiting": state.waiting,
        "failed": state.failed,
        "tried": state.last_tried,
        "at": _when(state.last_attempt_at, offset, seconds=True),
        # in the delivery log's words: a delivery to be tried again is "pending" there
        "outcome": "pending" if state.last_outcome == "retrying" else state.last_outcome,
        "code": state.last_status_code,
        "next": _when(state.next_attempt_at, offset, seconds=True),
    }


async def _webhooks_page(
    request: Request,
    principal: Principal,
    services: Services,
    *,
    problem: Problem | None = None,
    done: str = "",
    form: Mapping[str, Any] | None = None,
) -> Response:
    offset = _offset(services)

    def work(session: Session) -> list[dict[str, Any]]:
        hooks = webhooks.list_webhooks_with_state(session)
        log_by_hook: dict[int, list[dict[str, Any]]] = {hook.id: [] for hook in hooks}
        for d in webhooks.list_deliveries(session, limit=DELIVERIES_SHOWN):
            rows = log_by_hook.get(d.webhook_id)
            if rows is None or len(rows) >= DELIVERIES_PER_HOOK:
                continue
            rows.append(
                {
                    "id": d.id,
                    "event": d.event,
                    "case_id": d.case_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "code": d.last_status_code,
                    "error": mask_credentials(d.last_error or ""),
                    "created": _when(d.created_at, offset),
                    "tried": _when(d.last_attempt_at, offset, seconds=True),
                    "tried_unknown": d.attempts > 0 and d.last_attempt_at is None,  # before 0020
                    "next": (
                        _when(d.next_attempt_at, offset, seconds=True)
                        if d.status == DeliveryStatus.PENDING
                        else ""
                    ),
                    "delivered": _when(d.delivered_at, offset),
                }
            )
        return [
            {
                "id": h.id,
                "url": mask_credentials(h.url),
                "events": h.events,
                "active": h.active,
                "deliveries": log_by_hook[h.id],
                "state": _hook_state(h.delivery, offset),
            }
            for h in hooks
        ]

    hooks = await _read(services, work)
    return _section(
        request,
        principal,
        services,
        "webhooks",
        problem=problem,
        done=done,
        hooks=hooks,
        events=[str(e) for e in webhooks.EVENTS],
        form=form or {"url": "", "events": []},
        secret_min=SECRET_MIN,
        secret_max=SECRET_MAX,
        per_hook=DELIVERIES_PER_HOOK,
    )


@router.get("/admin/webhooks")
async def webhooks_page(request: Request, principal: AdminPerson, services: ServicesDep) -> Response:
    message = _done_message(translator(request), "webhooks", request.query_params)
    return await _webhooks_page(request, principal, services, done=message)


@router.post("/admin/webhooks")
async def add_webhook(
    request: Request,
    principal: AdminPerson,
    services: ServicesDep,
    url: Annotated[str, Form(max_length=500)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    secret: Annotated[str, Form(max_length=SECRET_MAX)] = "",
) -> Response:
    t = translator(request)
    url, secret = url.strip(), secret.strip()
    chosen = list(dict.fromkeys(events or []))
    form = {"url": url, "events": chosen}
    if secret and len(secret) < SECRET_MIN:
        problem = Problem(t("admin.webhooks.error.secret", min=SECRET_MIN, max=SECRET_MAX), 422, at="form")
        return await _webhooks_page(request, principal, services, problem=problem, form=form)
    try:
        hook, signing_secret = await _write(
            services,
            lambda session: webhooks.create_webhook(
                session,
                url=url,
                events=chosen or None,
                secret=secret or None,
                targets=services.webhook_targets,
            ),
        )
    except WebhookTaken as exc:  # the form sent twice: the first one registered it
        problem = Problem(t("admin.webhooks.error.taken", id=exc.hook_id), exc.status, at="form")
        return await _webhooks_page(request, principal, services, problem=problem, form=form)
    except WebhookInputError as exc:
        key = f"admin.webhooks.error.{exc.field}"
        # a refused host or an unusable URL: the reason, not the form rule
        says_why = isinstance(exc, WebhookTargetRefused | WebhookUrlUnusable)
        message = t(key) if t.has(key) and not says_why else _input_text(t, exc)
        problem = Problem(message, exc.status, at="form")
        return await _webhooks_page(request, principal, services, problem=problem, form=form)
    admin_action(principal, "webhook.add", f"webhook:{hook.id}", url=hook.url, events=",".join(hook.events))
    if secret:  # the admin's own secret: nothing new to show
        return _back("webhooks", "added")
    return _secret_page(
        request,
        principal,
        section="webhooks",
        heading=t("admin.secret.heading", id=hook.id, url=mask_credentials(hook.url)),
        note=t("admin.secret.note"),
        secret=signing_secret,
        then=_done_url("webhooks", "added_secret"),
    )


@router.post("/admin/webhooks/{hook_id:int}/deactivate")
async def deactivate_webhook(
    request: Request,
    hook_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: AdminPerson,
    services: ServicesDep,
) -> Response:
    try:
        hook, changed = await _write(
            services, lambda session: webhooks.deactivate_webhook(session, hook_id=hook_id)
        )
    except WebhookNotFound as exc:
        problem = Problem(translator(request)("admin.webhooks.error.not_found", id=exc.hook_id), exc.status)
        return await _webhooks_page(request, principal, services, problem=problem)
    if changed:
        admin_action(principal, "webhook.deactivate", f"webhook:{hook_id}", url=hook.url)
    return _back("webhooks", "deactivated" if changed else "unchanged", name=hook_id)


@router.post("/admin/webhooks/{hook_id:int}/activate")
async def activate_webhook(
    request: Request,
    hook_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: AdminPerson,
    services: ServicesDep,
) -> Response:
    t = translator(request)
    try:
        hook, changed = await _write(
            services,
            lambda session: webhooks.activate_webhook(
                session, hook_id=hook_id, targets=services.webhook_targets
            ),
        )
    except WebhookNotFound as exc:
        problem = Problem(t("admin.webhooks.error.not_found", id=exc.hook_id), exc.status)
        return await _webhooks_page(request, principal, services, problem=problem)
    except WebhookTaken as exc:
        problem = Problem(t("admin.webhooks.error.url_active", id=hook_id, other=exc.hook_id), exc.status)
        return await _webhooks_page(request, principal, services, problem=problem)
    except WebhookInputError as exc:  # its URL is refused now (the allow-list changed): the reason
        return await _webhooks_page(
            request, principal, services, problem=Problem(_input_text(t, exc), exc.status)
        )
    if changed:
        admin_action(principal, "webhook.activate", f"webhook:{hook_id}", url=hook.url)
    return _back("webhooks", "activated" if changed else "already_active", name=hook_id)
