"""Admin: users, devices, webhooks and the webhook delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.accounts import accounts as auth
from api.accounts.accounts import Role
from api.admin_log import admin_action
from api.cases import webhooks
from api.cases.acting import no_cells_notice, team_has_cells
from api.cases.webhooks import DeliveryStatus, WebhookEvent, WebhookInfo
from api.http import schemas
from api.http.deps import Admin, ReadSessionDep, ServicesDep, SessionDep
from api.storage.models import MAX_ID, Device, User, WebhookDelivery

router = APIRouter(prefix="/api", tags=["admin"], responses=schemas.CALLER_ERRORS)


class UserIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # api.accounts.accounts.create_user's rule, for clients and schemathesis
            "if": {"properties": {"role": {"const": Role.ENFORCEMENT.value}}, "required": ["role"]},
            "then": {
                "properties": {"team": {"type": "string", "minLength": 1, "pattern": r"\S"}},
                "required": ["team"],
            },
        },
    )
    username: str = Field(min_length=1, max_length=64, pattern=auth.NAME_RE.pattern)
    password: str = Field(min_length=8, max_length=256)
    role: Role
    team: str | None = Field(None, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")  # no control character


class UserChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # an enforcement user keeps a team (api.accounts.accounts.change_user)
            "if": {"properties": {"role": {"const": Role.ENFORCEMENT.value}}, "required": ["role", "team"]},
            "then": {"properties": {"team": {"type": "string", "minLength": 1, "pattern": r"\S"}}},
        },
    )
    role: Role | None = Field(None, description="the new role; left out (or null): unchanged")
    team: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*$",  # no control character
        description='the new team; left out: unchanged; null or "": no team (an enforcement user needs one)',
    )


class DeviceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # api.accounts.accounts.create_device's rule: a runner is bound to no camera
            "if": {"properties": {"runner": {"const": True}}, "required": ["runner"]},
            "then": {"properties": {"camera_id": {"type": "null"}}},
        },
    )
    name: str = Field(min_length=1, max_length=64, pattern=auth.NAME_RE.pattern)
    camera_id: str | None = Field(  # a camera id (auth.CAMERA_ID_RE) or "" for none
        None, max_length=64, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]*)?$"
    )
    runner: bool = Field(
        False, strict=True, description="a runner of the registry's cameras (bound to no camera)"
    )


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        min_length=1,
        max_length=500,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+",
        description="http:// or https://, to a public host unless GRIDPATROL_WEBHOOK_ALLOW_HOSTS allows it",
    )
    events: list[WebhookEvent] | None = None
    secret: str | None = Field(None, min_length=webhooks.SECRET_MIN, max_length=webhooks.SECRET_MAX)


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=auth.PASSWORD_MIN, max_length=auth.PASSWORD_MAX)


UsernamePath = Annotated[str, Path(pattern=auth.NAME_RE.pattern, description="the user's username")]
DeviceNamePath = Annotated[str, Path(pattern=auth.NAME_RE.pattern, description="the device's name")]
CONFLICT = schemas.error_responses(
    409, described={409: "the name is taken, or the change would leave no active admin"}
)
NOT_FOUND = schemas.error_responses(404, described={404: "no user or device of that name"})
HOOK_TAKEN = schemas.error_responses(409, described={409: "a webhook already has that URL"})
HOOK_NOT_FOUND = schemas.error_responses(404, described={404: "no webhook has that id"})
HOOK_URL_ACTIVE = schemas.error_responses(409, described={409: "another active webhook has its URL"})
HookIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the webhook's id")]


@router.post(
    "/users",
    status_code=201,
    response_model=schemas.CreatedUser,
    responses={**schemas.BODY_ERRORS, **CONFLICT, **schemas.WRITE_FAULTS},
)
def post_user(body: UserIn, principal: Admin, session: SessionDep) -> schemas.CreatedUser:
    user = auth.create_user(
        session, username=body.username, password=body.password, role=body.role, team=body.team
    )
    session.commit()
    admin_action(principal, "user.add", f"user:{user.username}", role=user.role, team=user.team)
    created = schemas.CreatedUser.model_validate(user)
    if user.role == auth.Role.ENFORCEMENT and not team_has_cells(session, user.team or ""):
        created.notice = no_cells_notice(user.team or "")
    return created


@router.get("/users", response_model=list[schemas.UserInfo])
def get_users(principal: Admin, session: ReadSessionDep) -> list[User]:
    """Every user, by username; last_login_at is the last successful login."""
    return auth.list_users(session)


@router.patch(
    "/users/{username}",
    response_model=schemas.ChangedUser,
    responses={**schemas.BODY_ERRORS, **NOT_FOUND, **CONFLICT, **schemas.WRITE_FAULTS},
)
def patch_user(
    username: UsernamePath, body: UserChange, principal: Admin, session: SessionDep, services: ServicesDep
) -> schemas.ChangedUser:
    """Change a user's role and/or team (the name in any case); the same rules as adding one (422
    naming the field). The user stays logged in and has the new role and team from their next
    request. Demoting the last active admin is a 409."""
    team = (body.team or "") if "team" in body.model_fields_set else None
    user, changed = auth.change_user(session, username=username, role=body.role, team=team)
    session.commit()
    if changed:
        services.principals.invalidate()
        admin_action(principal, "user.change", f"user:{user.username}", role=user.role, team=user.team)
    answer = schemas.ChangedUser.model_validate(user)
    if user.role == auth.Role.ENFORCEMENT and not team_has_cells(session, user.team or ""):
        answer.notice = no_cells_notice(user.team or "")
    return answer


@router.post(
    "/users/{username}/deactivate",
    response_model=schemas.UserInfo,
    responses={**NOT_FOUND, **CONFLICT, **schemas.WRITE_FAULTS},
)
def deactivate_user(
    username: UsernamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> User:
    """The user's tokens stop working at once and they cannot log in; their case history stays.
    Deactivating an inactive user changes nothing; the last active admin cannot be deactivated."""
    user, changed = auth.set_user_active(session, username=username, active=False)
    session.commit()
    if changed:
        services.principals.invalidate()
        admin_action(principal, "user.deactivate", f"user:{user.username}")
    return user


@router.post(
    "/users/{username}/activate",
    response_model=schemas.UserInfo,
    responses={**NOT_FOUND, **schemas.WRITE_FAULTS},
)
def activate_user(username: UsernamePath, principal: Admin, session: SessionDep) -> User:
    """The user can log in again (old tokens stay deleted)."""
    user, changed = auth.set_user_active(session, username=username, active=True)
    session.commit()
    if changed:
        admin_action(principal, "user.activate", f"user:{user.username}")
    return user


@router.put(
    "/users/{username}/password",
    response_model=schemas.UserInfo,
    responses={**schemas.BODY_ERRORS, **NOT_FOUND, **schemas.WRITE_FAULTS},
)
def put_password(
    username: UsernamePath, body: PasswordIn, principal: Admin, session: SessionDep, services: ServicesDep
) -> User:
    """Set a user's password; their tokens are deleted and their failed-login count cleared."""
    user = auth.set_password(session, username=username, password=body.password)
    session.commit()
    services.principals.invalidate()
    admin_action(principal, "user.password", f"user:{user.username}")
    return user


