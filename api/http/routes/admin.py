"""Admin: users, devices, webhooks and the webhook delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.accounts import accounts as auth
from api.cases import webhooks
from api.http.deps import Admin, ReadSessionDep, ServicesDep, SessionDep
from api.storage.models import Device, User, Webhook, WebhookDelivery

router = APIRouter(prefix="/api", tags=["admin"])


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Literal["admin", "operator", "enforcement", "viewer"]
    team: str | None = Field(None, max_length=64)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    camera_id: str | None = Field(None, max_length=64)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=500)
    events: list[Literal["case.filed", "case.dispatched", "case.closed"]] | None = None
    secret: str | None = Field(None, min_length=16, max_length=128)


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=auth.PASSWORD_MIN, max_length=auth.PASSWORD_MAX)


UsernamePath = Annotated[str, Path(pattern=auth.NAME_RE.pattern, description="the user's username")]
DeviceNamePath = Annotated[str, Path(pattern=auth.NAME_RE.pattern, description="the device's name")]
Responses = dict[int | str, dict[str, Any]]
CONFLICT: Responses = {409: {"description": "the name is taken, or the change would leave no active admin"}}
NOT_FOUND: Responses = {404: {"description": "no user or device of that name"}}


def _when(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "team": user.team,
        "active": user.active,
        "created_at": _when(user.created_at),
        "last_login_at": _when(user.last_login_at),
    }


def _device(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "name": device.name,
        "camera_id": device.camera_id,
        "active": device.active,
        "created_at": _when(device.created_at),
        "last_used_at": _when(device.last_used_at),
        "revoked_at": _when(device.revoked_at),
    }


@router.post("/users", status_code=201, responses=CONFLICT)
def post_user(body: UserIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    user = auth.create_user(
        session, username=body.username, password=body.password, role=body.role, team=body.team
    )
    session.commit()
    return {"id": user.id, "username": user.username, "role": user.role, "team": user.team}


@router.get("/users")
def get_users(principal: Admin, session: ReadSessionDep) -> list[dict[str, Any]]:
    """Every user, by username; last_login_at is the last successful login."""
    return [_user(u) for u in auth.list_users(session)]


@router.post("/users/{username}/deactivate", responses={**NOT_FOUND, **CONFLICT})
def deactivate_user(
    username: UsernamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """The user's tokens stop working at once and they cannot log in; their case history stays.
    Deactivating an inactive user changes nothing; the last active admin cannot be deactivated."""
    user, changed = auth.set_user_active(session, username=username, active=False)
    session.commit()
    if changed:
        services.principals.invalidate()
    return _user(user)


@router.post("/users/{username}/activate", responses=NOT_FOUND)
def activate_user(username: UsernamePath, principal: Admin, session: SessionDep) -> dict[str, Any]:
    """The user can log in again (old tokens stay deleted)."""
    user, _ = auth.set_user_active(session, username=username, active=True)
    session.commit()
    return _user(user)


@router.put("/users/{username}/password", responses=NOT_FOUND)
def put_password(
    username: UsernamePath, body: PasswordIn, principal: Admin, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Set a user's password; their tokens are deleted and their failed-login count cleared."""
    user = auth.set_password(session, username=username, password=body.password)
    session.commit()
    services.principals.invalidate()
    return _user(user)


@router.post("/devices", status_code=201, responses=CONFLICT)
def post_device(body: DeviceIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    """A new device; its key is in this response only. A taken name is a 409 (rotate instead)."""
    device, key = auth.create_device(session, name=body.name, camera_id=body.camera_id)
    session.commit()
    return {"id": device.id, "name": device.name, "camera_id": device.camera_id, "key": key}


@router.get("/devices")
def get_devices(principal: Admin, session: ReadSessionDep) -> list[dict[str, Any]]:
    """Every device, by name; last_used_at is when its key was last accepted (to the minute)."""
    return [_device(d) for d in auth.list_devices(session)]


@router.post("/devices/{name}/revoke", responses=NOT_FOUND)
def revoke_device(
    name: DeviceNamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """The device's key gets 401 from now on (a stolen camera); its uploads and cases stay.
    Revoking a revoked device changes nothing."""
    device, changed = auth.revoke_device(session, name=name)
    session.commit()
    if changed:
        services.principals.invalidate()
    return _device(device)


@router.post("/devices/{name}/rotate", responses=NOT_FOUND)
def rotate_device(
    name: DeviceNamePath, principal: Admin, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """A new key for the device, in this response only; the old key gets 401 from now on. A revoked
    device is active again with the new key."""
    device, key = auth.rotate_device(session, name=name)
    session.commit()
    services.principals.invalidate()
    return {**_device(device), "key": key}


@router.post("/webhooks", status_code=201)
def post_webhook(body: WebhookIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    """Register a webhook; the signing secret is in this response only."""
    hook = webhooks.create_webhook(
        session, url=body.url, events=list(body.events or []) or None, secret=body.secret
    )
    session.commit()
    return {"id": hook.id, "url": hook.url, "events": hook.events.split(","), "secret": hook.secret}


@router.get("/webhooks")
def get_webhooks(principal: Admin, session: ReadSessionDep) -> list[dict[str, Any]]:
    return [
        {"id": h.id, "url": h.url, "events": h.events.split(","), "active": h.active}
        for h in session.scalars(select(Webhook).order_by(Webhook.id))
    ]


@router.get("/webhooks/deliveries")
def get_deliveries(
    principal: Admin,
    session: ReadSessionDep,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return [
        {
            "id": d.id,
            "webhook_id": d.webhook_id,
            "event": d.event,
            "case_id": d.case_id,
            "status": d.status,
            "attempts": d.attempts,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "next_attempt_at": d.next_attempt_at.isoformat() + "Z",
            "created_at": d.created_at.isoformat() + "Z",
            "delivered_at": d.delivered_at.isoformat() + "Z" if d.delivered_at else None,
        }
        for d in session.scalars(stmt)
    ]