@router.post(
    "/devices",
    status_code=201,
    response_model=schemas.NewDevice,
    responses={**schemas.BODY_ERRORS, **CONFLICT, **schemas.WRITE_FAULTS},
)
def post_device(body: DeviceIn, principal: Admin, session: SessionDep) -> schemas.NewDevice:
    """A new device; its key is in this response only. A taken name is a 409 (rotate instead)."""
    device, key = auth.create_device(session, name=body.name, camera_id=body.camera_id, runner=body.runner)
    session.commit()
    runner = device.runner or None
    admin_action(principal, "device.add", f"device:{device.name}", camera=device.camera_id, runner=runner)
    return schemas.NewDevice(
        id=device.id, name=device.name, camera_id=device.camera_id, runner=device.runner, key=key
    )


@router.get("/devices", response_model=list[schemas.DeviceInfo])
def get_devices(principal: Admin, session: ReadSessionDep) -> list[Device]:
    """Every device, by name; last_used_at is when its key was last accepted (to the minute)."""
    return auth.list_devices(session)


@router.post(
    "/devices/{name}/revoke",
    response_model=schemas.DeviceInfo,
    responses={**NOT_FOUND, **schemas.WRITE_FAULTS},
)
def revoke_device(
    name: DeviceNamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> Device:
    """The device's key gets 401 from now on (a stolen camera); its uploads and cases stay.
    Revoking a revoked device changes nothing."""
    device, changed = auth.revoke_device(session, name=name)
    session.commit()
    if changed:
        services.principals.invalidate()
        admin_action(principal, "device.revoke", f"device:{device.name}")
    return device


@router.post(
    "/devices/{name}/rotate",
    response_model=schemas.DeviceWithKey,
    responses={**NOT_FOUND, **schemas.WRITE_FAULTS},
)
def rotate_device(
    name: DeviceNamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> schemas.DeviceWithKey:
    """A new key for the device, in this response only; the old key gets 401 from now on. A revoked
    device is active again with the new key."""
    device, key = auth.rotate_device(session, name=name)
    session.commit()
    services.principals.invalidate()
    admin_action(principal, "device.rotate", f"device:{device.name}")
    return schemas.DeviceWithKey.issued(device, key)


@router.post(
    "/webhooks",
    status_code=201,
    response_model=schemas.NewWebhook,
    responses={**schemas.BODY_ERRORS, **HOOK_TAKEN, **schemas.WRITE_FAULTS},
)
def post_webhook(
    body: WebhookIn, principal: Admin, session: SessionDep, services: ServicesDep
) -> schemas.NewWebhook:
    """Register a webhook; the signing secret is in this response only. A URL whose host is (or
    resolves to) this server or a private network is refused (422) unless
    GRIDPATROL_WEBHOOK_ALLOW_HOSTS allows it. A URL an active webhook already has is a 409 naming
    it."""
    hook, secret = webhooks.create_webhook(
        session,
        url=body.url,
        events=list(body.events or []) or None,
        secret=body.secret,
        targets=services.webhook_targets,
    )
    session.commit()
    admin_action(principal, "webhook.add", f"webhook:{hook.id}", url=hook.url, events=",".join(hook.events))
    return schemas.NewWebhook(id=hook.id, url=hook.url, events=hook.events, secret=secret)


@router.get("/webhooks", response_model=list[schemas.ListedWebhook])
def get_webhooks(principal: Admin, session: ReadSessionDep) -> list[webhooks.ListedWebhook]:
    """The webhooks, each with its deliveries in brief (`delivery`), as `gridpatrol webhook list`
    shows them: how many wait and failed, and its last attempt (time, result, next try)."""
    return webhooks.list_webhooks_with_state(session)


@router.get("/webhooks/deliveries", response_model=list[schemas.Delivery])
def get_deliveries(
    principal: Admin,
    session: ReadSessionDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[WebhookDelivery]:
    """The delivery log, newest first."""
    return webhooks.list_deliveries(session, status=status, limit=limit)


# {hook_id:int}: DELETE /webhooks/deliveries is a 405, not a webhook id that is no number; and after
# that route, so that a 405 there lists its methods, not this one's (api.http.allow)
@router.delete(
    "/webhooks/{hook_id:int}",
    response_model=schemas.WebhookInfo,
    responses={**HOOK_NOT_FOUND, **schemas.WRITE_FAULTS},
)
def delete_webhook(hook_id: HookIdPath, principal: Admin, session: SessionDep) -> WebhookInfo:
    """Deactivate a webhook: nothing more is sent to it, its pending deliveries and retries
    included (marked failed, "not sent: the webhook was deactivated"). It stays in the list, inactive,
    with its delivery log; POST /webhooks/{id}/activate switches it on again with its secret, and its
    URL may be registered again (a new webhook, with a new secret). Deactivating an inactive one
    changes nothing."""
    hook, changed = webhooks.deactivate_webhook(session, hook_id=hook_id)
    session.commit()
    if changed:
        admin_action(principal, "webhook.deactivate", f"webhook:{hook.id}", url=hook.url)
    return hook


@router.post(
    "/webhooks/{hook_id:int}/activate",
    response_model=schemas.WebhookInfo,
    responses={**HOOK_NOT_FOUND, **HOOK_URL_ACTIVE, **schemas.WRITE_FAULTS},
)
def activate_webhook(
    hook_id: HookIdPath, principal: Admin, session: SessionDep, services: ServicesDep
) -> WebhookInfo:
    """Switch a deactivated webhook on again, with its URL, events and signing secret (the receiver's
    secret still matches): the events from now on are sent to it. The deliveries failed when it was
    deactivated stay failed, and events of the time between are not sent. Another active webhook with
    its URL is a 409 naming it; a URL refused now (GRIDPATROL_WEBHOOK_ALLOW_HOSTS changed) a 422.
    Activating an active one changes nothing and answers it (200)."""
    hook, changed = webhooks.activate_webhook(session, hook_id=hook_id, targets=services.webhook_targets)
    session.commit()
    if changed:
        admin_action(principal, "webhook.activate", f"webhook:{hook.id}", url=hook.url)
    return hook
